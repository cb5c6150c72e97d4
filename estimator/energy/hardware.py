"""Hardware profiles: cited device data files loaded into frozen dataclasses.

A profile is one TOML file per device, shipped as package data in ``estimator/profiles/`` (the file name is
the profile name) or written by the user. Every number in it is a *cited value*::

    fp32_vector = { value = 19.5e12, source = "nvidia-a100", confidence = "quoted", note = "..." }

where ``source`` names an entry of the file's ``[references]`` table and ``confidence`` is ``quoted`` (read
from a datasheet or a measurement), ``derived`` (computed from quoted values by the formula in ``note``) or
``estimated`` (a judgement; the note gives the reasoning). Units are in the key names: ``_flops_per_s``,
``_bytes``, ``_bytes_per_s``, ``_w``, ``_j``, ``_s``, ``_hz``. Peak rates are DENSE (no 2:4 sparsity);
1 multiply-add = 2 FLOPs. ``docs/hardware.md`` lists the shipped profiles and how their values were derived.

Dtype names accepted by the lookups: the estimator's names (``float32``, ``float16``, ``bfloat16``,
``int8``, ``float8e4m3fn``, ... see :mod:`estimator.dtypes`) and the short classes ``fp64``, ``fp32``,
``fp16``, ``bf16``, ``fp8``, ``int8``.
"""

from __future__ import annotations

import functools
import itertools
import math
import sys
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from estimator.errors import ProfileError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "BOUNDARIES",
    "CONFIDENCES",
    "DTYPE_CLASSES",
    "CacheLevel",
    "Citation",
    "EnergyPerFlopTable",
    "HardwareProfile",
    "PeakFlopsTable",
    "PowerModel",
    "compute_dtype_class",
    "list_profiles",
    "load_profile",
]

SCHEMA_VERSION = 1
CONFIDENCES = ("quoted", "derived", "estimated")
KINDS = ("gpu", "cpu", "soc")
#: Measurement boundaries a profile's predictions can refer to (see EVALUATION.md).
BOUNDARIES = ("gpu-board-nvml", "cpu-package-rapl", "soc-core-rail-dynamic", "wall-system")
#: Arithmetic classes, narrowest first; every dtype maps to one of them.
DTYPE_CLASSES = ("int8", "fp8", "fp16", "bf16", "fp32", "fp64")

# A class a device cannot execute runs as the next class (the runtime upcasts). fp32 and fp64 are required.
_FALLBACK = {"fp8": "fp16", "fp16": "fp32", "bf16": "fp32", "int8": "fp32"}

_DTYPE_TO_CLASS = {
    **{name: "fp64" for name in ("fp64", "float64", "double")},
    **{name: "fp32" for name in ("fp32", "float32", "float", "tf32")},
    **{name: "fp16" for name in ("fp16", "float16", "half")},
    **{name: "bf16" for name in ("bf16", "bfloat16")},
    **{name: "int8" for name in ("int8", "uint8", "int4", "uint4", "int2", "uint2")},
    # Wider integers and booleans have no fast paths; they are charged at the FP32 vector rate.
    **{name: "fp32" for name in ("int16", "uint16", "int32", "uint32", "int64", "uint64", "bool")},
}

_CACHE_SCOPES = ("per_unit", "shared")
_REQUIRED_TEXT = (
    "name",
    "display_name",
    "kind",
    "vendor",
    "architecture",
    "process_node",
    "compute_unit_name",
    "dram_type",
    "default_runtime",
    "measurement_boundary",
)


def compute_dtype_class(dtype: str) -> str:
    """Arithmetic class (``fp64``, ``fp32``, ``fp16``, ``bf16``, ``fp8`` or ``int8``) of a dtype name.

    All float8 variants map to ``fp8``; sub-byte and 8-bit integers to ``int8``; wider integers and
    ``bool`` to ``fp32`` (no fast integer paths are modelled). Raises ProfileError for an unknown name.
    """
    key = dtype.lower()
    if key.startswith("float8") or key == "fp8":
        return "fp8"
    if key not in _DTYPE_TO_CLASS:
        known = ", ".join(sorted({*_DTYPE_TO_CLASS, "float8e4m3fn", "float8e5m2"}))
        raise ProfileError(f"unknown dtype {dtype!r}; use one of: {known}")
    return _DTYPE_TO_CLASS[key]


@dataclass(frozen=True)
class Citation:
    """Where one profile value comes from.

    ``key`` is the dotted place of the value in the file (``peak_flops_per_s.fp32_vector``,
    ``cache.L2.size_bytes``), ``reference`` the full text of the cited source, ``confidence`` one of
    :data:`CONFIDENCES`, ``note`` the derivation or remark (may be empty).
    """

    key: str
    value: float
    source_id: str
    reference: str
    confidence: str
    note: str


@dataclass(frozen=True)
class PeakFlopsTable:
    """Dense peak arithmetic rates in FLOP/s (integer ops for int8), ``None`` where the device has no unit.

    ``*_vector`` are the SIMD / CUDA-core paths, ``*_matrix`` the matrix units (tensor cores, AMX).
    ``fp32_matrix`` is TF32 on NVIDIA Ampere and later (FP32 inputs on tensor cores).
    """

    fp64_vector: float
    fp32_vector: float
    fp64_matrix: float | None = None
    fp32_matrix: float | None = None
    fp16_vector: float | None = None
    fp16_matrix: float | None = None
    bf16_vector: float | None = None
    bf16_matrix: float | None = None
    fp8_matrix: float | None = None
    int8_vector: float | None = None
    int8_matrix: float | None = None

    def rate(self, dtype_class: str, matrix: bool) -> float | None:
        """Tabulated rate of one class and path in FLOP/s; ``None`` when the device has no such unit."""
        return getattr(self, f"{dtype_class}_{'matrix' if matrix else 'vector'}", None)


@dataclass(frozen=True)
class EnergyPerFlopTable:
    """Marginal dynamic energy in joules per FLOP (per op for int8) of each class the device executes.

    The value is for the path the class runs on by default: the matrix units where the device has them
    for that class, else the vector units. Static power is not included.
    """

    fp64: float
    fp32: float
    fp16: float | None = None
    bf16: float | None = None
    fp8: float | None = None
    int8: float | None = None


@dataclass(frozen=True)
class CacheLevel:
    """One on-chip memory level. ``size_bytes`` is per instance; ``units`` instances exist on the device.

    ``scope`` is ``per_unit`` (one private instance per SM or core) or ``shared`` (one instance shared by
    several units). ``energy_per_byte_j`` is the dynamic energy to read one byte from this level (J/B).
    """

    level: str
    scope: str
    units: int
    size_bytes: float
    energy_per_byte_j: float

    @property
    def total_size_bytes(self) -> float:
        """Capacity of all instances together, in bytes."""
        return self.size_bytes * self.units


@dataclass(frozen=True)
class PowerModel:
    """Power levels of the device in watts, at the level the sources give (board, package or module).

    ``static_w`` is what the device draws while busy that does not scale with work (leakage at operating
    voltage, clocks, uncore); ``idle_with_context_w`` is idle with a model loaded (a CUDA context keeps
    a GPU in a higher power state; equal to ``idle_w`` on CPUs).
    """

    tdp_w: float
    static_w: float
    idle_w: float
    idle_with_context_w: float


@dataclass(frozen=True)
class HardwareProfile:
    """A device: its compute, memory hierarchy, power and efficiency constants, with the sources.

    Counts and totals are for the whole profile, which is one device or, when ``sockets > 1``, the
    multi-socket system that was measured (see ``notes``).
    """

    name: str
    display_name: str
    kind: str
    vendor: str
    architecture: str
    process_node: str
    compute_unit_name: str
    dram_type: str
    default_runtime: str
    measurement_boundary: str
    sockets: int
    notes: str
    compute_units: int
    clock_hz: float
    peak_table_flops_per_s: PeakFlopsTable
    dram_bytes: float
    dram_bandwidth_bytes_per_s: float
    dram_energy_per_byte_j: float
    caches: tuple[CacheLevel, ...]
    power: PowerModel
    energy_table_j_per_flop: EnergyPerFlopTable
    achievable_compute_fraction: float
    achievable_bandwidth_fraction: float
    launch_overhead_s: float
    citations: tuple[Citation, ...]
    source_path: str

    @property
    def tdp_w(self) -> float:
        """Thermal design power (board / package / module limit), W."""
        return self.power.tdp_w

    @property
    def static_w(self) -> float:
        """Power drawn while busy that does not scale with work, W."""
        return self.power.static_w

    @property
    def idle_w(self) -> float:
        """Idle power with no process attached, W."""
        return self.power.idle_w

    @property
    def idle_with_context_w(self) -> float:
        """Idle power with a model / CUDA context resident, W."""
        return self.power.idle_with_context_w

    def resolve_dtype(self, dtype: str, matrix: bool = True) -> tuple[str, bool]:
        """The (class, matrix path?) that actually executes ``dtype`` on this device.

        Rules, applied in order until a tabulated unit is found:
        1. the class on the matrix units (only when ``matrix`` is asked for);
        2. the class on the vector units;
        3. the class the runtime upcasts to: fp8 -> fp16, fp16 -> fp32, bf16 -> fp32, int8 -> fp32,
           and again from rule 1.
        fp32 and fp64 vector rates exist in every profile, so the search always ends.
        """
        dtype_class, on_matrix, _ = self._executed(dtype, matrix)
        return dtype_class, on_matrix

    def _executed(self, dtype: str, matrix: bool) -> tuple[str, bool, float]:
        dtype_class = compute_dtype_class(dtype)
        table = self.peak_table_flops_per_s
        while True:
            for on_matrix in (True, False) if matrix else (False,):
                rate = table.rate(dtype_class, on_matrix)
                if rate is not None:
                    return dtype_class, on_matrix, rate
            dtype_class = _FALLBACK[dtype_class]

    def peak_flops_per_s(self, dtype: str, matrix: bool = True) -> float:
        """Dense peak rate in FLOP/s for ``dtype`` on the matrix (or vector) path, with fallbacks.

        A dtype or path the device lacks falls back as :meth:`resolve_dtype` describes (e.g. bf16 on a
        V100 -> its FP32 rate, int8 on an EPYC 7763 -> its FP32 vector rate); the result is never 0.
        """
        return self._executed(dtype, matrix)[2]

    def energy_per_flop_j(self, dtype: str) -> float:
        """Marginal dynamic energy in J per FLOP of ``dtype`` on its default (matrix where present) path.

        The class is resolved as in :meth:`resolve_dtype`, so bf16 on a device without bf16 units costs
        its FP32 energy. Static power is not included.
        """
        dtype_class, _ = self.resolve_dtype(dtype, matrix=True)
        energy = getattr(self.energy_table_j_per_flop, dtype_class)
        if energy is None:  # loading rejects such profiles; only a hand-built profile can get here
            raise ProfileError(f"hardware profile {self.name} has no energy_per_flop_j.{dtype_class}")
        return energy

    def ridge_point_flop_per_byte(self, dtype: str = "float32", matrix: bool = True) -> float:
        """Arithmetic intensity (FLOP per DRAM byte) above which a kernel of ``dtype`` is compute-bound."""
        return self.peak_flops_per_s(dtype, matrix) / self.dram_bandwidth_bytes_per_s

    def sources(self) -> dict[str, Citation]:
        """Every value of the profile with its citation, keyed by its dotted place in the file."""
        return {citation.key: citation for citation in self.citations}


# ---------------------------------------------------------------------------------------------------------
# Loading


def _profiles_dir() -> Any:
    return resources.files("estimator.energy") / "profiles"


def list_profiles() -> list[str]:
    """Names of the profiles shipped with the package, sorted."""
    return sorted(
        entry.name.removesuffix(".toml")
        for entry in _profiles_dir().iterdir()
        if entry.name.endswith(".toml")
    )


def load_profile(name_or_path: str | Path) -> HardwareProfile:
    """Load a shipped profile by name (``"a100"``) or a profile file by path (``"my_gpu.toml"``).

    A ``Path``, or a string that ends in ``.toml`` or contains a path separator, is read as a file.
    Raises ProfileError for an unknown name (listing the known ones), a missing or unreadable file, or a
    file that is malformed or lacks a required value (naming the file and the key). Parsed profiles are
    cached per file, so loading the same profile again is cheap.
    """
    if (
        isinstance(name_or_path, Path)
        or name_or_path.endswith(".toml")
        or "/" in name_or_path
        or ("\\" in name_or_path)
    ):
        path = Path(name_or_path).expanduser()
        try:
            stat = path.stat()
        except OSError as error:
            raise ProfileError(f"cannot read hardware profile file {path}: {error.strerror}") from None
        if not path.is_file():
            raise ProfileError(f"hardware profile {path} is not a file; give a .toml profile file")
        return _load_file(str(path.resolve()), stat.st_mtime_ns)
    if name_or_path not in list_profiles():
        known = ", ".join(list_profiles())
        raise ProfileError(
            f"unknown hardware profile {name_or_path!r}; known profiles: {known} "
            "(or give the path of a .toml profile file)"
        )
    return _load_shipped(name_or_path)


@functools.lru_cache(maxsize=64)
def _load_shipped(name: str) -> HardwareProfile:
    entry = _profiles_dir() / f"{name}.toml"
    return _parse(entry.read_text(encoding="utf-8"), origin=f"estimator/profiles/{name}.toml")


@functools.lru_cache(maxsize=64)
def _load_file(path: str, mtime_ns: int) -> HardwareProfile:
    """Parse a user's profile file; ``mtime_ns`` is part of the cache key so an edited file is re-read."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ProfileError(f"cannot read hardware profile file {path}: {error}") from None
    return _parse(text, origin=path)


class _Reader:
    """Reads cited values out of the parsed TOML, collecting citations and naming bad keys."""

    def __init__(self, data: dict[str, Any], origin: str) -> None:
        self.data = data
        self.origin = origin
        self.citations: list[Citation] = []
        references = data.get("references")
        if not isinstance(references, dict) or not references:
            self.fail("references", "a [references] table mapping source ids to citations is required")
        for ref_id, text in references.items():
            if not isinstance(text, str) or not text.strip():
                self.fail(f"references.{ref_id}", "must be a non-empty string")
        self.references: dict[str, str] = references

    def fail(self, key: str, problem: str) -> None:
        raise ProfileError(f"hardware profile {self.origin}: key '{key}': {problem}")

    def table(self, key: str, optional: bool = False) -> dict[str, Any]:
        value = self.data.get(key)
        if value is None and optional:
            return {}
        if not isinstance(value, dict):
            self.fail(key, "missing table" if value is None else "must be a table")
        return value

    def text(self, key: str) -> str:
        value = self.data.get(key)
        if not isinstance(value, str) or not value.strip():
            self.fail(key, "missing" if value is None else "must be a non-empty string")
        return value

    def choice(self, key: str, allowed: tuple[str, ...]) -> str:
        value = self.text(key)
        if value not in allowed:
            self.fail(key, f"{value!r} is not one of {', '.join(allowed)}")
        return value

    def cited(self, container: dict[str, Any], key: str, place: str, optional: bool = False) -> float | None:
        """A positive finite cited value at ``container[key]``; ``place`` is its dotted name for messages."""
        entry = container.get(key)
        if entry is None:
            if optional:
                return None
            self.fail(place, "missing")
        if not isinstance(entry, dict):
            self.fail(place, "must be a table { value = ..., source = ..., confidence = ... }")
        unknown = set(entry) - {"value", "source", "confidence", "note"}
        if unknown:
            self.fail(place, f"unknown field(s) {', '.join(sorted(unknown))}")
        value = entry.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(f"{place}.value", "missing" if value is None else "must be a number")
        if not math.isfinite(value) or value <= 0:
            self.fail(f"{place}.value", f"must be positive and finite, got {value}")
        source = entry.get("source")
        if not isinstance(source, str) or source not in self.references:
            self.fail(f"{place}.source", f"{source!r} is not an id in [references]")
        confidence = entry.get("confidence")
        if confidence not in CONFIDENCES:
            self.fail(f"{place}.confidence", f"{confidence!r} is not one of {', '.join(CONFIDENCES)}")
        note = entry.get("note", "")
        if not isinstance(note, str):
            self.fail(f"{place}.note", "must be a string")
        self.citations.append(
            Citation(place, float(value), source, self.references[source], confidence, note)
        )
        return float(value)

    def cited_table(self, key: str, cls: type, required: tuple[str, ...]) -> Any:
        """The frozen dataclass ``cls`` built from the cited values of table ``key``; unknown keys fail."""
        table = self.table(key)
        names = [field.name for field in fields(cls)]
        unknown = set(table) - set(names)
        if unknown:
            self.fail(f"{key}.{sorted(unknown)[0]}", f"unknown key; known keys: {', '.join(names)}")
        values = {
            name: self.cited(table, name, f"{key}.{name}", optional=name not in required) for name in names
        }
        return cls(**values)


def _parse(text: str, origin: str) -> HardwareProfile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ProfileError(f"hardware profile {origin} is not valid TOML: {error}") from None
    reader = _Reader(data, origin)
    if data.get("schema_version") != SCHEMA_VERSION:
        reader.fail("schema_version", f"must be {SCHEMA_VERSION}, got {data.get('schema_version')!r}")
    texts = {key: reader.text(key) for key in _REQUIRED_TEXT}
    texts["kind"] = reader.choice("kind", KINDS)
    texts["measurement_boundary"] = reader.choice("measurement_boundary", BOUNDARIES)
    sockets = data.get("sockets", 1)
    if isinstance(sockets, bool) or not isinstance(sockets, int) or sockets < 1:
        reader.fail("sockets", f"must be a positive integer, got {sockets!r}")
    notes = data.get("notes", "")
    if not isinstance(notes, str):
        reader.fail("notes", "must be a string")

    compute = reader.table("compute")
    compute_units = reader.cited(compute, "compute_units", "compute.compute_units")
    if compute_units != int(compute_units):
        reader.fail("compute.compute_units.value", "must be a whole number")
    clock_hz = reader.cited(compute, "clock_hz", "compute.clock_hz")
    peaks: PeakFlopsTable = reader.cited_table(
        "peak_flops_per_s", PeakFlopsTable, ("fp64_vector", "fp32_vector")
    )
    memory = reader.table("memory")
    dram_bytes = reader.cited(memory, "dram_bytes", "memory.dram_bytes")
    dram_bandwidth = reader.cited(memory, "dram_bandwidth_bytes_per_s", "memory.dram_bandwidth_bytes_per_s")
    dram_energy = reader.cited(memory, "dram_energy_per_byte_j", "memory.dram_energy_per_byte_j")
    caches = _read_caches(reader)
    power: PowerModel = reader.cited_table("power", PowerModel, tuple(f.name for f in fields(PowerModel)))
    energies: EnergyPerFlopTable = reader.cited_table(
        "energy_per_flop_j", EnergyPerFlopTable, ("fp64", "fp32")
    )
    efficiency = reader.table("efficiency")
    compute_fraction = reader.cited(
        efficiency, "achievable_compute_fraction", "efficiency.achievable_compute_fraction"
    )
    bandwidth_fraction = reader.cited(
        efficiency, "achievable_bandwidth_fraction", "efficiency.achievable_bandwidth_fraction"
    )
    launch_overhead = reader.cited(efficiency, "launch_overhead_s", "efficiency.launch_overhead_s")

    profile = HardwareProfile(
        **texts,
        sockets=sockets,
        notes=notes,
        compute_units=int(compute_units),
        clock_hz=clock_hz,
        peak_table_flops_per_s=peaks,
        dram_bytes=dram_bytes,
        dram_bandwidth_bytes_per_s=dram_bandwidth,
        dram_energy_per_byte_j=dram_energy,
        caches=caches,
        power=power,
        energy_table_j_per_flop=energies,
        achievable_compute_fraction=compute_fraction,
        achievable_bandwidth_fraction=bandwidth_fraction,
        launch_overhead_s=launch_overhead,
        citations=tuple(reader.citations),
        source_path=origin,
    )
    _check_consistency(profile, reader)
    return profile


def _read_caches(reader: _Reader) -> tuple[CacheLevel, ...]:
    entries = reader.data.get("cache")
    if not isinstance(entries, list) or not entries:
        reader.fail("cache", "at least one [[cache]] level (L1 first) is required")
    levels = []
    for index, entry in enumerate(entries):
        place = f"cache[{index}]"
        if not isinstance(entry, dict):
            reader.fail(place, "must be a table")
        unknown = set(entry) - {"level", "scope", "units", "size_bytes", "energy_per_byte_j"}
        if unknown:
            reader.fail(f"{place}.{sorted(unknown)[0]}", "unknown key")
        level = entry.get("level")
        if not isinstance(level, str) or not level:
            reader.fail(f"{place}.level", "missing or not a string")
        place = f"cache.{level}"
        scope = entry.get("scope")
        if scope not in _CACHE_SCOPES:
            reader.fail(f"{place}.scope", f"{scope!r} is not one of {', '.join(_CACHE_SCOPES)}")
        units = entry.get("units")
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            reader.fail(f"{place}.units", f"must be a positive integer, got {units!r}")
        size = reader.cited(entry, "size_bytes", f"{place}.size_bytes")
        energy = reader.cited(entry, "energy_per_byte_j", f"{place}.energy_per_byte_j")
        levels.append(CacheLevel(level, scope, units, size, energy))
    return tuple(levels)


def _check_consistency(profile: HardwareProfile, reader: _Reader) -> None:
    """Physical sanity checks across values; each failure names the offending key."""
    caches = profile.caches
    for inner, outer in itertools.pairwise(caches):
        if outer.size_bytes <= inner.size_bytes:
            reader.fail(
                f"cache.{outer.level}.size_bytes", f"must exceed the inner level {inner.level}'s size"
            )
        if outer.energy_per_byte_j <= inner.energy_per_byte_j:
            reader.fail(
                f"cache.{outer.level}.energy_per_byte_j",
                f"must exceed the inner level {inner.level}'s energy",
            )
    if profile.dram_energy_per_byte_j <= caches[-1].energy_per_byte_j:
        reader.fail("memory.dram_energy_per_byte_j", f"must exceed the outermost cache {caches[-1].level}'s")
    if profile.dram_bytes <= caches[-1].total_size_bytes:
        reader.fail("memory.dram_bytes", "must exceed the outermost cache's capacity")
    power = profile.power
    if not power.idle_w <= power.idle_with_context_w <= power.tdp_w:
        reader.fail("power.idle_with_context_w", "must lie between idle_w and tdp_w")
    if not power.idle_w <= power.static_w < power.tdp_w:
        reader.fail("power.static_w", "must be at least idle_w and below tdp_w")
    for key in ("achievable_compute_fraction", "achievable_bandwidth_fraction"):
        if getattr(profile, key) > 1:
            reader.fail(f"efficiency.{key}", "is a fraction and must not exceed 1")
    for dtype_class in DTYPE_CLASSES:
        for matrix in (True, False):
            executed, _ = profile.resolve_dtype(dtype_class, matrix)
            if getattr(profile.energy_table_j_per_flop, executed) is None:
                reader.fail(f"energy_per_flop_j.{executed}", "missing for a class the device executes")
