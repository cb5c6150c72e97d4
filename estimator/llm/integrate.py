"""Sums of a per-step cost over many generation steps from a few evaluations, with an error bound.

The decode cost at cache length ``p`` (joules or seconds of one step) is, under the energy-roofline prior, a
*convex piecewise-linear* function of ``p``: every kernel's FLOPs and bytes are affine in ``p``, its time is
the maximum of affine terms (compute, memory, launch), energy adds affine dynamic terms and static power
times that time, and a TDP clamp is again a maximum. The exceptions are jumps where a working set stops
fitting in a cache level; refinement localises them (below).

**Quadrature.** ``sum_{p=lo}^{hi} f(p)`` is computed on segments ``[a, b]`` with the midpoint ``m``: the
piecewise-linear interpolant through ``a, m, b`` is summed exactly over the integers (trapezoid sums of a
linear function over integer points are exact). For a convex ``f`` the function lies between that
interpolant and the two secants extended, so the error on ``[a, b]`` is at most

    ``|s2 - s1| * ((m - a)^2 + (b - m)^2) / 2``  with ``s1, s2`` the secant slopes on ``[a, m]``, ``[m, b]``.

Where ``f(a), f(m), f(b)`` are monotone, a monotone ``f`` also gives the bound ``(m - a - 1) |f(m) - f(a)| +
(b - m - 1) |f(b) - f(m)|`` (every value lies between its segment's end values), which holds across a
cache-placement jump, where ``f`` steps up and is not convex. A segment is accepted when the smaller
bound is within its share of the budget, ``rel_tol`` times the trapezoid estimate of the whole sum spread
evenly over the steps; otherwise it is split at ``m``. Linear segments (``s1 == s2``) are exact and stop at
once, so a function linear on the whole range costs 3 evaluations; each kink or jump costs up to about
``log2(range)`` more. The returned bound is the sum of the accepted segments' bounds: it holds for an ``f``
that is convex between jumps and monotone across them (the energy-roofline prior's decode cost is, as the
cache grows), and it is reported, never hidden.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class StepSum:
    """``sum_{p=lo}^{hi} f(p)`` and how it was obtained.

    Attributes:
        total: the sum (units of ``f``).
        error_bound: bound on ``|total - exact sum|`` for convex piecewise-linear ``f`` (units of ``f``).
        evaluations: how many times ``f`` was evaluated.
        points: the lengths where ``f`` was evaluated, ascending.
    """

    total: float
    error_bound: float
    evaluations: int
    points: tuple[int, ...]


def _trapezoid(n_points: int, fa: float, fb: float) -> float:
    """Exact sum of a linear function over ``n_points`` equally spaced integers from fa to fb."""
    return n_points * (fa + fb) / 2.0


def sum_steps(f: Callable[[int], float], lo: int, hi: int, *, rel_tol: float = 1e-4) -> StepSum:
    """``sum_{p=lo}^{hi} f(p)`` by adaptive piecewise-linear quadrature (see the module docstring).

    Args:
        f: cost of one step at length ``p`` (any unit).
        lo, hi: first and last length, inclusive (``hi >= lo``; an empty range is ``hi == lo - 1``).
        rel_tol: a segment is accepted when its error bound is at most this fraction of its sum.
    """
    if hi < lo:
        return StepSum(0.0, 0.0, 0, ())
    values: dict[int, float] = {}

    def value(p: int) -> float:
        if p not in values:
            values[p] = float(f(p))
        return values[p]

    total = 0.0
    bound = 0.0
    # Error budget per step: rel_tol of the trapezoid estimate of the whole sum, shared by length.
    per_step = rel_tol * abs(value(lo) + value(hi)) / 2.0
    stack = [(lo, hi)]
    accepted: list[tuple[int, int, bool]] = []  # (a, b, every point evaluated)
    while stack:
        a, b = stack.pop()
        if b - a <= 2:
            accepted.append((a, b, True))
            for p in range(a, b + 1):
                value(p)
            continue
        m = (a + b) // 2
        fa, fm, fb = value(a), value(m), value(b)
        s1, s2 = (fm - fa) / (m - a), (fb - fm) / (b - m)
        convex = abs(s2 - s1) * ((m - a) ** 2 + (b - m) ** 2) / 2.0
        monotone = (m - a - 1) * abs(fm - fa) + (b - m - 1) * abs(fb - fm)
        seg_bound = min(convex, monotone) if (fa <= fm <= fb or fa >= fm >= fb) else convex
        if seg_bound <= per_step * (b - a):
            accepted.append((a, m, False))
            accepted.append((m, b, False))
            bound += seg_bound
        else:
            stack.append((m, b))
            stack.append((a, m))
    accepted.sort()
    for a, b, every in accepted:
        if every:
            total += sum(values[p] for p in range(a, b + 1))
        else:
            total += _trapezoid(b - a + 1, values[a], values[b])
    # Segments share their end points: each interior junction was counted twice.
    total -= sum(values[b] for _, b, _ in accepted[:-1])
    return StepSum(total, bound, len(values), tuple(sorted(values)))


def sum_steps_exactly(f: Callable[[int], float], lo: int, hi: int) -> float:
    """``sum_{p=lo}^{hi} f(p)`` by evaluating every step (the reference the quadrature is checked against)."""
    return float(sum(f(p) for p in range(lo, hi + 1)))
