"""Per-node costs of a graph: MACs, FLOPs, parameters, and the bytes each node reads and writes.

``count_costs(graph)`` applies the registered cost rule of every node (see ``estimator.cost.ops.base`` for the
counting convention: 1 multiply-add = 1 MAC = 2 FLOPs). It is hardware-free: one report serves every profile.

Every node ends in exactly one status:

* ``costed``: a rule counted it;
* ``zero-cost``: a view or metadata op on the explicit zero-cost list (moves no bytes, launches nothing);
* ``folded``: all its inputs are constants, so a runtime folds it at load time;
* ``unsupported``: no rule exists for its (domain, op type) - reported by type and count, never taken as zero;
* ``shape-unknown``: a rule exists but a shape it needs could not be determined;
* ``rule-error``: the rule failed on this node (a bug or a malformed node), reported with its message.

Parameters are counted once, at the first node that reads them, where they live: a weight seen through
``Identity``/``Cast``/``DequantizeLinear``/reshapes is counted at its stored constant (its *root*), in the
root's dtype; a weight shared by two nodes (tied embeddings) is counted once.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import estimator.cost.ops  # noqa: F401  (registers every rule module)
from estimator.cost.memo import NODE_COST_MEMO, CostTemplate, NodeCostMemo, cost_template, signature
from estimator.cost.ops.base import REGISTRY, NodeContext, SubgraphCost
from estimator.cost.report import (  # noqa: F401  (the records, read from here too)
    COST_FIELDS,
    KNOWN_STATUSES,
    CostReport,
    NodeCost,
    TensorRead,
    Totals,
    int_columns,
)
from estimator.errors import EstimatorError, ShapeError, UnsupportedOpError
from estimator.graph.load import Graph, Node, TensorInfo
from estimator.graph.structure import frozen_record


def count_costs(graph: Graph, *, strict: bool = False) -> CostReport:
    """Cost every node of ``graph``.

    Args:
        graph: a graph from :func:`estimator.graph.load.load_graph`.
        strict: raise :class:`UnsupportedOpError` when any node has no rule or could not be costed.

    Returns:
        A :class:`CostReport`; nodes without a rule are reported in ``unsupported``, never counted as zero.
    """
    counted_roots: set[str] = set()
    memo = NODE_COST_MEMO if NODE_COST_MEMO.enabled else None
    get = graph.tensors.get
    # Without a tensor named "" (the name of an omitted input), looking every name up gives None for the omitted
    # ones: the names are mapped in one C-level call, not a comprehension per node.
    by_map = "" not in graph.tensors
    rules: dict[tuple[str, str], tuple] = {}  # (domain, op type) -> (rule, opset), looked up once per graph
    costs = []
    append = costs.append
    folded = _FOLDED
    for node in graph.nodes:
        if node.constant_folded:
            # A folded node costs nothing and holds only its names and output shapes: built here, without a call.
            outs = node.outputs
            if len(outs) == 1 and outs[0]:
                info = get(outs[0])
                shapes = (None if info is None else info.shape,)
            else:
                shapes = tuple([_shape_of(get(o)) if o else None for o in outs])
            record = folded.copy()  # one C-level copy, then the node's fields set in place
            record["index"] = node.index
            record["name"] = node.name
            record["op_type"] = node.op_type
            record["domain"] = node.domain
            record["output_shapes"] = shapes
            append(frozen_record(NodeCost, record))
        else:
            append(_cost_node(graph, node, counted_roots, memo, rules, by_map))
    nodes = tuple(costs)
    # Only nodes with flags or an unknown status add to the counts below (in node order, as before).
    special = [n for n in nodes if n.flags or n.status not in KNOWN_STATUSES]
    unsupported = Counter(n.qualified_op for n in special if n.status == "unsupported")
    not_costed = Counter(n.qualified_op for n in special if n.status not in KNOWN_STATUSES)
    for n in special:
        if n.status == "costed":
            for name in n.flags:
                if name.startswith("unsupported-inside:"):
                    # An op without a rule inside a subgraph leaves its outer node's figure a lower bound.
                    unsupported[name.split(":", 1)[1]] += 1
                    not_costed[name.split(":", 1)[1]] += 1
    flags = Counter(f for n in special for f in n.flags)
    report = CostReport(graph, nodes, dict(unsupported), dict(not_costed), dict(flags))
    if strict and (report.not_costed or report.unsupported):
        first = next((n for n in nodes if n.status not in KNOWN_STATUSES), None)
        detail = f" (first: node '{first.name}': {first.message})" if first is not None else ""
        counts = ", ".join(
            f"{op} x{c}" for op, c in sorted({**report.unsupported, **report.not_costed}.items())
        )
        raise UnsupportedOpError(
            f"{counts} could not be costed{detail}; drop --strict to get a partial report, or add a cost rule"
        )
    return report


#: NodeCost's fields that have defaults, with them: the start of every record built by frozen_record.
_NODE_COST_DEFAULTS = {
    f.name: f.default for f in dataclasses.fields(NodeCost) if f.default is not dataclasses.MISSING
}


#: The fields of a folded node's NodeCost that do not depend on the node.
_FOLDED = {**_NODE_COST_DEFAULTS, "status": "folded", **dict.fromkeys(("index", "name", "op_type", "domain"))}


def _shape_of(info: TensorInfo | None) -> tuple[int, ...] | None:
    return info.shape if info is not None else None


def _cost_node(
    graph: Graph,
    node: Node,
    counted_roots: set[str],
    memo: NodeCostMemo | None,
    rules: dict[tuple[str, str], tuple],
    by_map: bool = False,
) -> NodeCost:
    """A node that is not folded (count_costs builds those); ``rules``: this graph's rule look-ups so far;
    ``by_map``: the graph has no tensor named "", so every name (omitted ones too) may be looked up."""
    get = graph.tensors.get  # Graph.tensor without a call per name
    outputs = (
        tuple(map(get, node.outputs)) if by_map else tuple([get(o) if o else None for o in node.outputs])
    )
    domain, op_type = node.domain, node.op_type
    found = rules.get((domain, op_type))
    if found is None:
        opset = graph.opset(domain)
        found = rules[domain, op_type] = (REGISTRY.lookup(domain, op_type, opset), opset)
    rule, opset = found
    base = {"index": node.index, "name": node.name, "op_type": op_type, "domain": domain}
    if rule is None:
        return NodeCost(
            **base,
            status="unsupported",
            output_shapes=_shapes(outputs),
            message=f"no cost rule for {node.domain}::{node.op_type}",
        )
    inputs = tuple(map(get, node.inputs)) if by_map else tuple([get(i) if i else None for i in node.inputs])
    key = None if memo is None else signature(rule, node, opset, graph, inputs, outputs)
    if key is not None:
        template = memo.get(key, graph, node, inputs)
        if template is not None:
            return _node_cost(template, graph, node, outputs, counted_roots)
    ctx = NodeContext(
        node=node,
        inputs=inputs,
        outputs=outputs,
        opset=opset,
        graph=graph,
        cost_subgraph=lambda sub: _cost_subgraph(sub),
        read_constants=[] if key is not None else None,
    )
    shapes = _shapes(outputs)
    try:
        cost = rule(ctx)
    except ShapeError as exc:
        return NodeCost(**base, status="shape-unknown", output_shapes=shapes, message=str(exc))
    except EstimatorError as exc:
        return NodeCost(**base, status="rule-error", output_shapes=shapes, message=str(exc))
    except (ValueError, TypeError, KeyError, IndexError, ZeroDivisionError, AttributeError) as exc:
        return NodeCost(
            **base, status="rule-error", output_shapes=shapes, message=f"{type(exc).__name__}: {exc}"
        )
    template = cost_template(graph, node, ctx, cost, shapes)
    if isinstance(template, str):  # an input of unknown shape: the message names it
        return NodeCost(**base, status="shape-unknown", output_shapes=shapes, message=template)
    if key is not None:
        memo.put(key, template, graph, node, inputs, ctx.read_constants)
    return _node_cost(template, graph, node, outputs, counted_roots)


def _shapes(outputs: tuple[TensorInfo | None, ...]) -> tuple[tuple[int, ...] | None, ...]:
    return tuple(t.shape if t is not None else None for t in outputs)


def _node_cost(
    t: CostTemplate,
    graph: Graph,
    node: Node,
    outputs: tuple[TensorInfo | None, ...],
    counted_roots: set[str],
) -> NodeCost:
    """The NodeCost of ``node`` from its template: names filled in, parameters counted at the first reader."""
    # The template's fields, in NodeCost's order, copied (one C-level copy: merging dicts costs several times
    # more); the node's names and parameters are set below.
    record = (t.__dict__.get("node_cost_fields") or _template_fields(t)).copy()
    record["index"] = node.index
    record["name"] = node.name
    record["op_type"] = node.op_type
    record["domain"] = node.domain
    if t.status == "zero-cost":
        return frozen_record(NodeCost, record)
    if t.param_candidates:
        params = param_bytes = 0
        # Roots are marked counted only once the whole node is costed: a later input of unknown shape must not
        # leave a weight counted nowhere (its other readers would skip it).
        newly_counted: set[str] = set()
        for i, elements, nbytes in t.param_candidates:
            root = graph.constant_roots[node.inputs[i]]
            if root not in counted_roots and root not in newly_counted:
                newly_counted.add(root)
                if elements is not None:
                    params += elements
                    param_bytes += nbytes
        counted_roots |= newly_counted
        record["params"] = int(params)
        record["param_bytes"] = int(param_bytes)
    names = node.inputs
    reads = []
    for i, nbytes, weight in t.reads:  # TensorRead records built as frozen_record builds them, without a call
        read = _new(TensorRead)
        _set(read, "__dict__", {"tensor": names[i], "nbytes": nbytes, "weight": weight})
        reads.append(read)
    record["reads"] = tuple(reads)
    record["writes"] = tuple([(outputs[k].name, nbytes) for k, nbytes in t.writes])
    return frozen_record(NodeCost, record)


_new = object.__new__
_set = object.__setattr__


def _template_fields(t: CostTemplate) -> dict:
    """The fields of every NodeCost built from ``t`` that do not depend on the node (parameters, reads and writes
    as placeholders), in NodeCost's order; kept in the template's ``__dict__`` (a memo hit reuses them)."""
    if t.status == "zero-cost":
        fields = {
            **_NODE_COST_DEFAULTS,
            **dict.fromkeys(("index", "name", "op_type", "domain")),
            "status": "zero-cost",
            "dtype": t.dtype,
            "output_shapes": t.output_shapes,
            "flags": t.flags,
        }
    else:
        fields = {
            **dict.fromkeys(("index", "name", "op_type", "domain")),
            "status": "costed",
            "macs": t.macs,
            "flops": t.flops,
            "params": 0,
            "param_bytes": 0,
            "weight_bytes": t.weight_bytes,
            "activation_read_bytes": t.activation_read_bytes,
            "write_bytes": t.write_bytes,
            "dtype": t.dtype,
            "output_shapes": t.output_shapes,
            "reads": (),
            "writes": (),
            "flags": t.flags,
            "message": "",
        }
    # A frozen dataclass: written to its __dict__ past the generated __setattr__, as computed_once does.
    t.__dict__["node_cost_fields"] = fields
    return fields


def _cost_subgraph(sub: Graph) -> SubgraphCost:
    report = count_costs(sub)
    t = report.totals
    return SubgraphCost(
        macs=t.macs,
        flops=t.flops,
        read_bytes=t.read_bytes,
        write_bytes=t.write_bytes,
        unsupported=dict(report.not_costed),
    )
