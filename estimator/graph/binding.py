"""Binding an input's symbolic dimensions to integers from ``batch`` and ``shapes``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import onnx

from estimator.errors import InvalidDimensionError, UnboundDimensionError
from estimator.graph.structure import MAX_TENSOR_ELEMENTS


def _dims_of(vi: onnx.ValueInfoProto) -> list[int | str | None] | None:
    """Declared dims of a value info: ints, dim_param names, or None for an anonymous unknown dim."""
    return _dims_of_type(vi.type)


def _dims_of_type(t: onnx.TypeProto) -> list[int | str | None] | None:
    """Declared dims of a type: ints, dim_param names, or None for an anonymous unknown dim."""
    if not t.HasField("tensor_type"):
        return None
    tt = t.tensor_type
    if not tt.HasField("shape"):
        return None
    out: list[int | str | None] = []
    for d in tt.shape.dim:
        which = d.WhichOneof("value")  # one call instead of two HasField
        if which == "dim_value":
            out.append(int(d.dim_value))
        elif which == "dim_param" and d.dim_param:
            out.append(d.dim_param)
        else:
            out.append(None)
    return out


#: Key of the bindings holding ``(exported batch, new batch)`` when a fixed leading dimension is re-bound.
REBATCH_KEY = "\0rebatch"


def _bind_dimensions(
    inputs: Sequence[onnx.ValueInfoProto], batch: int | None, shapes: dict[str, Sequence[int]]
) -> dict[str, tuple[int, ...]]:
    """Concrete shape of every real input, from declared dims, ``shapes`` and ``batch``; errors name the dim."""
    input_names = {vi.name for vi in inputs}
    symbols: dict[str, int] = {}
    for key, dims in shapes.items():
        dims = tuple(int(d) for d in dims)
        if key not in input_names:
            declared = {d for vi in inputs for d in (_dims_of(vi) or []) if isinstance(d, str)}
            if key in declared and len(dims) == 1:
                symbols[key] = dims[0]
                continue
            known = ", ".join(sorted(input_names)) or "none"
            raise UnboundDimensionError(
                f"--shape names '{key}', which is neither an input of the model nor one of its symbolic "
                f"dimensions; inputs are: {known}"
            )
    if batch is not None and batch < 1:
        raise InvalidDimensionError(f"batch must be a positive integer, got {batch}")

    bound: dict[str, tuple[int, ...]] = {}
    rebatched: dict[str, int] = {}  # input -> the fixed batch it was exported with
    # A fixed leading dimension is re-bound only in a model exported with a fixed batch everywhere; where some
    # input's leading dimension is symbolic, --batch binds those and fixed ones (e.g. weights given as inputs)
    # keep their size.
    symbolic_batch = any(
        (dims := _dims_of(vi)) and not isinstance(dims[0], int) for vi in inputs if vi.name not in shapes
    )
    for vi in inputs:
        declared = _dims_of(vi)
        if vi.name in shapes:
            dims = tuple(int(d) for d in shapes[vi.name])
            if declared is not None and len(declared) != len(dims):
                raise InvalidDimensionError(
                    f"--shape {vi.name} has {len(dims)} dimensions but the model declares {len(declared)} "
                    f"({_fmt_dims(declared)}); give all {len(declared)}"
                )
            if declared is not None:
                for axis, (d, v) in enumerate(zip(declared, dims, strict=True)):
                    if isinstance(d, str):
                        symbols.setdefault(d, v)
                    elif isinstance(d, int) and d != v:
                        if axis != 0:
                            raise InvalidDimensionError(
                                f"input '{vi.name}' was exported with the fixed shape {_fmt_dims(declared)}: "
                                f"--shape can change only its leading (batch) dimension, not dimension {axis}; "
                                f"re-export the model with dynamic axes"
                            )
                        rebatched[vi.name] = d
            bound[vi.name] = dims
            continue
        if declared is None:
            raise UnboundDimensionError(
                f"input '{vi.name}' has no declared shape; give it with --shape {vi.name}=DIMS (e.g. 1x3x224x224)"
            )
        if batch is not None and declared and not isinstance(declared[0], int):
            if isinstance(declared[0], str):
                symbols.setdefault(declared[0], batch)
            declared = [batch, *declared[1:]]
        elif batch is not None and declared and declared[0] != batch and not symbolic_batch:
            rebatched[vi.name] = declared[0]  # exported with a fixed batch: re-bound (see rebatch_model)
            declared = [batch, *declared[1:]]
        dims_out = []
        for axis, d in enumerate(declared):
            if isinstance(d, int):
                dims_out.append(d)
            elif isinstance(d, str) and d in symbols:
                dims_out.append(symbols[d])
            else:
                what = f"'{d}'" if d else "unnamed"
                hint = f" (or --shape {d}=N)" if d else ""
                batch_hint = " or --batch N" if axis == 0 else ""
                raise UnboundDimensionError(
                    f"input '{vi.name}' dimension {axis} ({what}) of shape {_fmt_dims(declared)} is symbolic; "
                    f"bind it with --shape {vi.name}=DIMS{hint}{batch_hint}"
                )
        bound[vi.name] = tuple(dims_out)
    for name, dims in bound.items():
        if any(d <= 0 for d in dims):
            raise InvalidDimensionError(
                f"input '{name}' would have shape {_fmt_dims(dims)}: every dimension must be a positive integer"
            )
        if math.prod(dims) > MAX_TENSOR_ELEMENTS:
            raise InvalidDimensionError(
                f"input '{name}' would have shape {_fmt_dims(dims)} ({math.prod(dims):.3g} elements), which is "
                f"absurdly large; check --batch / --shape"
            )
    bound.update({f"\0sym:{k}": (v,) for k, v in symbols.items()})
    if rebatched:
        old_batches = set(rebatched.values())
        new_batches = {bound[name][0] for name in rebatched}
        if len(old_batches) != 1 or len(new_batches) != 1:
            raise InvalidDimensionError(
                f"inputs {', '.join(sorted(rebatched))} were exported with fixed leading dimensions and would be "
                f"re-bound inconsistently; give one batch for all of them (--batch N)"
            )
        bound[REBATCH_KEY] = (old_batches.pop(), new_batches.pop())
    return bound


def _fmt_dims(dims: Sequence[int | str | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
