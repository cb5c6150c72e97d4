"""Where an estimate's energy goes: one row per launched kernel, plus the host's per-call wait when it has one.

The rows are the per-layer view of :class:`estimator.api.Estimate` (``Estimate.layers``): the prior's joules
per kernel, scaled by whatever correction answered, so that the rows add up to the answer. They are built the
first time they are read (:class:`LayerRows`): an estimate in a search loop that reads only the joules never
pays for one Python object per kernel.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import overload

import numpy as np

from estimator.cost.kernels import KernelReport
from estimator.energy.physics import PriorResult

#: Name of the per-layer row that is no kernel: the device waiting through the host's per-call time.
HOST_CALL_ROW = "host call (device waits)"


@dataclass(frozen=True)
class LayerEnergy:
    """Energy of one kernel: its name (fused op types), node names, joules (J), seconds (s), what bounds it and
    the memory level its working set is served from.

    One row may be no kernel (``kernel == -1``, named :data:`HOST_CALL_ROW`, level ``-``): the per-call host
    time before the first dispatch, while the device waits at idle-with-context power.
    """

    kernel: int
    name: str
    nodes: tuple[str, ...]
    joules: float
    seconds: float
    bound: str
    level: str


class LayerRows(Sequence[LayerEnergy]):
    """The rows of :func:`layer_view` (a read-only sequence of :class:`LayerEnergy`, largest energy first),
    built on first access from what the estimate already holds; equal to any sequence of the same rows, and
    pickled as its rows."""

    __slots__ = ("_inputs", "_rows")

    def __init__(self, kernels: KernelReport, prior: PriorResult, kernel_joules: np.ndarray) -> None:
        self._inputs: tuple | None = (kernels, prior, kernel_joules)
        self._rows: tuple[LayerEnergy, ...] | None = None

    @classmethod
    def of(cls, rows: Sequence[LayerEnergy]) -> LayerRows:
        """Rows already built (unpickling)."""
        out = cls.__new__(cls)
        out._inputs, out._rows = None, tuple(rows)
        return out

    @property
    def rows(self) -> tuple[LayerEnergy, ...]:
        """The rows as a tuple (built now if not yet)."""
        if self._rows is None:
            self._rows = layer_view(*self._inputs)
            self._inputs = None
        return self._rows

    @overload
    def __getitem__(self, index: int) -> LayerEnergy: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[LayerEnergy, ...]: ...
    def __getitem__(self, index):
        return self.rows[index]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[LayerEnergy]:
        return iter(self.rows)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LayerRows):
            return self.rows == other.rows
        if isinstance(other, tuple | list):
            return self.rows == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  (equal to tuples, which hash differently)

    def __repr__(self) -> str:
        return repr(self.rows)

    def __reduce__(self):
        return (LayerRows.of, (self.rows,))


def layer_view(
    kernels: KernelReport, prior: PriorResult, kernel_joules: np.ndarray
) -> tuple[LayerEnergy, ...]:
    """Rows of :class:`LayerEnergy`, largest energy first, from the prior's per-kernel times and the answer's
    per-kernel joules ``kernel_joules`` (J, the prior's scaled by the correction); they add up to the answer."""
    nodes = kernels.costs.nodes
    names = kernels.derived(  # per kernel, its nodes that compute: the same for every profile
        "layer_node_names",
        lambda: [
            tuple(nodes[i].name for i in k.nodes if nodes[i].status != "zero-cost") for k in kernels.kernels
        ],
    )
    joules, seconds = kernel_joules.tolist(), prior.kernel_seconds.tolist()
    level = prior.placement.kernel_level
    out = [
        LayerEnergy(
            kernel=k.index,
            name=k.name,
            nodes=names[k.index],
            joules=float(joules[k.index]),
            seconds=float(seconds[k.index]),
            bound=str(prior.kernel_bound[k.index]),
            level=prior.level_names[int(level[k.index])],
        )
        for k in kernels.kernels
        if k.launches
    ]
    if prior.call_joules > 0 and out:
        # The prior counts the per-call wait in the first kernel's slot; it is shown as its own row, scaled by
        # the same correction as that kernel.
        first = out[0]
        share = prior.call_joules / prior.kernel_joules[first.kernel] * first.joules
        out[0] = replace(first, joules=first.joules - share, seconds=first.seconds - prior.call_seconds)
        out.append(LayerEnergy(-1, HOST_CALL_ROW, (), share, prior.call_seconds, bound="launch", level="-"))
    return tuple(sorted(out, key=lambda layer: -layer.joules))
