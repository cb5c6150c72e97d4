"""Tests of the hardware profile library and its loader.

Expected figures are published ones (datasheets, Intel ARK, AMD's specification tables, measured reviews),
typed in here from the source each profile reference names, so the test needs no file outside the repository.
"""

from __future__ import annotations

import math
import re
from importlib import resources
from pathlib import Path

import pytest

from estimator.energy.hardware import (
    BOUNDARIES,
    CONFIDENCES,
    DTYPE_CLASSES,
    HardwareProfile,
    compute_dtype_class,
    list_profiles,
    load_profile,
)
from estimator.errors import EstimatorError, ProfileError

MIB = 2**20
EXPECTED_PROFILES = {
    "a100", "a100-40gb", "a100-pcie", "a100-pcie-80gb", "h100", "h100-pcie", "h200", "b200", "v100", "t4", "l4",
    "a10", "l40s", "rtx3090", "rtx4090", "quadro-rtx5000", "gtx1070", "gtx1080ti", "jetson-orin", "jetson-tx2", "jetson-nano", "rpi4", "rpi5",
    "xeon-gold-5120", "xeon-8380", "xeon-8480", "epyc-7763", "epyc-9654",
}  # fmt: skip


def shipped_text(name: str) -> str:
    return (resources.files("estimator.energy") / "profiles" / f"{name}.toml").read_text(encoding="utf-8")


def test_list_profiles_names_every_shipped_file():
    assert set(list_profiles()) == EXPECTED_PROFILES
    assert list_profiles() == sorted(list_profiles())


@pytest.mark.parametrize("name", sorted(EXPECTED_PROFILES))
def test_shipped_profile_loads_and_is_physically_sane(name: str):
    profile = load_profile(name)
    assert isinstance(profile, HardwareProfile)
    assert profile.name == name
    assert profile.measurement_boundary in BOUNDARIES
    for citation in profile.citations:
        assert math.isfinite(citation.value) and citation.value > 0, citation.key
        assert citation.confidence in CONFIDENCES
        assert citation.reference.strip(), citation.key
    # Caches from the core outwards: each level larger per instance and dearer per byte, DRAM dearest.
    sizes = [level.size_bytes for level in profile.caches]
    energies = [level.energy_per_byte_j for level in profile.caches] + [profile.dram_energy_per_byte_j]
    assert profile.caches[0].level == "L1"
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert energies == sorted(energies) and len(set(energies)) == len(energies)
    # Per-byte energies in physical ranges: SRAM 0.5-20 pJ/B, DRAM 20-300 pJ/B.
    assert all(0.5e-12 <= e <= 20e-12 for e in energies[:-1])
    assert 20e-12 <= profile.dram_energy_per_byte_j <= 300e-12
    # Ridge point of FP32 on the vector units between 1 and 200 FLOP/B; the best dtype's below 1000.
    assert 1 <= profile.ridge_point_flop_per_byte("float32", matrix=False) <= 200
    best = max(profile.ridge_point_flop_per_byte(dtype_class) for dtype_class in DTYPE_CLASSES)
    assert best <= 1000
    assert profile.idle_w <= profile.idle_with_context_w <= profile.tdp_w
    assert profile.idle_w <= profile.static_w < profile.tdp_w
    assert 0 < profile.achievable_compute_fraction <= 1
    assert 0 < profile.achievable_bandwidth_fraction <= 1
    assert 1e-7 <= profile.launch_overhead_s <= 1e-4


def _snapshot_readings_w(note: str) -> list[float] | None:
    """The board powers, W, a value's note lists as ``readings: a, b, c W`` (None when it lists none)."""
    found = re.search(r"readings: ([0-9., ]+) W", note)
    return None if found is None else [float(x) for x in found.group(1).split(",")]


#: GPU profiles whose idle-with-context power is the median of listed nvidia-smi snapshots (docs/hardware.md).
SNAPSHOT_CONTEXT_PROFILES = ("a100", "a100-40gb", "a100-pcie", "h100", "b200", "v100")
#: GPU profiles whose bare idle power is the median of listed nvidia-smi snapshots.
SNAPSHOT_IDLE_PROFILES = ("a100-pcie-80gb",)


@pytest.mark.parametrize("key", ["idle_with_context_w", "idle_w"])
@pytest.mark.parametrize("name", sorted(EXPECTED_PROFILES))
def test_idle_power_is_the_median_of_the_snapshots_it_lists(name: str, key: str):
    """Where a note lists snapshot readings, the value is their median (rounded to 1 W), quoted from snapshots;
    the profiles re-derived this way list theirs."""
    citation = next(c for c in load_profile(name).citations if c.key == f"power.{key}")
    readings = _snapshot_readings_w(citation.note)
    listed = SNAPSHOT_CONTEXT_PROFILES if key == "idle_with_context_w" else SNAPSHOT_IDLE_PROFILES
    if name in listed:
        assert readings is not None and len(readings) >= 2
    if readings is None:
        return
    ordered = sorted(readings)
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    assert citation.value == round(median)
    assert (citation.source_id, citation.confidence) == ("power-snapshots", "quoted")
    assert min(readings) <= citation.value <= max(readings)


def test_snapshot_readings_are_read_from_the_note():
    note = "readings: 54, 58, 59 W, the median; 139-141 W elsewhere"
    assert _snapshot_readings_w(note) == [54.0, 58.0, 59.0]
    assert _snapshot_readings_w("idle + 38 W (middle of the 26-50 W context tax)") is None


@pytest.mark.parametrize("name", sorted(EXPECTED_PROFILES))
def test_dynamic_power_at_peak_fits_under_tdp(name: str):
    """Bottom-up energy per FLOP x peak rate must not exceed the power limit of the device."""
    profile = load_profile(name)
    for dtype_class in DTYPE_CLASSES:
        watts = profile.energy_per_flop_j(dtype_class) * profile.peak_flops_per_s(dtype_class)
        assert watts <= profile.tdp_w, (dtype_class, watts)


@pytest.mark.parametrize("name", sorted(EXPECTED_PROFILES))
def test_narrower_dtypes_cost_no_more_energy_per_flop(name: str):
    """On one kind of unit, a narrower format never costs more per FLOP than a wider one."""
    profile = load_profile(name)
    compared = 0
    for narrow, wide in [
        ("int8", "fp16"),
        ("fp8", "fp16"),
        ("fp16", "fp32"),
        ("bf16", "fp32"),
        ("fp32", "fp64"),
    ]:
        narrow_class, narrow_matrix = profile.resolve_dtype(narrow)
        wide_class, wide_matrix = profile.resolve_dtype(wide)
        if (narrow_class, wide_class) == (narrow, wide) and narrow_matrix == wide_matrix:
            assert profile.energy_per_flop_j(narrow) < profile.energy_per_flop_j(wide), (narrow, wide)
            compared += 1
    assert compared >= 1


def test_a100_sxm_80gb_matches_datasheet():
    a100 = load_profile("a100")
    assert a100.peak_flops_per_s("float32", matrix=False) == pytest.approx(19.5e12)
    assert a100.peak_flops_per_s("float16", matrix=True) == pytest.approx(312e12)
    assert a100.dram_bandwidth_bytes_per_s == pytest.approx(2039e9)
    assert a100.caches[-1].level == "L2"
    assert a100.caches[-1].size_bytes == 40 * MIB
    assert a100.compute_units == 108
    assert a100.tdp_w == 400
    assert a100.dram_bytes == 80 * 2**30


def test_h100_sxm_matches_datasheet():
    h100 = load_profile("h100")
    assert h100.peak_flops_per_s("bfloat16", matrix=True) == pytest.approx(989.4e12)
    assert h100.dram_bandwidth_bytes_per_s == pytest.approx(3.35e12)
    assert h100.caches[-1].size_bytes == 50 * MIB
    assert h100.compute_units == 132
    assert h100.tdp_w == 700


# (profile, what, expected) typed in from the published source, in the source's units: cores, clocks and
# watts as vendors print them, caches in MiB per instance, bandwidth in GB/s, tensor rates dense in TFLOP/s.
PUBLISHED = [
    ("epyc-7763", "cores", 64), ("epyc-7763", "clock_ghz", 2.45), ("epyc-7763", "tdp_w", 280),
    ("epyc-7763", "dram_gb_s", 204.8), ("epyc-7763", "last_cache_mib", 32),  # AMD: 204.80 GB/s per socket
    ("epyc-9654", "cores", 96), ("epyc-9654", "clock_ghz", 2.4), ("epyc-9654", "tdp_w", 360),
    ("epyc-9654", "dram_gb_s", 460.8), ("epyc-9654", "last_cache_mib", 32),
    ("xeon-8380", "cores", 40), ("xeon-8380", "clock_ghz", 2.3), ("xeon-8380", "tdp_w", 270),
    ("xeon-8380", "last_cache_mib", 60), ("xeon-8380", "dram_gb_s", 8 * 8 * 3.2),  # ARK: 8 x DDR4-3200
    ("xeon-8480", "cores", 56), ("xeon-8480", "clock_ghz", 2.0), ("xeon-8480", "tdp_w", 350),
    ("xeon-8480", "last_cache_mib", 105), ("xeon-8480", "dram_gb_s", 8 * 8 * 4.8),
    ("xeon-8480", "bf16_matrix_tflops", 56 * 2.0 * 1024 / 1e3),  # AMX: 1024 BF16 ops per cycle per core
    ("xeon-8480", "int8_matrix_tflops", 56 * 2.0 * 2048 / 1e3),
    ("xeon-gold-5120", "cores", 14), ("xeon-gold-5120", "clock_ghz", 2.2),
    ("xeon-gold-5120", "last_cache_mib", 19.25),
    ("a10", "fp32_vector_tflops", 31.2), ("a10", "fp32_matrix_tflops", 62.5),
    ("a10", "fp16_matrix_tflops", 125),
    ("a10", "int8_matrix_tflops", 250), ("a10", "dram_gb_s", 600), ("a10", "tdp_w", 150),
    ("rtx3090", "fp32_vector_tflops", 35.6), ("rtx3090", "fp16_matrix_tflops", 71),  # FP32 accumulate
    ("rtx3090", "int8_matrix_tflops", 284), ("rtx3090", "dram_gb_s", 936), ("rtx3090", "tdp_w", 350),
    ("h200", "fp16_matrix_tflops", 1978.9 / 2), ("h200", "dram_gb_s", 4800), ("h200", "tdp_w", 700),
    ("h200", "last_cache_mib", 50),
    # HGX B200 table (rates with sparsity, halved); Chips and Cheese: 148 SMs, 126 MB L2; nvidia-smi: 136-142 W idle
    ("b200", "bf16_matrix_tflops", 4500 / 2), ("b200", "fp32_vector_tflops", 75), ("b200", "dram_gb_s", 7700),
    ("b200", "tdp_w", 1000), ("b200", "cores", 148), ("b200", "last_cache_mib", 126), ("b200", "l1_kib", 256),
    ("b200", "idle_w", 139),
    ("gtx1070", "clock_ghz", 1.683), ("gtx1070", "last_cache_mib", 2), ("gtx1070", "tdp_w", 150),
    ("gtx1080ti", "tdp_w", 250), ("gtx1080ti", "idle_w", 13),  # Tom's Hardware: 250 W target, ~13 W idle
    ("quadro-rtx5000", "last_cache_mib", 4), ("quadro-rtx5000", "l1_kib", 96),
    ("jetson-nano", "clock_ghz", 0.9216), ("jetson-nano", "last_cache_mib", 0.25),
    ("jetson-nano", "tdp_w", 10),
    ("jetson-nano", "l1_kib", 64 + 48),  # 64 KB shared + 48 KB L1/texture, as in the other Pascal profiles
    ("jetson-tx2", "clock_ghz", 1.3), ("jetson-tx2", "l1_kib", 64 + 48), ("jetson-tx2", "tdp_w", 15),
    ("rpi5", "idle_w", 2.8), ("rpi5", "tdp_w", 9.7),  # Geerling's sbc-reviews: idle and stress-ng board power
]  # fmt: skip


def _published_quantity(profile: HardwareProfile, what: str) -> float:
    """One profile quantity in the units the published sources print it in."""
    if what.endswith("_tflops"):
        dtype_class, path = what.removesuffix("_tflops").split("_")
        dtype = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "int8": "int8"}[dtype_class]
        return profile.peak_flops_per_s(dtype, matrix=path == "matrix") / 1e12
    return {
        "cores": lambda: profile.compute_units / profile.sockets,
        "clock_ghz": lambda: profile.clock_hz / 1e9,
        "tdp_w": lambda: profile.tdp_w,
        "idle_w": lambda: profile.idle_w,
        "dram_gb_s": lambda: profile.dram_bandwidth_bytes_per_s / 1e9,
        "last_cache_mib": lambda: profile.caches[-1].size_bytes / MIB,
        "l1_kib": lambda: profile.caches[0].size_bytes / 1024,
    }[what]()


@pytest.mark.parametrize(("name", "what", "expected"), PUBLISHED)
def test_checked_values_match_the_published_figures(name: str, what: str, expected: float):
    assert _published_quantity(load_profile(name), what) == pytest.approx(expected, rel=2e-3)


def test_no_shipped_value_or_reference_is_marked_recalled():
    # Every value once tabulated from memory has been read again from a source (docs/hardware.md).
    marked = [name for name in sorted(EXPECTED_PROFILES) if "recalled" in shipped_text(name).lower()]
    assert marked == []


def test_cpu_peaks_follow_from_cores_clock_and_simd_width():
    gold = load_profile("xeon-gold-5120")  # the measured 2-socket system
    assert gold.sockets == 2 and gold.compute_units == 28
    assert gold.peak_flops_per_s("float32") == pytest.approx(28 * 2.2e9 * 32)
    assert gold.dram_bandwidth_bytes_per_s == pytest.approx(2 * 6 * 8 * 2400e6)
    assert gold.tdp_w == 2 * 105
    rpi5 = load_profile("rpi5")
    assert rpi5.peak_flops_per_s("float32") == pytest.approx(4 * 2.4e9 * 2 * 4 * 2)
    assert rpi5.measurement_boundary == "soc-core-rail-dynamic"


def test_fallbacks_for_missing_units():
    v100 = load_profile("v100")
    assert v100.peak_flops_per_s("bfloat16") == pytest.approx(15.7e12)  # no bf16: FP32 rate
    assert v100.energy_per_flop_j("bfloat16") == v100.energy_per_flop_j("float32")
    assert v100.peak_flops_per_s("float32", matrix=True) == pytest.approx(15.7e12)  # no TF32
    epyc = load_profile("epyc-7763")
    assert epyc.peak_flops_per_s("int8") == pytest.approx(5.02e12)  # no int8 units: FP32 rate
    assert epyc.peak_flops_per_s("float16") == pytest.approx(5.02e12)
    a100 = load_profile("a100")
    assert a100.peak_flops_per_s("float8e4m3fn") == pytest.approx(312e12)  # no fp8: FP16 tensor rate
    assert a100.peak_flops_per_s("float16", matrix=False) == pytest.approx(78e12)
    assert a100.peak_flops_per_s("int8", matrix=False) == pytest.approx(19.5e12)  # no int8 vector entry
    assert a100.resolve_dtype("int4") == ("int8", True)
    h100 = load_profile("h100")
    assert h100.peak_flops_per_s("float8e5m2") == pytest.approx(1978.9e12)


def test_dtype_classes():
    assert compute_dtype_class("float32") == "fp32"
    assert compute_dtype_class("BFLOAT16") == "bf16"
    assert compute_dtype_class("float8e4m3fnuz") == "fp8"
    assert compute_dtype_class("uint8") == "int8"
    assert compute_dtype_class("int64") == "fp32"
    with pytest.raises(ProfileError, match="unknown dtype 'complex64'"):
        compute_dtype_class("complex64")


def test_sources_cite_every_value():
    a100 = load_profile("a100")
    sources = a100.sources()
    fp32 = sources["peak_flops_per_s.fp32_vector"]
    assert fp32.value == 19.5e12 and fp32.confidence == "quoted" and fp32.source_id == "nvidia-a100"
    assert "A100" in fp32.reference
    assert sources["cache.L2.size_bytes"].value == 40 * MIB
    assert sources["energy_per_flop_j.fp16"].confidence == "derived"
    assert "power.static_w" in sources and "efficiency.launch_overhead_s" in sources
    # Every number in the file is cited: count the `value =` entries in the text.
    assert len(sources) == len(re.findall(r"\bvalue = ", shipped_text("a100")))


def test_loading_is_cached():
    assert load_profile("t4") is load_profile("t4")


def test_unknown_name_lists_known_names():
    with pytest.raises(ProfileError) as info:
        load_profile("a1000")
    message = str(info.value)
    assert "'a1000'" in message
    for name in EXPECTED_PROFILES:
        assert name in message
    assert isinstance(info.value, EstimatorError)


def test_user_profile_file_loads(tmp_path: Path):
    text = (
        shipped_text("l4")
        .replace('name = "l4"', 'name = "my-l4"')
        .replace("fp32_vector = { value = 3.03e+13", "fp32_vector = { value = 2.5e+13")
    )
    path = tmp_path / "my-l4.toml"
    path.write_text(text)
    mine = load_profile(path)
    assert mine.name == "my-l4"
    assert mine.peak_flops_per_s("float32", matrix=False) == 25e12
    assert mine.source_path == str(path.resolve())
    assert load_profile(str(path)) is mine
    # An edited file is re-read, not served from the cache.
    path.write_text(text.replace("value = 2.5e+13", "value = 2.0e+13"))
    assert load_profile(path).peak_flops_per_s("float32", matrix=False) == 20e12


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda t: re.sub(r"(?m)^fp32_vector = .*\n", "", t), "peak_flops_per_s.fp32_vector"),
        (lambda t: t.replace("fp16_matrix =", "fp16_tensor ="), "peak_flops_per_s.fp16_tensor"),
        (lambda t: t.replace("tdp_w = { value = 72", "tdp_w = { value = -72"), "power.tdp_w.value"),
        (lambda t: t.replace('= 72, source = "nvidia-l4"', '= 72, source = "x"'), "power.tdp_w.source"),
        (lambda t: t.replace('"quoted"', '"sure"', 1), "compute.compute_units.confidence"),
        (lambda t: t.replace('kind = "gpu"', 'kind = "fpga"'), "kind"),
        (lambda t: t.replace("{ value = 50331648", "{ value = 1024"), "cache.L2.size_bytes"),
        (lambda t: t.replace("[efficiency]", "[efficiencies]"), "efficiency"),
        (lambda t: t.replace("{ value = 6e-11", "{ value = 1e-12"), "memory.dram_energy_per_byte_j"),
    ],
)  # fmt: skip
def test_malformed_profile_names_file_and_key(tmp_path: Path, edit, key: str):
    original = shipped_text("l4")
    edited = edit(original)
    assert edited != original, "the edit must change the file"
    path = tmp_path / "bad.toml"
    path.write_text(edited)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert str(path.resolve()) in str(info.value)
    assert f"'{key}'" in str(info.value)


def test_not_toml_and_missing_file(tmp_path: Path):
    path = tmp_path / "broken.toml"
    path.write_text("name = [unclosed\n")
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_profile(path)
    with pytest.raises(ProfileError, match="cannot read"):
        load_profile(tmp_path / "absent.toml")


def test_b200_is_listed_and_estimates_the_example(capsys):
    import json

    from estimator.cli import run

    assert run(["hardware", "list"]) == 0
    assert "NVIDIA B200" in capsys.readouterr().out
    example = Path(__file__).resolve().parents[1] / "examples" / "resnet50.onnx"
    assert run([str(example), "--hw", "b200", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["hardware"] == "b200" and payload["boundary"] == "gpu-board-nvml"
    # Never below the board's idle-with-context power for the whole latency (170 W), never above TDP.
    assert 170 * payload["latency_s"] <= payload["joules_per_inference"] <= 1000 * payload["latency_s"]
