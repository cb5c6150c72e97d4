"""Carbon and money per inference: joules at the estimate's boundary x PUE -> kWh -> gCO2e and cost.

**Boundary.** The footprint covers exactly the energy the estimate covers (its measurement boundary, e.g. the
GPU board for ``gpu-board-nvml`` or the SoC's core rail above idle for ``soc-core-rail-dynamic``), multiplied by
an optional PUE (power usage effectiveness, facility energy / IT energy; 1.0 = no facility overhead). It leaves
out what the boundary leaves out (host CPU, DRAM, fans, power-supply losses unless the boundary is
``wall-system``), embodied (manufacturing) carbon, and idle time between inferences.

**Grid intensity.** Annual average grams of CO2-equivalent per kWh generated, from the table shipped as
package data (``grid_intensity.csv``: Ember and the Energy Institute via Our World in Data, year 2023), or a
number the user gives. An annual average is not the marginal or hourly intensity at the time of use.

The interval of the energy estimate is carried through unchanged in ratio: every quantity here is linear in
joules.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib import resources

from estimator.errors import EstimatorError, did_you_mean

#: Joules in one kilowatt-hour.
JOULES_PER_KWH = 3.6e6
_TABLE = "grid_intensity.csv"


class CarbonInputError(EstimatorError):
    """An unknown grid region, or a negative intensity, price or a PUE below 1."""


@dataclass(frozen=True)
class GridIntensity:
    """Annual carbon intensity of one region's electricity generation.

    Attributes:
        region: short code (ISO 3166 alpha-2, lower case, or ``world``).
        name: the region's name.
        gco2e_per_kwh: grams of CO2-equivalent per kWh generated.
        year: the year the average refers to.
        source: where the figure comes from.
    """

    region: str
    name: str
    gco2e_per_kwh: float
    year: int
    source: str


def grid_intensities() -> dict[str, GridIntensity]:
    """The shipped table of annual grid intensities, by region code."""
    text = resources.files("estimator.report").joinpath(_TABLE).read_text(encoding="utf-8")
    rows = csv.DictReader(io.StringIO("".join(line for line in text.splitlines(True) if line[:1] != "#")))
    return {
        r["region"]: GridIntensity(
            r["region"], r["name"], float(r["gco2e_per_kwh"]), int(r["year"]), r["source"]
        )
        for r in rows
    }


def find_grid(region: str) -> GridIntensity:
    """The grid of ``region``, given by code (``de``) or name (``Germany``), case-insensitive.

    Raises CarbonInputError naming the known regions (and the closest one) otherwise.
    """
    table = grid_intensities()
    key = region.strip().lower()
    for g in table.values():
        if key in (g.region, g.name.lower()):
            return g
    names = [g.region for g in table.values()] + [g.name for g in table.values()]
    raise CarbonInputError(
        f"unknown grid region '{region}'{did_you_mean(region, names)}; known: "
        f"{', '.join(sorted(table))} (or give --grid-gco2-per-kwh N)"
    )


@dataclass(frozen=True)
class Footprint:
    """Energy, carbon and cost of inferences, each with the estimate's interval.

    Attributes:
        joules: energy per inference at the estimate's boundary, J.
        interval: (low, high) of ``joules``, J.
        pue: facility overhead factor applied (1.0 = none).
        boundary: what the joules cover (the estimate's measurement boundary).
        gco2e_per_kwh: grid intensity used, or None when no grid was given.
        grid: description of the grid figure (region, year, intensity) or ``given``.
        grid_source: where the grid figure comes from.
        price_per_kwh: electricity price per kWh, or None.
        currency: the price's currency label (free text; the tool does not convert).
    """

    joules: float
    interval: tuple[float, float]
    pue: float
    boundary: str
    gco2e_per_kwh: float | None
    grid: str
    grid_source: str
    price_per_kwh: float | None
    currency: str

    def _triple(self, per_joule: float) -> tuple[float, float, float]:
        f = self.pue * per_joule
        return self.joules * f, self.interval[0] * f, self.interval[1] * f

    @property
    def kwh_per_million(self) -> tuple[float, float, float]:
        """(estimate, low, high) facility kWh per million inferences."""
        return self._triple(1e6 / JOULES_PER_KWH)

    @property
    def grams_per_inference(self) -> tuple[float, float, float] | None:
        """(estimate, low, high) gCO2e per inference, or None without a grid."""
        if self.gco2e_per_kwh is None:
            return None
        return self._triple(self.gco2e_per_kwh / JOULES_PER_KWH)

    @property
    def grams_per_million(self) -> tuple[float, float, float] | None:
        """(estimate, low, high) gCO2e per million inferences, or None without a grid."""
        g = self.grams_per_inference
        return None if g is None else (g[0] * 1e6, g[1] * 1e6, g[2] * 1e6)

    @property
    def cost_per_million(self) -> tuple[float, float, float] | None:
        """(estimate, low, high) electricity cost of a million inferences in ``currency``, or None."""
        if self.price_per_kwh is None:
            return None
        return self._triple(self.price_per_kwh * 1e6 / JOULES_PER_KWH)

    def to_json(self) -> dict:
        """A JSON-ready dict (keys carry units)."""

        def triple(t: tuple[float, float, float] | None) -> dict | None:
            return None if t is None else {"estimate": t[0], "low": t[1], "high": t[2]}

        return {
            "boundary": self.boundary,
            "pue": self.pue,
            "covers": "energy inside the measurement boundary x PUE; no embodied carbon, no idle time",
            "grid": self.grid,
            "grid_source": self.grid_source,
            "gco2e_per_kwh": self.gco2e_per_kwh,
            "price_per_kwh": self.price_per_kwh,
            "currency": self.currency,
            "kwh_per_million_inferences": triple(self.kwh_per_million),
            "gco2e_per_inference": triple(self.grams_per_inference),
            "gco2e_per_million_inferences": triple(self.grams_per_million),
            "cost_per_million_inferences": triple(self.cost_per_million),
        }


def footprint(
    joules: float,
    interval: tuple[float, float],
    boundary: str,
    *,
    grid: str | None = None,
    gco2e_per_kwh: float | None = None,
    price_per_kwh: float | None = None,
    currency: str = "",
    pue: float = 1.0,
) -> Footprint:
    """Carbon and cost of inferences that each cost ``joules`` (J, at ``boundary``).

    Args:
        grid: region code or name from the shipped table (exclusive with ``gco2e_per_kwh``).
        gco2e_per_kwh: grid intensity given directly, gCO2e/kWh.
        price_per_kwh: electricity price per kWh (any currency; ``currency`` labels it).
        pue: facility energy / IT energy, >= 1 (data-centre totals; 1.0 counts the boundary only).
    """
    if grid is not None and gco2e_per_kwh is not None:
        raise CarbonInputError("give either --grid REGION or --grid-gco2-per-kwh N, not both")
    if pue < 1.0:
        raise CarbonInputError(f"--pue must be at least 1.0 (facility energy / IT energy), got {pue}")
    for label, value in (("--grid-gco2-per-kwh", gco2e_per_kwh), ("--price-per-kwh", price_per_kwh)):
        if value is not None and value < 0:
            raise CarbonInputError(f"{label} must not be negative, got {value}")
    source = "given by the user"
    if grid is not None:
        g = find_grid(grid)
        gco2e_per_kwh = g.gco2e_per_kwh
        described = f"{g.name} {g.year} average, {g.gco2e_per_kwh:g} gCO2e/kWh"
        source = g.source
    elif gco2e_per_kwh is not None:
        described = f"given: {gco2e_per_kwh:g} gCO2e/kWh"
    else:
        described = "none given"
    return Footprint(
        joules=joules,
        interval=interval,
        pue=pue,
        boundary=boundary,
        gco2e_per_kwh=gco2e_per_kwh,
        grid=described,
        grid_source=source,
        price_per_kwh=price_per_kwh,
        currency=currency,
    )
