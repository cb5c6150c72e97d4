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
from dataclasses import fields
from importlib import resources
from pathlib import Path
from typing import Any

from estimator.energy.profile import (
    _CACHE_SCOPES,
    _REQUIRED_TEXT,
    BOUNDARIES,
    CONFIDENCES,
    DTYPE_CLASSES,
    KINDS,
    SCHEMA_VERSION,
    CacheLevel,
    Citation,
    EnergyPerFlopTable,
    HardwareProfile,
    PeakFlopsTable,
    PowerModel,
    compute_dtype_class,
)
from estimator.errors import ProfileError, did_you_mean

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
            f"unknown hardware profile {name_or_path!r}{did_you_mean(name_or_path, list_profiles())}; "
            f"known profiles: {known} "
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


#: Every cited value lies in this range in its key's unit (FLOP/s, bytes, J/FLOP, W, s, fractions): a value
#: outside it is a typo, and would overflow or underflow the prior's float arithmetic.
_PHYSICAL_RANGE = (1e-20, 1e20)


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
        if not _PHYSICAL_RANGE[0] <= value <= _PHYSICAL_RANGE[1]:
            self.fail(
                f"{place}.value",
                f"{value:g} is outside any physical range ({_PHYSICAL_RANGE[0]:g} .. {_PHYSICAL_RANGE[1]:g} in "
                f"the key's unit); check the exponent",
            )
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


#: Keys of a profile's ``[efficiency]`` table (``fa2_compute_fraction`` optional).
_EFFICIENCY_KEYS = (
    "achievable_compute_fraction",
    "achievable_bandwidth_fraction",
    "launch_overhead_s",
    "fa2_compute_fraction",
)


def _parse(text: str, origin: str) -> HardwareProfile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ProfileError(f"hardware profile {origin} is not valid TOML: {error}") from None
    except RecursionError:
        raise ProfileError(
            f"hardware profile {origin} nests tables or arrays too deeply to read; a profile is a few flat tables"
        ) from None
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
    unknown = set(efficiency) - set(_EFFICIENCY_KEYS)
    if unknown:
        reader.fail(
            f"efficiency.{sorted(unknown)[0]}", f"unknown key; known keys: {', '.join(_EFFICIENCY_KEYS)}"
        )
    compute_fraction = reader.cited(
        efficiency, "achievable_compute_fraction", "efficiency.achievable_compute_fraction"
    )
    bandwidth_fraction = reader.cited(
        efficiency, "achievable_bandwidth_fraction", "efficiency.achievable_bandwidth_fraction"
    )
    launch_overhead = reader.cited(efficiency, "launch_overhead_s", "efficiency.launch_overhead_s")
    fa2_fraction = reader.cited(
        efficiency, "fa2_compute_fraction", "efficiency.fa2_compute_fraction", optional=True
    )

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
        fa2_compute_fraction=fa2_fraction,
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
    for key in ("achievable_compute_fraction", "achievable_bandwidth_fraction", "fa2_compute_fraction"):
        if (getattr(profile, key) or 0) > 1:
            reader.fail(f"efficiency.{key}", "is a fraction and must not exceed 1")
    for dtype_class in DTYPE_CLASSES:
        for matrix in (True, False):
            executed, _ = profile.resolve_dtype(dtype_class, matrix)
            if getattr(profile.energy_table_j_per_flop, executed) is None:
                reader.fail(f"energy_per_flop_j.{executed}", "missing for a class the device executes")


def is_shipped_profile(profile: HardwareProfile) -> bool:
    """Whether ``profile`` is a shipped profile: loaded by name, or from a file whose bytes are the shipped file's.

    Trained models belong to shipped profiles only: an edited copy named like one must not get its model.
    """
    if profile.source_path == f"estimator/profiles/{profile.name}.toml":
        return True
    shipped = _profiles_dir() / f"{profile.name}.toml"
    try:
        return shipped.is_file() and Path(profile.source_path).read_bytes() == shipped.read_bytes()
    except OSError:
        return False


def check_finite_answer(joules: float, seconds: float, hw: HardwareProfile) -> None:
    """ProfileError naming the profile's most extreme value when ``joules`` (J) or ``seconds`` (s) computed
    from it are not finite and non-negative (a backstop: cited values are range-checked when loaded)."""
    if math.isfinite(joules) and math.isfinite(seconds) and joules >= 0 and seconds >= 0:
        return
    values = [c for c in hw.citations if c.value > 0]
    worst = max(values, key=lambda c: abs(math.log10(c.value)), default=None)
    named = f" (its most extreme value: {worst.key} = {worst.value:g})" if worst else ""
    raise ProfileError(
        f"hardware profile '{hw.name}' gives a non-finite energy or latency ({joules:g} J, {seconds:g} s)"
        f"{named}; its values are outside any physical range: fix the profile"
    )
