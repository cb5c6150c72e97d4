"""Per-block view of one decode step: energy and time of each transformer block of a decoder graph."""

from __future__ import annotations

import re
from dataclasses import dataclass

from estimator.api import Estimate
from estimator.cost.kernels import KernelReport


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


def block_view(report: KernelReport, est: Estimate) -> tuple[BlockEnergy, ...]:
    """Per-block view of one decode step on one device: joules, seconds and kernels of each block, and of
    the kernels outside blocks before (``embedding``) and after them (``head``). Repeated blocks of a zoo
    decoder are one row each."""
    by_kernel = {layer.kernel: layer for layer in est.layers}
    groups: dict[str, list] = {}
    order: list[str] = []
    seen_block = False
    for k in report.kernels:
        if k.index not in by_kernel:
            continue
        label = _block_label(report, k.nodes)
        if label:
            seen_block = True
        else:
            label = "head" if seen_block else "embedding"
        if label not in groups:
            groups[label] = []
            order.append(label)
        groups[label].append(k)
    out: list[BlockEnergy] = []
    for label in order:
        kernels = groups[label]
        copies = max(1, len(kernels) // max(1, len({k.nodes for k in kernels})))
        per = [(by_kernel[k.index].joules, by_kernel[k.index].seconds) for k in kernels]
        joules = sum(j for j, _ in per) / copies
        seconds = sum(t for _, t in per) / copies
        n_kernels = len(kernels) // copies
        if copies > 1 and label.startswith("block "):
            first = int(label.split()[1])
            out += [BlockEnergy(f"block {first + c}", joules, seconds, n_kernels) for c in range(copies)]
        else:
            out.append(BlockEnergy(label, joules, seconds, n_kernels))
    return tuple(out)
