"""Tensor parallelism across GPUs (Megatron-LM style): the interconnect and the all-reduce cost.

Each of ``N`` devices holds ``1/N`` of the attention heads, MLP columns and vocabulary
(:func:`estimator.zoo.decoders.tensor_parallel_shard`) and runs the same kernels on its shard. Per block,
the row-parallel attention output and MLP down projections each end in an all-reduce of the activations,
``batch * seq * hidden`` elements (Shoeybi et al. 2019, "Megatron-LM", section 3): 2 all-reduces per block.
A ring all-reduce of ``M`` bytes sends and receives ``2 (N - 1) / N * M`` bytes per device (Patarasuk and
Yuan 2009), so with a per-direction link bandwidth ``B`` it takes ``2 (N - 1) / N * M / B`` plus a fixed
latency per all-reduce (below).

**Latency of an all-reduce.** Decode all-reduces are small (``batch x hidden`` activations: 0.5 MB for 32
sequences of a 70B model in bf16), so each costs more in fixed latency than in bytes. The figure is NCCL's
own performance model (NVIDIA NCCL v2.21.5, ``src/graph/tuning.cc``, lines 54-71: the tables ``baseLat``
and ``hwLat`` from which NCCL chooses its algorithm and protocol): its ring all-reduce with the
low-latency (LL) protocol, the one it picks for small messages, costs a base 6.6 us plus 0.6 us per ring
step over NVLink (1.0 us over PCIe), and a ring all-reduce takes ``2 (N - 1)`` steps: 7.8 us on 2 GPUs,
10.2 us on 4 and 15.0 us on 8 over NVLink. Measured figures agree in size: vLLM's own benchmark of its
all-reduce back-ends on H100 (vLLM pull request 24111, 2025, bf16 ``[32, 8192]`` = 0.5 MB) took 23 us
with NCCL and 13 us with vLLM's custom all-reduce at 6 GPUs; SGLang pull request 2904 (2025, H100) measured
vLLM's custom all-reduce of 512 B at 9.5 / 9.1 / 10.1 us on 2 / 4 / 8 GPUs. The LL protocol's lower
bandwidth (half of each 8-byte line is a flag) and the choice between protocols by size are not modelled:
the bandwidth term stays at the link's.

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
#: NCCL's modelled latency of a ring all-reduce with the LL protocol (NCCL v2.21.5 ``src/graph/tuning.cc``,
#: ``baseLat`` and ``hwLat``; module docstring): a base, s, and a latency per ring step by link kind, s.
RING_LL_BASE_S = 6.6e-6
RING_LL_STEP_S = {"nvlink": 0.6e-6, "pcie": 1.0e-6}


@dataclass(frozen=True)
class AllReduceCost:
    """Communication of one forward pass under tensor parallelism, per device.

    Attributes:
        seconds: time of all the all-reduces (latency + bytes over the link), s.
        joules: energy per device (static power for ``seconds`` + HBM traffic), J.
        bytes_per_device: bytes each device sends (and receives), B.
        bandwidth_bytes_per_s: per-direction link bandwidth used, B/s.
        source: where the bandwidth comes from.
        count: all-reduces in the pass (``2 x layers``).
        latency_s: the fixed latency of each all-reduce (:func:`all_reduce_latency`), s.
    """

    seconds: float
    joules: float
    bytes_per_device: float
    bandwidth_bytes_per_s: float
    source: str
    count: int = 0
    latency_s: float = 0.0


def interconnect(hw: HardwareProfile) -> tuple[float, str]:
    """(both-directions bandwidth per GPU in B/s, source) of ``hw``; ProfileError when none is known."""
    if hw.name not in INTERCONNECT_BYTES_PER_S:
        raise ProfileError(
            f"no interconnect bandwidth is known for profile '{hw.name}'; tensor parallelism is available on "
            f"{', '.join(sorted(INTERCONNECT_BYTES_PER_S))}"
        )
    return INTERCONNECT_BYTES_PER_S[hw.name]


def all_reduce_latency(hw: HardwareProfile, devices: int) -> float:
    """Fixed latency of one all-reduce over ``devices`` GPUs of ``hw``, s: NCCL's ring LL model (module
    docstring), ``6.6 us + 2 (devices - 1) x`` 0.6 us (NVLink) or 1.0 us (PCIe)."""
    if devices <= 1:
        return 0.0
    kind = "nvlink" if interconnect(hw)[1].startswith("NVLink") else "pcie"
    return RING_LL_BASE_S + 2 * (devices - 1) * RING_LL_STEP_S[kind]


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
    """All-reduce cost of one forward pass over ``tokens`` (= batch x new tokens) on ``devices`` GPUs: ``2 x
    layers`` all-reduces, each its latency plus its ring traffic over the link (module docstring)."""
    if devices <= 1:
        return AllReduceCost(0.0, 0.0, 0.0, 0.0, "single device")
    both_ways, source = interconnect(hw)
    per_direction = both_ways / 2.0
    message = tokens * hidden * element_bytes
    count = ALL_REDUCES_PER_BLOCK * layers
    sent = count * 2.0 * (devices - 1) / devices * message
    latency = all_reduce_latency(hw, devices)
    seconds = count * latency + sent / per_direction
    joules = static_power_w * seconds + 2.0 * sent * hw.dram_energy_per_byte_j
    return AllReduceCost(seconds, joules, sent, per_direction, source, count, latency)
