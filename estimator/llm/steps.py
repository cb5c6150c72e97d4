"""The kernels of one generation step of a decoder graph, at any prompt or cache length, without costing the
graph once per step.

**Layout.** A decoder graph is read in the optimum / ONNX Runtime GenAI layout: ``input_ids[batch, seq]``,
optional ``attention_mask[batch, past + seq]`` and ``position_ids[batch, seq]``, and, with a cache,
``past_key_values.N.key`` / ``.value`` (or ``past.N.key``) ``[batch, kv_heads, past, head_dim]``. Every input is
bound by name, so the names of its symbolic dimensions do not matter.

**Why a few bindings suffice.** With a cache, every node's FLOPs and bytes are *affine* in the past length
``p`` at a fixed ``seq`` (the attention matmuls, softmax, mask and the cache concatenation grow by a fixed
amount per cached token; everything else does not change), and fusion does not depend on ``p``. So the
kernels at any ``p`` follow exactly from the kernels at two lengths (interpolated field by field and rounded
to integers), and a third length checks it. A plain graph without a cache recomputes the whole prefix: its
costs are quadratic in the sequence length (scores are ``seq x seq``) and three lengths plus a fourth as a
check determine them. When the check fails the steps are costed one binding at a time.

**Repeated blocks.** A zoo decoder (``zoo:...`` spec) of ``L`` identical blocks is costed as a 2-block graph
whose second block is repeated ``L - 1`` times in launch order (kernels are assigned to blocks by their
nodes' ``layers.<i>/`` name scope). The kernels and their costs are those of the ``L``-block graph; the one
approximation is the peak of live activations, which the prior takes from the 2-block graph (it decides
only whether activations fit in a cache, and a decoder of this size overflows every cache either way).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import onnx

from estimator.cost.kernels import Kernel, KernelReport, fuse_kernels
from estimator.cost.nodes import count_costs
from estimator.energy.gpu_efficiency import GemmShape, gemm_shape
from estimator.energy.physics import peak_live_activation_bytes
from estimator.errors import GraphStructureError
from estimator.graph.load import load_graph
from estimator.zoo.decoders import LAYER_SCOPE

#: ONNX ops whose PyTorch counterparts return views (``torch.transpose``/``permute``, basic slicing; PyTorch
#: docs, "Tensor Views"): eager PyTorch launches no kernel for them and moves no bytes - the consumer reads the
#: strided tensor (cuBLAS takes transposed operands as they lie). ONNX Runtime copies them.
TORCH_VIEW_OPS = frozenset({"Transpose", "Slice"})
#: Runtimes that execute the graph as eager PyTorch (where :data:`TORCH_VIEW_OPS` are views).
EAGER_TORCH_RUNTIMES = frozenset({"pytorch-cuda", "pytorch-cuda-sdpa", "pytorch-cpu", "hf-pipeline"})

_PAST = re.compile(r"^past(?:_key_values)?\.(\d+)\.(key|value)$")
_FIELDS = ("macs", "flops", "params", "param_bytes", "weight_bytes", "activation_read_bytes", "write_bytes")
_LAYER = re.compile(rf"^{re.escape(LAYER_SCOPE)}(\d+)/")


@dataclass(frozen=True)
class DecoderLayout:
    """What the inputs of a decoder graph say about it.

    Attributes:
        has_cache: the graph takes past key/value inputs.
        layers: number of past key/value pairs (0 without a cache).
        kv_heads, head_dim: shape of one cached key or value per token (0 without a cache).
        kv_dtype: element type of the cache inputs.
        inputs: names of the graph's real inputs.
    """

    has_cache: bool
    layers: int
    kv_heads: int
    head_dim: int
    kv_dtype: str
    inputs: tuple[str, ...]


def _dims(vi: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in vi.type.tensor_type.shape.dim]


def read_layout(model: onnx.ModelProto) -> DecoderLayout:
    """The :class:`DecoderLayout` of ``model``; GraphStructureError when it is not a decoder graph."""
    from estimator.dtypes import dtype_name

    inits = {t.name for t in model.graph.initializer}
    inputs = [vi for vi in model.graph.input if vi.name not in inits]
    names = tuple(vi.name for vi in inputs)
    if "input_ids" not in names:
        raise GraphStructureError(
            f"this is not a decoder graph with an 'input_ids' input (its inputs are {', '.join(names)}); "
            "export it with optimum (decoder_model.onnx or decoder_with_past_model.onnx)"
        )
    past = [vi for vi in inputs if _PAST.match(vi.name)]
    if not past:
        return DecoderLayout(False, 0, 0, 0, "float32", names)
    dims = _dims(past[0])
    if len(dims) != 4 or not isinstance(dims[1], int) or not isinstance(dims[3], int) or not dims[1]:
        raise GraphStructureError(
            f"past input '{past[0].name}' should be [batch, kv_heads, past_sequence_length, head_dim] with "
            f"static kv_heads and head_dim; it is {dims}"
        )
    layers = len({_PAST.match(vi.name).group(1) for vi in past})
    kv_dtype = dtype_name(past[0].type.tensor_type.elem_type)
    return DecoderLayout(True, layers, int(dims[1]), int(dims[3]), kv_dtype, names)


def bind(layout: DecoderLayout, batch: int, seq: int, past: int) -> dict[str, tuple[int, ...]]:
    """Shapes of every input for one step: ``batch`` sequences of ``seq`` new tokens after ``past`` cached."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name in layout.inputs:
        if _PAST.match(name):
            shapes[name] = (batch, layout.kv_heads, past, layout.head_dim)
        elif name == "attention_mask":
            shapes[name] = (batch, past + seq)
        elif name in ("input_ids", "position_ids"):
            shapes[name] = (batch, seq)
    return shapes


class StepKernels:
    """Kernels of a decoder graph at ``(seq, past)`` bindings, each binding costed at most once.

    Args:
        model: the decoder graph (full, or the 2-block graph of a zoo decoder when ``layers`` is given).
        batch: sequences decoded together.
        fuse: fuse kernels as the runtime does (``Runtime.fusion``: graph runtimes fuse, eager ones do not,
            eager ones calling SDPA fuse attention chains only).
        layers: the number of blocks to repeat the 2-block ``model`` to (None: the graph as it is).
        views: op types that the runtime runs as views (no launch, no traffic; :data:`TORCH_VIEW_OPS` for
            eager PyTorch), applied to unfused kernels of one node only.
    """

    def __init__(
        self,
        model: onnx.ModelProto,
        batch: int,
        *,
        fuse: bool | str = True,
        layers: int | None = None,
        views: frozenset[str] = frozenset(),
    ) -> None:
        self.model = model
        self.batch = batch
        self.fuse = fuse
        self.views = views
        self.layout = read_layout(model)
        self.layers = layers
        self.exact_bindings = 0
        self._cache: dict[tuple[int, int], KernelReport] = {}

    def exact(self, seq: int, past: int) -> KernelReport:
        """Load, cost and fuse the graph at one binding (``past >= 1`` with a cache, 0 without); for a
        2-block stand-in these are its own kernels (:meth:`full` repeats the blocks)."""
        key = (seq, past)
        if key not in self._cache:
            graph = load_graph(self.model, shapes=bind(self.layout, self.batch, seq, past))
            report = fuse_kernels(count_costs(graph), fuse=self.fuse)
            self._cache[key] = as_views(report, self.views) if self.views else report
            self.exact_bindings += 1
        return self._cache[key]

    def full(self, report: KernelReport) -> KernelReport:
        """The kernels of the whole model from those of :meth:`exact` (blocks repeated to ``layers``)."""
        return report if self.layers is None else repeat_blocks(report, self.layers)

    def polynomial(
        self, at: Callable[[int], KernelReport], xs: Sequence[int], check: int
    ) -> _Polynomial | None:
        """Kernels as a polynomial in one length through the bindings ``xs``, checked at ``check``;
        None when the kernels differ in structure or the check fails."""
        reports = [at(x) for x in xs]
        poly = _Polynomial.fit(reports, xs)
        if poly is None:
            return None
        expected = at(check)
        got = poly(check)
        same = [(k.name, k.launches) for k in expected.kernels] == [(k.name, k.launches) for k in got.kernels]
        if not same or not all(
            np.array_equal(got.arrays[f], expected.arrays[f]) for f in _FIELDS if f in expected.arrays
        ):
            return None
        if gemm_shapes(got) != gemm_shapes(expected):
            return None
        return poly


@dataclass(frozen=True)
class GraphFacts:
    """Graph-level facts of one binding that interpolated kernels do not carry (their ``costs`` are those of
    the first fitted binding).

    Attributes:
        peak_live_bytes: peak of live run-time tensor bytes over the launch order, B.
        input_elements: elements of the run-time inputs, at the binding's shapes.
        block_cache_bytes: the larger of block 1's past-input and present-output bytes, B (what each further
            block adds to the live peak while its cache is alive).
        block_past_elements: elements of block 1's past key/value inputs.
    """

    peak_live_bytes: float
    input_elements: float
    block_cache_bytes: float = 0.0
    block_past_elements: float = 0.0

    @classmethod
    def of(cls, report: KernelReport) -> GraphFacts:
        """The facts of a costed binding."""
        graph = report.costs.graph
        tensors = {n: graph.tensor(n) for n in (*graph.inputs, *graph.outputs)}
        inputs = sum(t.numel for n in graph.inputs if (t := tensors[n]) is not None and t.numel)
        past = [tensors[n] for n in graph.inputs if (m := _PAST.match(n)) and m.group(1) == "1"]
        present = [tensors[n] for n in graph.outputs if n.startswith("present.1.")]
        past_bytes = sum(t.nbytes or 0 for t in past if t is not None)
        present_bytes = sum(t.nbytes or 0 for t in present if t is not None)
        return cls(
            float(peak_live_activation_bytes(report)),
            float(inputs),
            float(max(past_bytes, present_bytes)),
            float(sum(t.numel or 0 for t in past if t is not None)),
        )

    def as_row(self) -> list[float]:
        """The facts as numbers, in field order."""
        return [self.peak_live_bytes, self.input_elements, self.block_cache_bytes, self.block_past_elements]


def gemm_shapes(report: KernelReport) -> dict[int, GemmShape | None]:
    """The GEMM of every kernel that multiplies (:func:`~estimator.energy.gpu_efficiency.gemm_shape`), by
    kernel index, kept with the report under the key the v2 prior reads (``"gemm_shapes"``). Interpolated
    reports carry another binding's graph, so :class:`_Polynomial` fills theirs with interpolated shapes."""
    shapes = report.derived("gemm_shapes", dict)
    for i, k in enumerate(report.kernels):
        if k.macs > 0 and i not in shapes:
            shapes[i] = gemm_shape(report, k)
    return {i: s for i, s in shapes.items() if report.kernels[i].macs > 0}


class _Polynomial:
    """Per-kernel cost fields and GEMM shapes as polynomials (degree ``len(xs) - 1``) of one length, exact at
    integers."""

    def __init__(
        self,
        base: KernelReport,
        xs: np.ndarray,
        values: dict[str, np.ndarray],
        facts,
        shapes: tuple[list[int], list[str], np.ndarray],
    ) -> None:
        self.base = base
        self.xs = xs
        self.values = values  # field -> [len(xs), kernels]
        self._facts = facts  # [len(xs), 4]: GraphFacts of the fitted bindings
        self._shapes = shapes  # kernel indices, op classes, [len(xs), kernels, (m, n, k, groups)]

    @classmethod
    def fit(cls, reports: Sequence[KernelReport], xs: Sequence[int]) -> _Polynomial | None:
        shape = [(k.name, k.kind, k.launches, k.dtype) for k in reports[0].kernels]
        if any([(k.name, k.kind, k.launches, k.dtype) for k in r.kernels] != shape for r in reports[1:]):
            return None
        values = {f: np.array([[getattr(k, f) for k in r.kernels] for r in reports], float) for f in _FIELDS}
        facts = np.array([GraphFacts.of(r).as_row() for r in reports])
        # The prior tiles each GEMM by its shape (M, N, K): those of attention grow with the length too.
        gemms = [gemm_shapes(r) for r in reports]
        known = sorted(i for i, s in gemms[0].items() if s is not None)
        if any(sorted(i for i, s in g.items() if s is not None) != known for g in gemms[1:]):
            return None
        classes = [gemms[0][i].op_class for i in known]
        dims = np.array([[[g[i].m, g[i].n, g[i].k, g[i].groups] for i in known] for g in gemms], float)
        return cls(reports[0], np.asarray(xs, float), values, facts, (known, classes, dims))

    def _weights(self, x: int) -> np.ndarray:
        weights = np.ones(len(self.xs))
        for i, xi in enumerate(self.xs):
            for j, xj in enumerate(self.xs):
                if i != j:
                    weights[i] *= (x - xj) / (xi - xj)
        return weights

    def facts(self, x: int) -> GraphFacts:
        """The graph facts at length ``x``, interpolated like the kernels (input elements are affine in the
        length; the live peak is where one binding's largest tensors are alive, affine between changes of
        which tensors those are)."""
        return GraphFacts(*(float(v) for v in self._weights(x) @ self._facts))

    def __call__(self, x: int) -> KernelReport:
        """The kernels at length ``x`` (Lagrange interpolation through the fitted lengths, rounded)."""
        weights = self._weights(x)
        fields = {f: np.rint(weights @ v).astype(np.int64).tolist() for f, v in self.values.items()}
        kernels = tuple(_with(k, {f: fields[f][i] for f in _FIELDS}) for i, k in enumerate(self.base.kernels))
        report = replace(self.base, kernels=kernels)
        known, classes, dims = self._shapes
        if known:
            at = np.rint(np.tensordot(weights, dims, axes=1)).astype(np.int64).tolist()
            shapes = {i: GemmShape(*d, op_class=c) for i, d, c in zip(known, at, classes, strict=True)}
            for i, k in enumerate(kernels):
                if k.macs > 0 and i not in shapes:
                    shapes[i] = None  # no known shape at the fitted lengths either
            report.derived("gemm_shapes", lambda: shapes)
        return report


def _with(kernel: Kernel, changes: dict) -> Kernel:
    """``dataclasses.replace`` for a frozen Kernel without re-running its constructor (thousands per step)."""
    new = object.__new__(Kernel)
    new.__dict__.update(kernel.__dict__)
    new.__dict__.update(changes)
    return new


def as_views(report: KernelReport, ops: frozenset[str]) -> KernelReport:
    """``report`` with every kernel whose computing nodes are all of an op in ``ops`` (with any zero-copy views
    that joined it) made a view: no launch, no FLOPs, no traffic (eager PyTorch and :data:`TORCH_VIEW_OPS`)."""
    nodes = report.costs.nodes
    zero = dict.fromkeys(("macs", "flops", "activation_read_bytes", "write_bytes"), 0)
    zero.update(launches=0, kind="view")

    def is_view(k: Kernel) -> bool:
        doing = [i for i in k.nodes if nodes[i].status != "zero-cost"]
        return bool(doing) and all(nodes[i].op_type in ops for i in doing)

    return replace(report, kernels=tuple(_with(k, zero) if is_view(k) else k for k in report.kernels))


def _block_of(report: KernelReport, kernel: Kernel) -> int | None:
    for i in kernel.nodes:
        m = _LAYER.match(report.costs.nodes[i].name)
        if m:
            return int(m.group(1))
    return None


def block_order(report: KernelReport, layers: int) -> list[int]:
    """Indices into ``report.kernels`` (a 2-block zoo decoder) of the kernels of the ``layers``-block model in
    launch order: kernels before the first block and after the last once, block 0 once, block 1
    ``layers - 1`` times."""
    blocks = [_block_of(report, k) for k in report.kernels]
    seen = [i for i, b in enumerate(blocks) if b is not None]
    if not seen or {b for b in blocks if b is not None} != {0, 1}:
        raise GraphStructureError(
            "repeat_blocks needs a 2-block zoo decoder (node scopes layers.0/, layers.1/)"
        )
    first, last = seen[0], seen[-1]
    n = len(report.kernels)
    head = [i for i in range(n) if i < first or (first <= i <= last and blocks[i] == 0)]
    body = [i for i in range(first, last + 1) if blocks[i] == 1]
    stray = [i for i in range(first, last + 1) if blocks[i] is None]
    tail = list(range(last + 1, n))
    return head + stray + body * (layers - 1) + tail


def repeat_blocks(report: KernelReport, layers: int) -> KernelReport:
    """The kernels of a 2-block zoo decoder with its second block repeated to ``layers`` blocks in all
    (:func:`block_order`); kernel indices are renumbered in launch order."""
    order = block_order(report, layers)
    kernels = tuple(_with(report.kernels[j], {"index": i}) for i, j in enumerate(order))
    # Each original node maps to the last copy of its kernel (what liveness needs: when a tensor dies).
    last_copy = {j: i for i, j in enumerate(order)}
    kernel_of_node = {n: last_copy[k] for n, k in report.kernel_of_node.items()}
    return replace(report, kernels=kernels, kernel_of_node=kernel_of_node)
