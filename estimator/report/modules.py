"""Layers grouped the way people read models: by the module path exporters keep in node names.

PyTorch's exporter names a node after the scopes of the modules that produced it and the op:
``/layer1/layer1.0/conv1/Conv`` is the ``Conv`` of module ``layer1.0.conv1`` inside ``layer1.0`` inside
``layer1``. Cutting that path at a depth (like torchinfo's ``depth``) groups nodes into modules:

* depth 1: ``layer1``; depth 2: ``layer1.0``; depth 3: ``layer1.0.conv1``.

The exporter writes each scope as its parent's attribute name plus its own (``layer1.0`` under ``layer1``,
``downsample.0`` under ``downsample``), so such a scope adds only its last part; any other scope (``conv1`` under
``layer1.0``) is appended with a dot: ``/layer1/layer1.0/downsample/downsample.0/Conv`` is in
``layer1.0.downsample.0``. Nodes whose names carry no path (``Conv_12``,
``node_Gemm_1334``, empty names) fall in :data:`TOP_LEVEL`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

#: Group of nodes whose names carry no module path.
TOP_LEVEL = "(top level)"


def module_parts(node_name: str) -> tuple[str, ...]:
    """The module scopes of an exporter node name, outermost first (the op part at the end removed)."""
    if "/" not in node_name:
        return ()
    parts = [p for p in node_name.split("/") if p]
    return tuple(parts[:-1])


def module_name(parts: Sequence[str], depth: int) -> str:
    """The dotted module name of ``parts`` cut at ``depth`` scopes (:data:`TOP_LEVEL` when empty)."""
    name, previous = "", ""
    for scope in parts[: max(depth, 0)]:
        if previous and scope.startswith(
            previous + "."
        ):  # `layer1.0` under `layer1`: the parent's name + `.0`
            name += scope[len(previous) :]
        else:
            name = f"{name}.{scope}" if name else scope
        previous = scope
    return name or TOP_LEVEL


def module_of(node_names: Iterable[str], depth: int) -> str:
    """The module that holds all of ``node_names`` (their common scopes), cut at ``depth``.

    A fused kernel of ``/layer1/layer1.0/conv1/Conv`` and ``/layer1/layer1.0/relu/Relu`` is in ``layer1.0``
    at any depth of 2 or more.
    """
    common: list[str] | None = None
    for name in node_names:
        parts = list(module_parts(name))
        if common is None:
            common = parts
        else:
            n = 0
            while n < min(len(common), len(parts)) and common[n] == parts[n]:
                n += 1
            common = common[:n]
    return module_name(common or (), depth)


def group_rows(rows: Sequence[dict], key: Callable[[dict], str], numeric: Sequence[str]) -> list[dict]:
    """Sum ``numeric`` fields of ``rows`` by ``key(row)``, in first-seen order; adds ``count`` and ``module``."""
    groups: dict[str, dict] = {}
    for row in rows:
        k = key(row)
        g = groups.setdefault(k, {"module": k, "count": 0, **dict.fromkeys(numeric, 0)})
        g["count"] += 1
        for f in numeric:
            g[f] += row[f]
    return list(groups.values())


def kernel_place(node_names: Sequence[str]) -> str:
    """Where a kernel sits, for its label: the full module of its first node that carries a path (a fused
    ``conv1`` + ``relu`` kernel is at ``layer4.1.conv1``), or :data:`TOP_LEVEL`."""
    for name in node_names:
        parts = module_parts(name)
        if parts:
            return module_name(parts, len(parts))
    return TOP_LEVEL
