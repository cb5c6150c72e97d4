"""Cost rules of recurrent.py (LSTM, GRU, RNN) and control_flow.py (Loop, If, Scan) against closed forms.

Per-element costs used in the expectations are the documented ones: Sigmoid 4 FLOPs, Tanh 1, Relu 1.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
import pytest

from estimator.cost.nodes import count_costs
from estimator.graph.load import load_graph

SIGMOID, TANH, RELU = 4, 1, 1


def report(text: str, consts: dict[str, np.ndarray] | None = None):
    """Parse ``text``, add the arrays in ``consts`` as initializers (dropping same-named inputs), cost it."""
    model = onnx.parser.parse_model(text)
    for name, value in (consts or {}).items():
        for vi in [v for v in model.graph.input if v.name == name]:
            model.graph.input.remove(vi)
        model.graph.initializer.append(onnx.numpy_helper.from_array(value, name))
    return count_costs(load_graph(model))


def dims(*shape: int) -> str:
    return ",".join(str(d) for d in shape)


# --------------------------------------------------------------------------------------------------
# Recurrent ops
# --------------------------------------------------------------------------------------------------

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def unit_flops(op: str, *, bias: bool, peepholes: bool = False, linear_before_reset: bool = False) -> int:
    """Non-MAC FLOPs per hidden unit and batch-step, from the gate equations of the ONNX spec."""
    if op == "LSTM":
        # i, f, o = sigmoid(...); c = tanh(...); C = f*C' + i*c; H = o*tanh(C)
        gates = 3 * SIGMOID + TANH
        cell = 2 + 1
        hidden = TANH + 1
        return gates + cell + hidden + (4 if bias else 0) + (6 if peepholes else 0)
    if op == "GRU":
        # z, r = sigmoid(...); h = tanh(... r*H' ...); H = (1 - z)*h + z*H'
        bias_adds = (4 if linear_before_reset else 3) if bias else 0
        return 2 * SIGMOID + TANH + 1 + 4 + bias_adds
    return TANH + (1 if bias else 0)


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("bias", [True, False])
def test_recurrent_closed_form(op: str, direction: str, layout: int, bias: bool) -> None:
    seq, batch, inp, hidden = 7, 3, 5, 6
    d = 2 if direction == "bidirectional" else 1
    g = GATES[op]
    x_shape = (batch, seq, inp) if layout else (seq, batch, inp)
    y_shape = (batch, seq, d, hidden) if layout else (seq, d, batch, hidden)
    inputs = "X, W, R, B" if bias else "X, W, R"
    text = f"""
        <ir_version: 8, opset_import: ["" : 14]>
        g (float[{dims(*x_shape)}] X) => (float[{dims(*y_shape)}] Y) {{
            Y = {op} <hidden_size = {hidden}, direction = "{direction}", layout = {layout}> ({inputs})
        }}
    """
    consts = {
        "W": np.ones((d, g * hidden, inp), np.float32),
        "R": np.ones((d, g * hidden, hidden), np.float32),
    }
    if bias:
        consts["B"] = np.ones((d, 2 * g * hidden), np.float32)
    rep = report(text, consts)
    node = rep.nodes[0]
    assert node.status == "costed"
    macs = d * seq * batch * (g * hidden * inp + g * hidden * hidden)
    assert node.macs == macs
    assert node.flops == 2 * macs + d * seq * batch * hidden * unit_flops(op, bias=bias)
    assert node.params == sum(v.size for v in consts.values())
    assert node.output_shapes[0] == y_shape


def test_lstm_peepholes_initial_states_and_no_hidden_size_attribute() -> None:
    seq, batch, inp, hidden = 4, 2, 3, 5
    text = f"""
        <ir_version: 8, opset_import: ["" : 7]>
        g (float[{dims(seq, batch, inp)}] X, float[{dims(1, batch, hidden)}] H0,
           float[{dims(1, batch, hidden)}] C0) => (float[{dims(1, batch, hidden)}] Yh) {{
            Y, Yh = LSTM (X, W, R, B, , H0, C0, P)
        }}
    """
    consts = {
        "W": np.ones((1, 4 * hidden, inp), np.float32),
        "R": np.ones((1, 4 * hidden, hidden), np.float32),
        "B": np.ones((1, 8 * hidden), np.float32),
        "P": np.ones((1, 3 * hidden), np.float32),
    }
    node = report(text, consts).nodes[0]
    macs = seq * batch * 4 * hidden * (inp + hidden)
    assert node.macs == macs
    assert node.flops == 2 * macs + seq * batch * hidden * unit_flops("LSTM", bias=True, peepholes=True)
    assert node.params == sum(v.size for v in consts.values())


def test_gru_linear_before_reset_and_custom_activations() -> None:
    seq, batch, inp, hidden = 5, 2, 4, 3
    text = f"""
        <ir_version: 8, opset_import: ["" : 14]>
        g (float[{dims(seq, batch, inp)}] X) => (float[{dims(seq, 1, batch, hidden)}] Y) {{
            Y = GRU <hidden_size = {hidden}, linear_before_reset = 1> (X, W, R, B)
        }}
    """
    consts = {
        "W": np.ones((1, 3 * hidden, inp), np.float32),
        "R": np.ones((1, 3 * hidden, hidden), np.float32),
        "B": np.ones((1, 6 * hidden), np.float32),
    }
    node = report(text, consts).nodes[0]
    macs = seq * batch * 3 * hidden * (inp + hidden)
    per_unit = unit_flops("GRU", bias=True, linear_before_reset=True)
    assert node.flops == 2 * macs + seq * batch * hidden * per_unit

    relu_text = text.replace("linear_before_reset = 1", 'activations = ["Relu", "Relu"]')
    node = report(relu_text, consts).nodes[0]
    per_unit = 2 * RELU + RELU + 1 + 4 + 3  # f, f, g all Relu; reset product; interpolation; 3 bias adds
    assert node.flops == 2 * macs + seq * batch * hidden * per_unit


def test_rnn_constant_sequence_lens_stop_short_sequences() -> None:
    seq, batch, inp, hidden = 6, 3, 2, 4
    lens = np.array([6, 2, 4], np.int32)
    text = f"""
        <ir_version: 8, opset_import: ["" : 14]>
        g (float[{dims(seq, batch, inp)}] X) => (float[{dims(seq, 1, batch, hidden)}] Y) {{
            Y = RNN <hidden_size = {hidden}> (X, W, R, , L)
        }}
    """
    consts = {
        "W": np.ones((1, hidden, inp), np.float32),
        "R": np.ones((1, hidden, hidden), np.float32),
        "L": lens,
    }
    node = report(text, consts).nodes[0]
    steps = int(lens.sum())
    macs = steps * hidden * (inp + hidden)
    assert node.macs == macs
    assert node.flops == 2 * macs + steps * hidden * TANH


def test_recurrent_unknown_activation_is_an_error_not_zero() -> None:
    text = """
        <ir_version: 8, opset_import: ["" : 14]>
        g (float[2,1,2] X, float[1,2,2] W, float[1,2,2] R) => (float[2,1,1,2] Y) {
            Y = RNN <hidden_size = 2, activations = ["Bogus"]> (X, W, R)
        }
    """
    node = report(text).nodes[0]
    assert node.status == "rule-error"
    assert "Bogus" in node.message


# --------------------------------------------------------------------------------------------------
# Loop
# --------------------------------------------------------------------------------------------------

N, K = 3, 4
BODY_MACS = N * K * K  # x_out = MatMul(x [N,K], W [K,K])
BODY_FLOPS = 2 * BODY_MACS + N * K  # + the Add of the scan output


def loop_text(trip: str, cond: str, cond_out: str) -> str:
    """A Loop whose body does one MatMul and one Add; ``trip``/``cond`` are the M and cond inputs."""
    return f"""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[{N},{K}] X0, float[{K},{K}] W, int64 Mdyn, bool Cdyn, float[{N},{K}] S0)
          => (float[{N},{K}] Y) {{
            Mc = Constant <value = int64 {{5}}> ()
            Tc = Constant <value = bool {{1}}> ()
            Fc = Constant <value = bool {{0}}> ()
            Y, Ys = Loop <body = body (int64 i, bool c, float[{N},{K}] x)
                                 => (bool c_out, float[{N},{K}] x_out, float[{N},{K}] s) {{
                {cond_out}
                x_out = MatMul(x, W)
                s = Add(x_out, S0)
            }}> ({trip}, {cond}, X0)
        }}
    """


def test_loop_constant_trip_count_multiplies_the_body() -> None:
    rep = report(loop_text("Mc", "Tc", "c_out = Identity(c)"))
    loop = next(n for n in rep.nodes if n.op_type == "Loop")
    assert loop.status == "costed"
    assert loop.macs == 5 * BODY_MACS
    assert loop.flops == 5 * BODY_FLOPS
    assert loop.flags == ()
    # body bytes x 5 are carried as extra reads and writes (at least the MatMul/Add outputs, 2 * N*K*4 B)
    assert loop.write_bytes >= 5 * 2 * N * K * 4


def test_loop_without_condition_input_is_a_for_loop() -> None:
    rep = report(loop_text("Mc", "", "c_out = Identity(c)"))
    loop = next(n for n in rep.nodes if n.op_type == "Loop")
    assert loop.macs == 5 * BODY_MACS
    assert loop.flags == ()


def test_loop_unknown_trip_count_counts_one_iteration_and_flags_it() -> None:
    rep = report(loop_text("Mdyn", "Tc", "c_out = Identity(c)"))
    loop = next(n for n in rep.nodes if n.op_type == "Loop")
    assert loop.macs == BODY_MACS
    assert loop.flops == BODY_FLOPS
    assert "loop-trip-count-unknown" in loop.flags


def test_condition_driven_loop_is_a_lower_bound() -> None:
    # a body condition computed from data: the loop may stop before M
    rep = report(loop_text("Mc", "Tc", "c_out = Less(i, Mc)"))
    loop = next(n for n in rep.nodes if n.op_type == "Loop")
    assert loop.macs == BODY_MACS
    assert "loop-trip-count-unknown" in loop.flags


def test_loop_with_constant_false_condition_runs_zero_times() -> None:
    rep = report(loop_text("Mc", "Fc", "c_out = Identity(c)"))
    loop = next(n for n in rep.nodes if n.op_type == "Loop")
    assert loop.macs == 0
    assert loop.flops == 0


def test_unsupported_op_inside_a_loop_body_is_reported() -> None:
    text = loop_text("Mc", "Tc", "c_out = Identity(c)").replace(
        "s = Add(x_out, S0)", "s = com.microsoft.NoSuchOp(x_out, S0)"
    )
    text = text.replace('opset_import: ["" : 17]', 'opset_import: ["" : 17, "com.microsoft" : 1]')
    rep = report(text)
    loop = next(n for n in rep.nodes if n.op_type == "Loop")
    assert any("NoSuchOp" in f for f in loop.flags)
    assert any("NoSuchOp" in op for op in rep.unsupported)


# --------------------------------------------------------------------------------------------------
# If
# --------------------------------------------------------------------------------------------------


def if_text(cond: str) -> str:
    """then: MatMul [N,K]x[K,K] (N*K*K MACs); else: one Add (N*K FLOPs)."""
    return f"""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[{N},{K}] X, float[{K},{K}] W, bool C) => (float[{N},{K}] Z) {{
            Tc = Constant <value = bool {{1}}> ()
            Fc = Constant <value = bool {{0}}> ()
            Z = If <then_branch = tb () => (float[{N},{K}] zt) {{ zt = MatMul(X, W) }},
                    else_branch = eb () => (float[{N},{K}] ze) {{ ze = Add(X, X) }}> ({cond})
        }}
    """


def test_if_unknown_condition_takes_the_dearer_branch_and_flags_it() -> None:
    node = next(n for n in report(if_text("C")).nodes if n.op_type == "If")
    assert node.macs == N * K * K
    assert node.flops == 2 * N * K * K
    assert "if-branch-max" in node.flags


@pytest.mark.parametrize(("cond", "macs", "flops"), [("Tc", N * K * K, 2 * N * K * K), ("Fc", 0, N * K)])
def test_if_constant_condition_takes_the_taken_branch(cond: str, macs: int, flops: int) -> None:
    node = next(n for n in report(if_text(cond)).nodes if n.op_type == "If")
    assert (node.macs, node.flops) == (macs, flops)
    assert "if-branch-max" not in node.flags


# --------------------------------------------------------------------------------------------------
# Scan
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1])
def test_scan_runs_the_body_once_per_step_along_the_scan_axis(axis: int) -> None:
    steps, width = 6, 4
    x_shape = (steps, 2, width) if axis == 0 else (2, steps, width)
    text = f"""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2,{width}] S0, float[{dims(*x_shape)}] X, float[{width},{width}] W)
          => (float[2,{width}] S) {{
            S, Ys = Scan <num_scan_inputs = 1, scan_input_axes = [{axis}],
                          body = body (float[2,{width}] s, float[2,{width}] x) => (float[2,{width}] s_out,
                                                                                  float[2,{width}] y) {{
                p = MatMul(x, W)
                s_out = Add(s, p)
                y = Identity(s_out)
            }}> (S0, X)
        }}
    """
    node = next(n for n in report(text).nodes if n.op_type == "Scan")
    body_macs = 2 * width * width
    assert node.macs == steps * body_macs
    assert node.flops == steps * (2 * body_macs + 2 * width)
    assert node.flags == ()
