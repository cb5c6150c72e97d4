"""Per-block view of one decode step: energy and time of each transformer block of a decoder graph."""

from __future__ import annotations

import re
from dataclasses import dataclass

from estimator.cost.kernels import KernelReport
from estimator.llm.pricing import StepPrice


@dataclass(frozen=True)
class BlockEnergy:
    """One block (or the parts outside blocks) in one decode step: joules and seconds on one device."""

    block: str
    joules: float
    seconds: float
    kernels: int


_BLOCK = re.compile(r"(?:^|/)(?:layers|layer|h|blocks|block)[._](\d+)(?:/|\.|_|$)")


def _block_label(report: KernelReport, kernel_nodes: tuple[int, ...]) -> str:
    for i in kernel_nodes:
        m = _BLOCK.search(report.costs.nodes[i].name)
        if m:
            return f"block {int(m.group(1))}"
    return ""


def block_view(report: KernelReport, price: StepPrice) -> tuple[BlockEnergy, ...]:
    """Per-block view of one decode step on one device: joules, seconds and kernels of each block, and of
    the kernels outside blocks before (``embedding``) and after them (``head``).

    ``price`` is :meth:`~estimator.llm.pricing.StepPricer.price` of ``report``; for a 2-block stand-in its
    ``order`` repeats block 1, whose ``n``-th copy is block ``n``."""
    labels = [_block_label(report, k.nodes) for k in report.kernels]
    seen_count = [0] * len(report.kernels)
    groups: dict[str, list[float]] = {}
    seen_block = False
    for i, j in enumerate(price.order.tolist()):
        seen_count[j] += 1
        if not report.kernels[j].launches:
            continue
        label = labels[j]
        if label == "block 1":
            label = f"block {seen_count[j]}"
        if label:
            seen_block = True
        else:
            label = "head" if seen_block else "embedding"
        row = groups.setdefault(label, [0.0, 0.0, 0])
        row[0] += float(price.kernel_joules[i])
        row[1] += float(price.kernel_seconds[i])
        row[2] += 1
    return tuple(BlockEnergy(label, j, t, int(n)) for label, (j, t, n) in groups.items())
