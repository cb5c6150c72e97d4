"""Data-movement, indexing and zero-cost rules on tiny graphs, with bytes and FLOPs in closed form."""

from __future__ import annotations

import math

import pytest
from onnx import TensorProto, helper, parser

from estimator.cost.nodes import CostReport, NodeCost, count_costs
from estimator.cost.ops.base import REGISTRY
from estimator.graph.load import load_graph


def cost(text: str, opset: int) -> CostReport:
    """Parse a graph body written after the opset header and cost it."""
    model = parser.parse_model(f'<ir_version: 10, opset_import: ["" : {opset}]>\n{text}')
    return count_costs(load_graph(model))


def only(report: CostReport, op_type: str) -> NodeCost:
    """The single node of ``op_type`` in ``report``."""
    [node] = [n for n in report.nodes if n.op_type == op_type]
    return node


def external_initializer(name: str, dims: list[int], data_type: int = TensorProto.FLOAT) -> TensorProto:
    """An initializer whose data lives in an (absent) external file, as in large LLM exports."""
    tensor = TensorProto(name=name, dims=dims, data_type=data_type)
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "weights_not_shipped.bin"
    return tensor


# --- Gather and embeddings --------------------------------------------------------------------------------


@pytest.mark.parametrize("opset", [11, 13])
def test_gather_embedding_reads_only_gathered_rows(opset: int) -> None:
    """GPT-2's wte: the table is 50257*768 parameters, but one pass reads only 128 rows of it."""
    vocab, hidden, tokens = 50257, 768, 128
    graph = helper.make_graph(
        [helper.make_node("Gather", ["wte", "ids"], ["h"], axis=0)],
        "embed",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, tokens])],
        [helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, tokens, hidden])],
        initializer=[external_initializer("wte", [vocab, hidden])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    node = only(count_costs(load_graph(model)), "Gather")
    assert node.params == vocab * hidden
    assert node.param_bytes == vocab * hidden * 4
    assert node.weight_bytes == tokens * hidden * 4
    assert node.activation_read_bytes == tokens * 8
    assert node.write_bytes == tokens * hidden * 4
    assert node.flops == 0


def test_gather_inner_axis_row_size() -> None:
    report = cost("g (float[3,20,7] X, int64[2,4] I) => (float[3,2,4,7] Y) { Y = Gather<axis=1>(X, I) }", 13)
    node = only(report, "Gather")
    gathered = 8 * 3 * 7  # numel(indices) * elements of a row without the gathered axis
    assert node.activation_read_bytes == gathered * 4 + 8 * 8
    assert node.write_bytes == gathered * 4


def test_gather_read_is_capped_at_the_table() -> None:
    values = ", ".join(["1.0"] * 32)
    report = cost(
        f"g (int64[1,100] I) => (float[1,100,8] Y) <float[4,8] T = {{{values}}}> {{ Y = Gather(T, I) }}", 13
    )
    node = only(report, "Gather")
    assert node.weight_bytes == 4 * 8 * 4
    assert node.params == 32
    assert node.write_bytes == 100 * 8 * 4


def test_gather_on_integer_table_is_not_a_parameter() -> None:
    report = cost("g (int64[2] I) => (int64[2] Y) <int64[5] T = {1, 2, 3, 4, 5}> { Y = Gather(T, I) }", 13)
    node = only(report, "Gather")
    assert node.params == 0
    assert node.weight_bytes == 2 * 8


def test_gather_elements_and_nd_read_gathered_elements() -> None:
    report = cost(
        "g (float[6,10] X, int64[6,3] I, int64[4,1] J) => (float[6,3] A, float[4,10] B) "
        "{ A = GatherElements<axis=1>(X, I)\n B = GatherND(X, J) }",
        13,
    )
    elements = only(report, "GatherElements")
    assert elements.activation_read_bytes == 18 * 4 + 18 * 8
    assert elements.write_bytes == 18 * 4
    nd = only(report, "GatherND")
    assert nd.activation_read_bytes == 40 * 4 + 4 * 8
    assert nd.write_bytes == 40 * 4


# --- scatters and other indexing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("opset", "reduction", "flops"), [(13, None, 0), (16, "add", 2 * 16), (18, "max", 2 * 16)]
)
def test_scatter_nd(opset: int, reduction: str | None, flops: int) -> None:
    attrs = "" if reduction is None else f'<reduction="{reduction}">'
    report = cost(
        "g (float[4,16] D, int64[2,1] I, float[2,16] U) => (float[4,16] Y) "
        f"{{ Y = ScatterND{attrs}(D, I, U) }}",
        opset,
    )
    node = only(report, "ScatterND")
    assert node.flops == flops
    assert node.activation_read_bytes == 64 * 4 + 2 * 8 + 32 * 4
    assert node.write_bytes == 64 * 4


def test_scatter_elements_copies_data() -> None:
    report = cost(
        "g (float[3,5] D, int64[3,2] I, float[3,2] U) => (float[3,5] Y) "
        "{ Y = ScatterElements<axis=1>(D, I, U) }",
        13,
    )
    node = only(report, "ScatterElements")
    assert (node.flops, node.write_bytes) == (0, 15 * 4)
    assert node.activation_read_bytes == 15 * 4 + 6 * 8 + 6 * 4


def test_one_hot_reads_indices_and_values_not_depth() -> None:
    report = cost(
        "g (int64[2,5] I) => (float[2,5,10] Y) <int64 depth = {10}, float[2] vals = {0.0, 1.0}> "
        "{ Y = OneHot<axis=-1>(I, depth, vals) }",
        11,
    )
    node = only(report, "OneHot")
    assert node.activation_read_bytes == 10 * 8
    assert node.weight_bytes == 2 * 4  # values, not depth
    assert node.params == 0
    assert node.write_bytes == 100 * 4


def test_non_zero_is_flagged_with_an_upper_bound() -> None:
    report = cost("g (float[3,4] X) => (int64[2,N] Y) { Y = NonZero(X) }", 13)
    node = only(report, "NonZero")
    assert node.status == "costed"
    assert node.flops == 12
    assert node.write_bytes == 2 * 12 * 8
    assert "data-dependent-shape" in node.flags


def test_compress_with_dynamic_condition_is_bounded() -> None:
    report = cost("g (float[6,4] X, bool[6] C) => (float[N,4] Y) { Y = Compress<axis=0>(X, C) }", 11)
    node = only(report, "Compress")
    assert node.activation_read_bytes == 24 * 4 + 6
    assert node.write_bytes == 24 * 4
    assert "data-dependent-shape" in node.flags


def test_unique_sort_cost_and_bound() -> None:
    report = cost("g (float[16] X) => (float[N] Y) { Y = Unique(X) }", 11)
    node = only(report, "Unique")
    assert node.flops == 16 * math.ceil(math.log2(16))
    assert node.write_bytes == 16 * 4
    assert "data-dependent-shape" in node.flags


# --- slices, splits, pads ---------------------------------------------------------------------------------


@pytest.mark.parametrize("opset", [1, 10, 13])
def test_slice_reads_selected_elements(opset: int) -> None:
    """Slice moved starts/ends/axes from attributes (1) to inputs (10); steps exist from 10."""
    if opset < 10:
        body, inits, out = "Y = Slice<starts=[2], ends=[8], axes=[1]>(X)", "", "float[4,6,6]"
    elif opset < 13:
        body = "Y = Slice(X, s, e, a)"
        inits, out = "<int64[1] s = {2}, int64[1] e = {8}, int64[1] a = {1}>", "float[4,6,6]"
    else:
        body = "Y = Slice(X, s, e, a, st)"
        inits = "<int64[1] s = {2}, int64[1] e = {8}, int64[1] a = {1}, int64[1] st = {2}>"
        out = "float[4,3,6]"
    report = cost(f"g (float[4,10,6] X) => ({out} Y) {inits} {{ {body} }}", opset)
    node = only(report, "Slice")
    selected = 4 * (3 if opset >= 13 else 6) * 6
    assert node.flops == 0
    assert node.activation_read_bytes == selected * 4
    assert node.weight_bytes == 0  # starts/ends/axes/steps are metadata
    assert node.write_bytes == selected * 4


@pytest.mark.parametrize("opset", [11, 13, 18])
def test_split_forms(opset: int) -> None:
    """split: attribute (11), input (13); num_outputs attribute (18)."""
    if opset < 13:
        body, inits = "A, B = Split<axis=1, split=[3, 3]>(X)", ""
    elif opset < 18:
        body, inits = "A, B = Split<axis=1>(X, sp)", "<int64[2] sp = {3, 3}>"
    else:
        body, inits = "A, B = Split<axis=1, num_outputs=2>(X)", ""
    report = cost(f"g (float[2,6,5] X) => (float[2,3,5] A, float[2,3,5] B) {inits} {{ {body} }}", opset)
    node = only(report, "Split")
    assert (node.flops, node.weight_bytes) == (0, 0)
    assert node.activation_read_bytes == 60 * 4
    assert node.write_bytes == 60 * 4


@pytest.mark.parametrize("opset", [2, 11, 13, 18, 19])
def test_pad_forms(opset: int) -> None:
    """pads: attribute (2), input (11, 13), with axes input (18), wrap mode (19)."""
    if opset < 11:
        body, inits = 'Y = Pad<mode="constant", pads=[0, 0, 1, 2, 0, 0, 1, 2]>(X)', ""
    elif opset < 18:
        body = 'Y = Pad<mode="reflect">(X, p, v)'
        inits = "<int64[8] p = {0, 0, 1, 2, 0, 0, 1, 2}, float v = {0.0}>"
    else:
        mode = "wrap" if opset >= 19 else "edge"
        body = f'Y = Pad<mode="{mode}">(X, p, , ax)'
        inits = "<int64[4] p = {1, 2, 1, 2}, int64[2] ax = {2, 3}>"
    report = cost(f"g (float[1,3,8,8] X) => (float[1,3,10,12] Y) {inits} {{ {body} }}", opset)
    node = only(report, "Pad")
    assert node.flops == 0
    assert node.activation_read_bytes == 3 * 8 * 8 * 4
    assert node.weight_bytes == 0
    assert node.write_bytes == 3 * 10 * 12 * 4


# --- layouts, copies and fills ----------------------------------------------------------------------------


def test_transpose_reads_and_writes_every_element() -> None:
    report = cost("g (float[2,12,64,5] X) => (float[2,64,12,5] Y) { Y = Transpose<perm=[0,2,1,3]>(X) }", 13)
    node = only(report, "Transpose")
    n = 2 * 12 * 64 * 5
    assert (node.flops, node.activation_read_bytes, node.write_bytes) == (0, n * 4, n * 4)


def test_concat_with_class_token_parameter() -> None:
    """A ViT concatenates a learned class token to the patch embeddings: the token is a parameter."""
    values = ", ".join(["0.5"] * 8)
    report = cost(
        f"g (float[1,4,8] X) => (float[1,5,8] Y) <float[1,1,8] cls = {{{values}}}> "
        "{ Y = Concat<axis=1>(cls, X) }",
        13,
    )
    node = only(report, "Concat")
    assert (node.params, node.weight_bytes) == (8, 8 * 4)
    assert node.activation_read_bytes == 32 * 4
    assert node.write_bytes == 40 * 4


def test_expand_and_tile_write_the_materialised_output() -> None:
    report = cost(
        "g (float[1,1,8] X, float[2,3] T) => (float[4,6,8] Y, float[4,9] Z) "
        "<int64[3] s = {4, 6, 8}, int64[2] r = {2, 3}> { Y = Expand(X, s)\n Z = Tile(T, r) }",
        13,
    )
    expand = only(report, "Expand")
    assert (expand.activation_read_bytes, expand.weight_bytes, expand.write_bytes) == (8 * 4, 0, 192 * 4)
    tile = only(report, "Tile")
    assert (tile.activation_read_bytes, tile.weight_bytes, tile.write_bytes) == (6 * 4, 0, 36 * 4)


def test_depth_space_rearrangements() -> None:
    report = cost(
        "g (float[1,8,3,3] X, float[1,2,6,6] Z) => (float[1,2,6,6] Y, float[1,8,3,3] W) "
        "{ Y = DepthToSpace<blocksize=2>(X)\n W = SpaceToDepth<blocksize=2>(Z) }",
        13,
    )
    for op in ("DepthToSpace", "SpaceToDepth"):
        node = only(report, op)
        assert (node.flops, node.activation_read_bytes, node.write_bytes) == (0, 72 * 4, 72 * 4)


def test_trilu_and_reverse_sequence() -> None:
    report = cost(
        "g (float[2,5,5] X, float[6,2,3] S, int64[2] L) => (float[2,5,5] Y, float[6,2,3] R) "
        "<int64 k = {0}> { Y = Trilu<upper=0>(X, k)\n R = ReverseSequence<batch_axis=1, time_axis=0>(S, L) }",
        14,
    )
    trilu = only(report, "Trilu")
    assert (trilu.activation_read_bytes, trilu.weight_bytes, trilu.write_bytes) == (50 * 4, 0, 50 * 4)
    rev = only(report, "ReverseSequence")
    assert rev.activation_read_bytes == 36 * 4 + 2 * 8


def test_unfolded_constant_of_shape_and_eyelike_are_fills() -> None:
    report = cost(
        "g (int64[2] S, float[4,4] X) => (float[3,5] Y, float[4,4] E) "
        "{ Y = ConstantOfShape(S)\n E = EyeLike(X) }",
        13,
    )
    fill = only(report, "ConstantOfShape")
    assert fill.status == "costed"
    assert (fill.activation_read_bytes, fill.write_bytes) == (0, 15 * 4)
    eye = only(report, "EyeLike")
    assert (eye.activation_read_bytes, eye.write_bytes) == (0, 16 * 4)


def test_range_writes_its_output() -> None:
    report = cost("g (float s, float e, float d) => (float[10] Y) { Y = Range(s, e, d) }", 11)
    node = only(report, "Range")
    assert node.flops == 2 * 10  # start + i * delta
    assert (node.activation_read_bytes, node.write_bytes) == (0, 10 * 4)


@pytest.mark.parametrize(
    ("opset", "mode", "points"), [(16, "bilinear", 4), (16, "nearest", 1), (20, "cubic", 16)]
)
def test_grid_sample(opset: int, mode: str, points: int) -> None:
    n, c, h, w, ho, wo = 1, 3, 8, 8, 4, 5
    report = cost(
        f"g (float[{n},{c},{h},{w}] X, float[{n},{ho},{wo},2] G) => (float[{n},{c},{ho},{wo}] Y) "
        f'{{ Y = GridSample<mode="{mode}">(X, G) }}',
        opset,
    )
    node = only(report, "GridSample")
    outputs, grid_points = n * c * ho * wo, n * ho * wo
    macs = 0 if points == 1 else outputs * points
    weights = 0 if points == 1 else points * 2
    assert node.macs == macs
    assert node.flops == 2 * macs + grid_points * (4 * 2 + weights)
    x_read = min(outputs * points, n * c * h * w) * 4
    assert node.activation_read_bytes == x_read + grid_points * 2 * 4


def test_col2im_adds_every_column_element() -> None:
    report = cost(
        "g (float[1,12,9] X) => (float[1,3,4,4] Y) <int64[2] img = {4, 4}, int64[2] blk = {2, 2}> "
        "{ Y = Col2Im(X, img, blk) }",
        18,
    )
    node = only(report, "Col2Im")
    assert node.flops == 108
    assert (node.activation_read_bytes, node.weight_bytes, node.write_bytes) == (108 * 4, 0, 48 * 4)


def test_center_crop_pad_reads_the_kept_centre() -> None:
    report = cost(
        "g (float[10,4,3] X) => (float[6,7,3] Y) <int64[2] s = {6, 7}> { Y = CenterCropPad<axes = [0, 1]>(X, s) }",
        18,
    )
    node = only(report, "CenterCropPad")
    assert node.activation_read_bytes == 6 * 4 * 3 * 4
    assert node.write_bytes == 6 * 7 * 3 * 4


# --- zero-cost views --------------------------------------------------------------------------------------


def test_reshape_flatten_identity_dropout_shape_size_are_free() -> None:
    report = cost(
        "g (float[2,3,4] X) => (float[6,4] A, float[2,12] B, float[2,3,4] C, float[2,3,4] D, int64[3] S, "
        "int64 N) "
        "<int64[2] shp = {6, 4}> { A = Reshape(X, shp)\n B = Flatten<axis=1>(X)\n C = Identity(X)\n"
        " D = Dropout(X)\n S = Shape(X)\n N = Size(X) }",
        13,
    )
    for op in ("Reshape", "Flatten", "Identity", "Dropout", "Shape", "Size"):
        node = only(report, op)
        # Shape and Size of a fully shaped tensor are known at load time: the engine folds them.
        assert node.status == ("folded" if op in ("Shape", "Size") else "zero-cost"), op
        assert (node.flops, node.read_bytes, node.write_bytes, node.params) == (0, 0, 0, 0)


@pytest.mark.parametrize("opset", [11, 13])
def test_squeeze_unsqueeze_are_free_in_both_forms(opset: int) -> None:
    """axes: attribute until 12, input from 13."""
    if opset < 13:
        body, inits = "U = Unsqueeze<axes=[0]>(X)\n S = Squeeze<axes=[0]>(U)", ""
    else:
        body, inits = "U = Unsqueeze(X, a)\n S = Squeeze(U, a)", "<int64[1] a = {0}>"
    report = cost(f"g (float[3,4] X) => (float[3,4] S) {inits} {{ {body} }}", opset)
    for op in ("Unsqueeze", "Squeeze"):
        node = only(report, op)
        assert node.status == "zero-cost"
        assert (node.read_bytes, node.write_bytes) == (0, 0)


REQUIRED_MOVEMENT = [
    "Gather",
    "GatherElements",
    "GatherND",
    "Scatter",
    "ScatterElements",
    "ScatterND",
    "OneHot",
    "NonZero",
    "Compress",
    "Unique",
    "Slice",
    "Split",
    "Concat",
    "Pad",
    "Tile",
    "Expand",
    "Transpose",
    "DepthToSpace",
    "SpaceToDepth",
    "Range",
    "Trilu",
    "ConstantOfShape",
    "EyeLike",
    "ReverseSequence",
    "GridSample",
    "Col2Im",
    "Reshape",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
    "Identity",
    "Dropout",
    "Shape",
    "Size",
    "Constant",
    "Optional",
    "OptionalGetElement",
    "OptionalHasElement",
]


@pytest.mark.parametrize("op", REQUIRED_MOVEMENT)
def test_every_required_op_has_a_rule(op: str) -> None:
    assert REGISTRY.lookup("", op, 21) is not None


def test_zero_cost_list_matches_registry() -> None:
    from estimator.cost.ops.base import zero_cost
    from estimator.cost.ops.zero_cost import ZERO_COST_OPS

    for op in ZERO_COST_OPS:
        assert REGISTRY.lookup("", op, 21) is zero_cost
    assert "Cast" not in ZERO_COST_OPS
    assert "Expand" not in ZERO_COST_OPS


@pytest.mark.parametrize("opset", [13, 17, 20])
def test_torch_exported_embedding_head(opset: int) -> None:
    """A real exporter's patterns: embedding + position table + activations + softmax + top-k.

    Every node must be costed (or free/folded), parameters must equal PyTorch's own count, and the
    embedding must read only the looked-up rows.
    """
    torch = pytest.importorskip("torch")
    import io

    class Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(500, 32)
            self.pos = torch.nn.Parameter(torch.randn(1, 12, 32))
            self.scale = torch.nn.Parameter(torch.randn(32))
            self.prelu = torch.nn.PReLU()

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            h = self.embed(ids) + self.pos
            h = torch.nn.functional.gelu(h, approximate="tanh") * self.scale
            h = torch.nn.functional.hardswish(self.prelu(h)).clamp(-3.0, 3.0)
            h = torch.softmax(h.transpose(1, 2), dim=-1).mean(dim=1)
            return torch.topk(h, 4, dim=-1)[0]

    torch.manual_seed(0)
    model = Head().eval()
    buffer = io.BytesIO()
    torch.onnx.export(model, (torch.randint(0, 500, (2, 12)),), buffer, opset_version=opset, dynamo=False)
    report = count_costs(load_graph(buffer.getvalue()))
    assert report.not_costed == {}
    assert report.totals.params == sum(p.numel() for p in model.parameters())
    gather = only(report, "Gather")
    assert gather.weight_bytes == 2 * 12 * 32 * 4
    assert gather.params == 500 * 32
    assert only(report, "Softmax").flops == 5 * 2 * 32 * 12
