"""Tensor parallelism across GPUs (Megatron-LM style): the interconnect and the all-reduce cost.

Each of ``N`` devices holds ``1/N`` of the attention heads, MLP columns and vocabulary
(:func:`estimator.zoo.decoders.tensor_parallel_shard`) and runs the same kernels on its shard. Per block,
the row-parallel attention output and MLP down projections each end in an all-reduce of the activations,
``batch * seq * hidden`` elements (Shoeybi et al. 2019, "Megatron-LM", section 3): 2 all-reduces per block.
A ring all-reduce of ``M`` bytes sends and receives ``2 (N - 1) / N * M`` bytes per device (Patarasuk and
Yuan 2009), so with a per-direction link bandwidth ``B`` it takes ``2 (N - 1) / N * M / B``.

**Energy of an all-reduce**, per device: static power for its duration (communication is not overlapped
with compute here, as in decode where each all-reduce waits on the matmul before it) plus the HBM traffic
of the transfer, counted at the profile's DRAM energy per byte for reading what is sent and writing what
is received. The energy of the links themselves has no cited figure and is not modelled (an under-count).

**Interconnect bandwidths** (NVLink, total of both directions per GPU, NVIDIA datasheets): A100 SXM4
600 GB/s (NVIDIA A100 Tensor Core GPU datasheet, 2020), H100 SXM5 900 GB/s and H200 SXM 900 GB/s (NVIDIA
H100 / H200 datasheets, 2023), V100 SXM2 300 GB/s (NVIDIA V100 datasheet, 2018). PCIe cards without an
NVLink bridge use PCIe: 4.0 x16 64 GB/s and 5.0 x16 128 GB/s both directions (PCI-SIG). The table lives
here because the profile schema has no interconnect key yet; the key is ``interconnect_bandwidth_bytes_per_s``.
"""

from __future__ import annotations

from dataclasses import dataclass

from estimator.energy.hardware import HardwareProfile
from estimator.errors import ProfileError

#: Interconnect bandwidth per GPU, both directions together, B/s, and its source (see the module docstring).
INTERCONNECT_BYTES_PER_S: dict[str, tuple[float, str]] = {
    "a100": (600e9, "NVLink 3, NVIDIA A100 datasheet"),
    "a100-40gb": (600e9, "NVLink 3, NVIDIA A100 datasheet"),
    "h100": (900e9, "NVLink 4, NVIDIA H100 datasheet"),
    "h200": (900e9, "NVLink 4, NVIDIA H200 datasheet"),
    "v100": (300e9, "NVLink 2, NVIDIA V100 datasheet"),
    "a100-pcie": (64e9, "PCIe 4.0 x16 (no NVLink bridge)"),
    "a100-pcie-80gb": (64e9, "PCIe 4.0 x16 (no NVLink bridge)"),
    "h100-pcie": (128e9, "PCIe 5.0 x16 (no NVLink bridge)"),
    "a10": (64e9, "PCIe 4.0 x16"),
    "l4": (64e9, "PCIe 4.0 x16"),
    "l40s": (64e9, "PCIe 4.0 x16"),
    "rtx3090": (64e9, "PCIe 4.0 x16"),
    "rtx4090": (64e9, "PCIe 4.0 x16"),
    "t4": (32e9, "PCIe 3.0 x16"),
}
#: All-reduces per transformer block under tensor parallelism (attention output, MLP down projection).
ALL_REDUCES_PER_BLOCK = 2


@dataclass(frozen=True)
class AllReduceCost:
    """Communication of one forward pass under tensor parallelism, per device.

    Attributes:
        seconds: time of all the all-reduces, s.
        joules: energy per device (static power for ``seconds`` + HBM traffic), J.
        bytes_per_device: bytes each device sends (and receives), B.
        bandwidth_bytes_per_s: per-direction link bandwidth used, B/s.
        source: where the bandwidth comes from.
    """

    seconds: float
    joules: float
    bytes_per_device: float
    bandwidth_bytes_per_s: float
    source: str


def interconnect(hw: HardwareProfile) -> tuple[float, str]:
    """(both-directions bandwidth per GPU in B/s, source) of ``hw``; ProfileError when none is known."""
    if hw.name not in INTERCONNECT_BYTES_PER_S:
        raise ProfileError(
            f"no interconnect bandwidth is known for profile '{hw.name}'; tensor parallelism is available on "
            f"{', '.join(sorted(INTERCONNECT_BYTES_PER_S))}"
        )
    return INTERCONNECT_BYTES_PER_S[hw.name]


def all_reduce_cost(
    hw: HardwareProfile,
    devices: int,
    *,
    layers: int,
    tokens: int,
    hidden: int,
    element_bytes: int,
    static_power_w: float,
) -> AllReduceCost:
    """All-reduce cost of one forward pass over ``tokens`` (= batch x new tokens) on ``devices`` GPUs."""
    if devices <= 1:
        return AllReduceCost(0.0, 0.0, 0.0, 0.0, "single device")
    both_ways, source = interconnect(hw)
    per_direction = both_ways / 2.0
    message = tokens * hidden * element_bytes
    sent = ALL_REDUCES_PER_BLOCK * layers * 2.0 * (devices - 1) / devices * message
    seconds = sent / per_direction
    joules = static_power_w * seconds + 2.0 * sent * hw.dram_energy_per_byte_j
    return AllReduceCost(seconds, joules, sent, per_direction, source)
