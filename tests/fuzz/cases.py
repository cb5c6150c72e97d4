"""Seeded generators of malformed input for the fuzz suite, one family per kind of input.

Every case is a pure function of ``(family, seed)``: a failure is reproduced with
``python scripts/fuzz.py --family FAMILY --seed SEED --cases 1``. Families:

* ``onnx_bytes``: a valid model's bytes with flipped bytes, truncations, insertions and duplications.
* ``onnx_proto``: structural damage - wrong dims and element types, huge, zero and negative sizes, names that are
  not UTF-8, unknown domains and opsets, broken subgraphs, shuffled or dangling nodes - run by the library.
* ``cli_args``: command lines mixing valid and invalid options, values and paths (FIFO, device, long, newline).
* ``profiles``: a shipped hardware profile with values made extreme, missing, mistyped or nested deeply.
* ``tables``: a measurement table with absurd values, repeated columns, broken rows and bytes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from importlib import resources

import onnx
import onnx.parser

FAMILIES = ("onnx_bytes", "onnx_proto", "cli_args", "profiles", "tables")

_BASES = {
    "conv": """<ir_version: 8, opset_import: ["" : 17]>
        g (float[N,3,16,16] x, float[8,3,3,3] w, float[8] b) => (float[N,10] y) {
          c = Conv<pads = [1,1,1,1]>(x, w, b)  r = Relu(c)  p = GlobalAveragePool(r)  f = Flatten(p)
          k = Constant<value = float[8,10] {0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
            0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0}>()
          y = MatMul(f, k) }""",
    "matmul": """<ir_version: 8, opset_import: ["" : 17]>
        g (float[N,64] x) => (float[N,32] y) {
          s = Shape(x)  w = Constant<value = float[64,32] {"""
    + ",".join(["0.5"] * (64 * 32))
    + """}>()  m = MatMul(x, w)  t = Tanh(m)  y = Softmax<axis = -1>(t) }""",
    "lstm": """<ir_version: 8, opset_import: ["" : 17]>
        g (float[S,1,16] x, float[1,128,16] w, float[1,128,32] r) => (float[S,1,1,32] y) {
          y = LSTM<hidden_size = 32>(x, w, r) }""",
    "branch": """<ir_version: 8, opset_import: ["" : 17]>
        g (bool c, float[2,4] x) => (float[2,4] y) {
          y = If(c) <then_branch = t () => (float[2,4] a) { a = Relu(x) },
                     else_branch = e () => (float[2,4] b) { b = Sigmoid(x) }> }""",
    "reshape": """<ir_version: 8, opset_import: ["" : 17]>
        g (float[N,4,8] x) => (float[N,32] y) {
          s = Shape(x)  n = Gather<axis = 0>(s, zero)  m = Constant<value = int64[1] {32}>()
          u = Unsqueeze(n, zero1)  t = Concat<axis = 0>(u, m)  y = Reshape(x, t) }""",
}


def base_model(name: str) -> onnx.ModelProto:
    """One of the small valid models the families damage."""
    model = onnx.parser.parse_model(_BASES[name])
    if name == "reshape":
        model.graph.initializer.extend(
            [
                onnx.helper.make_tensor("zero", onnx.TensorProto.INT64, [], [0]),
                onnx.helper.make_tensor("zero1", onnx.TensorProto.INT64, [1], [0]),
            ]
        )
    return model


@dataclass
class Case:
    """One fuzz input: for the CLI, ``argv`` (with ``files`` written first, by name, into a temp folder whose path
    replaces ``{dir}``); for the library, ``call`` names what runs: ``load``, ``estimate``, ``profile``, ``table``."""

    family: str
    seed: int
    argv: list[str] | None = None
    call: str | None = None
    payload: object = None
    kwargs: dict = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    note: str = ""


def make_case(family: str, seed: int) -> Case:
    """The case ``seed`` of ``family`` (deterministic)."""
    rng = random.Random(f"{family}:{seed}")
    return _MAKERS[family](rng, seed)


def _hw(rng: random.Random) -> str:
    return rng.choice(["a100", "rpi5", "xeon-gold-5120", "h100", "jetson-orin", "t4", "epyc-7763"])


def _onnx_bytes(rng: random.Random, seed: int) -> Case:
    name = rng.choice(list(_BASES))
    data = bytearray(base_model(name).SerializeToString())
    how = rng.choice(["flip", "truncate", "insert", "duplicate", "zero", "many"])
    for _ in range(rng.randint(1, 12) if how == "many" else 1):
        i = rng.randrange(len(data))
        if how in ("flip", "many"):
            data[i] ^= 1 << rng.randrange(8)
        elif how == "truncate":
            del data[i:]
            break
        elif how == "insert":
            data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif how == "duplicate":
            j = rng.randrange(i, len(data))
            data[j:j] = data[i : min(j, i + 64)]
        elif how == "zero":
            data[i : i + rng.randint(1, 16)] = b"\0" * len(data[i : i + 16])
    argv = ["{dir}/m.onnx", "--hw", _hw(rng), "--batch", str(rng.choice([1, 2, 8]))]
    if rng.random() < 0.3:
        argv += ["--shape", "S=4"] if name == "lstm" else ["--json"]
    return Case("onnx_bytes", seed, argv=argv, files={"m.onnx": bytes(data)}, note=f"{name}/{how}")


def _onnx_proto(rng: random.Random, seed: int) -> Case:
    name = rng.choice(list(_BASES))
    model = base_model(name)
    g = model.graph
    how = rng.choice(
        [
            "dims",
            "huge",
            "negative",
            "zero",
            "dtype",
            "utf8",
            "domain",
            "opset",
            "subgraph",
            "order",
            "dangling",
            "attr",
            "initializer",
            "optype",
        ]
    )
    values = [0, -1, -(2**40), 2**31, 2**40, 2**62, 7]
    if how in ("dims", "huge", "negative", "zero") and g.input:
        vi = rng.choice(list(g.input))
        dims = vi.type.tensor_type.shape.dim
        if len(dims):
            d = rng.choice(list(dims))
            d.dim_value = {
                "huge": 2 ** rng.randint(31, 62),
                "negative": -rng.randint(1, 2**40),
                "zero": 0,
            }.get(how, rng.choice(values))
    elif how == "dtype":
        vi = rng.choice([*g.input, *g.output])
        vi.type.tensor_type.elem_type = rng.choice([0, 8, 9, 23, 99, 2**30])
    elif how == "utf8":
        blob = model.SerializeToString()
        target = rng.choice([b"Relu", b"Conv", b"MatMul", b"LSTM", b"Reshape", b"x", b"y"])
        if target in blob:
            blob = blob.replace(target, target[:1] + b"\xff" + target[2:], 1)
        return Case("onnx_proto", seed, call="load", payload=blob, kwargs={"batch": 1}, note=f"{name}/{how}")
    elif how == "domain":
        node = rng.choice(list(g.node))
        node.domain = rng.choice(["com.example", "ai.onnx.ml", "com.microsoft", "\u00e9"])
        if rng.random() < 0.5:
            model.opset_import.append(onnx.helper.make_opsetid(node.domain, rng.choice([1, 0, -3, 2**31])))
    elif how == "opset":
        model.opset_import[0].version = rng.choice([-1, 0, 1, 6, 99, 2**31, 2**62])
    elif how == "subgraph":
        node = rng.choice(list(g.node))
        sub = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["nowhere"], ["out"])], "broken", [], [])
        node.attribute.append(onnx.helper.make_attribute(rng.choice(["body", "then_branch", "junk"]), sub))
    elif how == "order":
        nodes = list(g.node)
        rng.shuffle(nodes)
        del g.node[:]
        g.node.extend(nodes)
        if rng.random() < 0.3 and len(nodes) > 1:  # a cycle
            g.node[0].input.append(g.node[-1].output[0])
    elif how == "dangling":
        node = rng.choice(list(g.node))
        node.input.append(rng.choice(["ghost", "", "x"]))
    elif how == "attr":
        node = rng.choice(list(g.node))
        node.attribute.append(
            onnx.helper.make_attribute(
                rng.choice(["axis", "pads", "hidden_size", "kernel_shape", "perm", "to"]),
                rng.choice([2**40, -(2**40), [0, 0], [-5] * 8, 1.5, "x"]),
            )
        )
    elif how == "initializer":
        t = onnx.TensorProto(name=rng.choice(["w", "x", "b"]), data_type=rng.choice([1, 7, 0, 99]))
        t.dims.extend([rng.choice([2, 4, 2**40, 1000, -3])])
        if rng.random() < 0.5:
            t.float_data.extend([1.0, 2.0])
        else:
            t.raw_data = bytes(rng.randrange(256) for _ in range(rng.choice([0, 8, 16])))
        g.initializer.append(t)
    elif how == "optype":
        node = rng.choice(list(g.node))
        node.op_type = rng.choice(["NoSuchOp", "", "conv", "Loop", "Scan", "Einsum", "a" * 300])
    batch = rng.choice([None, 1, 4, 0, -2, 2**40])
    call = rng.choice(["load", "estimate"])
    kwargs = {"batch": batch} if batch is not None else {}
    if name == "lstm" and rng.random() < 0.7:
        kwargs["shapes"] = {"S": (rng.choice([1, 8, 0, 2**35]),)}
    return Case(
        "onnx_proto", seed, call=call, payload=model.SerializeToString(), kwargs=kwargs, note=f"{name}/{how}"
    )


_CLI_VALUES = ["0", "-1", "abc", "1.5", "nan", "inf", "1e99", "", "99999999999999999999", "2", " "]


def _cli_args(rng: random.Random, seed: int) -> Case:
    model = base_model(rng.choice(["conv", "matmul", "reshape"])).SerializeToString()
    files = {"m.onnx": model, "empty.onnx": b"", "text.onnx": b"hello\n"}
    path = rng.choice(
        [
            "{dir}/m.onnx",
            "{dir}/missing.onnx",
            "{dir}/empty.onnx",
            "{dir}/text.onnx",
            "{dir}",
            "{dir}/fifo",
            "/dev/zero",
            "/dev/null",
            "{dir}/" + "x" * 5000,
            "{dir}/a\nb.onnx",
            "-",
        ]
    )
    command = rng.choice(["", "energy", "layers", "hardware show", "train", "measure"])
    argv = (
        [*command.split(), path]
        if command != "hardware show"
        else [
            "hardware",
            "show",
            rng.choice(["a100", "nope", "{dir}/fifo", "/dev/zero", "x" * 3000, "{dir}/m.onnx"]),
        ]
    )
    if command == "train":
        argv = [
            "train",
            rng.choice(["{dir}/fifo", "/dev/zero", "{dir}/missing.csv", "{dir}/text.onnx", "{dir}"]),
        ]
        argv += [
            "--hw",
            _hw(rng),
            "--models-dir",
            rng.choice(["{dir}/m.onnx/sub", "{dir}/models", "/proc/x"]),
        ]
    elif command == "measure":
        argv += [
            "--window-s",
            rng.choice(_CLI_VALUES),
            "--repeats",
            rng.choice(_CLI_VALUES),
            "--device",
            "none",
        ]
    elif command != "hardware show":
        options = [
            ["--hw", rng.choice([_hw(rng), "nope", "", "{dir}/m.onnx", "{dir}/fifo"])],
            ["--batch", rng.choice([*_CLI_VALUES, "8"])],
            ["--dtype", rng.choice(["fp16", "weird", "", "int8"])],
            [
                "--shape",
                rng.choice(["N=2", "x=1x3", "=", "N=", "N=0", "N=-1", "N=1.5", "N=9999999999999", "N"]),
            ],
            ["--threads", rng.choice(_CLI_VALUES)],
            ["--runtime", rng.choice(["tflite", "nope", "onnxruntime", "pytorch-cuda"])],
            ["--json"],
            ["--layers", rng.choice(_CLI_VALUES)],
            ["--format", rng.choice(["json", "csv", "xml"])],
            ["--by", rng.choice(["op", "kernel", "none"])],
            ["--strict"],
            ["--bogus"],
        ]
        for opt in rng.sample(options, rng.randint(0, 4)):
            argv += opt
        if command in ("", "energy") and "--hw" not in argv and rng.random() < 0.8:
            argv += ["--hw", _hw(rng)]
    return Case("cli_args", seed, argv=argv, files=files, note=command or "shorthand")


def _profiles(rng: random.Random, seed: int) -> Case:
    name = _hw(rng)
    text = (resources.files("estimator.energy") / "profiles" / f"{name}.toml").read_text(encoding="utf-8")
    lines = text.splitlines()
    numeric = [i for i, line in enumerate(lines) if "value =" in line or "= {" in line]
    how = rng.choice(["extreme", "negative", "string", "delete", "nest", "garbage", "duplicate", "nan"])
    if how == "nest":
        lines.append("deep = " + "[" * rng.randint(200, 20000) + "]" * 0)
    elif how == "garbage":
        lines.insert(rng.randrange(len(lines)), rng.choice(["= =", "[[[", "\x00", 'a = "\\ud800"']))
    elif how == "delete" and lines:
        del lines[rng.randrange(len(lines))]
    elif how == "duplicate" and lines:
        i = rng.randrange(len(lines))
        lines.insert(i, lines[i])
    elif numeric:
        for _ in range(rng.randint(1, 4)):
            i = rng.choice(numeric)
            new = {
                "extreme": rng.choice(["1e308", "1e-308", "5e-324", "1.7e308", "1e300"]),
                "negative": "-1",
                "string": '"fast"',
                "nan": rng.choice(["nan", "inf", "-inf"]),
            }[how]
            line = lines[i]
            key = "value =" if "value =" in line else "= "
            head, _, tail = line.partition(key)
            rest = tail.split(",", 1)
            lines[i] = head + key + " " + new + ("," + rest[1] if len(rest) > 1 else "")
    files = {f"{name}.toml": ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")}
    model = base_model(rng.choice(["conv", "matmul"])).SerializeToString()
    files["m.onnx"] = model
    argv = ["{dir}/m.onnx", "--hw", f"{{dir}}/{name}.toml", "--batch", "2"] + (
        ["--json"] if rng.random() < 0.5 else []
    )
    return Case("profiles", seed, argv=argv, files=files, note=how)


_HEADER = (
    "model_ref,group,family,task,batch,dtype,hardware,runtime,boundary,joules_per_inference,"
    "idle_subtracted,repeats,source,citation,threads,measured_at,latency_s"
)
_ROW = (
    "getzner:conv2d;in=8;out=8;kernel=3;stride=1;padding=1;image=8,g{i},conv2d,t,1,float32,xeon-gold-5120,"
    "pytorch-cpu,cpu-package-rapl,0.01,false,3,s,c,4,2023-01-02,0.001"
)


def _tables(rng: random.Random, seed: int) -> Case:
    header = _HEADER.split(",")
    rows = [_ROW.format(i=i).split(",") for i in range(rng.randint(1, 6))]
    how = rng.choice(["value", "dupcol", "ragged", "bytes", "empty", "unknown", "graph", "many"])
    weird = [
        "1e99",
        str(2**63),
        "5e-324",
        "1e308",
        "0",
        "-2",
        "nan",
        "inf",
        "2023-13-45",
        "abc",
        "",
        "1.5",
        "\u00e9",
        '"',
        "99999999999999999999999",
    ]
    for _ in range(rng.randint(1, 5) if how == "many" else 1):
        if how in ("value", "many"):
            r, c = rng.randrange(len(rows)), rng.randrange(len(header))
            rows[r][c] = rng.choice(weird)
        elif how == "dupcol":
            c = rng.randrange(len(header))
            header.append(rng.choice([header[c], "extra", "extra"]))
            for r in rows:
                r.append("1")
        elif how == "ragged":
            rows[rng.randrange(len(rows))].append("x")
        elif how == "unknown":
            c = rng.choice([6, 7, 8])
            rows[rng.randrange(len(rows))][c] = rng.choice(["a100 ", "nope", "Xeon-Gold-5120", ""])
        elif how == "graph":
            rows[0][0] = rng.choice(["{dir}/fifo", "/dev/zero", "{dir}/missing.onnx", "x" * 5000 + ".onnx"])
    text = ",".join(header) + "\n" + "\n".join(",".join(r) for r in rows) + "\n"
    data = text.encode("utf-8")
    if how == "bytes":
        data = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = bytes(data)
    elif how == "empty":
        data = rng.choice([b"", b"\n", b"a,b\n"])
    return Case("tables", seed, call="table", payload="t.csv", files={"t.csv": data}, note=how)


_MAKERS = {
    "onnx_bytes": _onnx_bytes,
    "onnx_proto": _onnx_proto,
    "cli_args": _cli_args,
    "profiles": _profiles,
    "tables": _tables,
}
