"""Interpolation in a measured 2-D grid, with a stated rule outside it (pure Python)."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field

_MEMO_SIZE = 65_536


@dataclass(frozen=True)
class Grid2D:
    """Values measured at every (x, y) of two increasing axes: `values[i][j]` at (xs[i], ys[j]).

    Inside the grid: bilinear interpolation. Outside it (flagged as extrapolated):
    * below the smallest measured x or y: the value at that edge (times are never
      extrapolated downward);
    * above the largest: linear along that axis with the slope of the last two measured
      points, never below the value at the edge (noise cannot make more work cheaper).
    """

    xs: tuple[float, ...]
    ys: tuple[float, ...]
    values: tuple[tuple[float, ...], ...]
    _memo: dict[tuple[float, float], tuple[float, bool]] = field(
        default_factory=dict, compare=False, repr=False)
    _memo1: dict[float, tuple[float, bool]] = field(  # x == 1, keyed by y alone
        default_factory=dict, compare=False, repr=False)

    def at(self, x: float, y: float) -> tuple[float, bool]:
        """The value at (x, y) and whether it lies outside the measured grid.

        A named method, not __call__: compiled callers (profiles/compiled.py) call it natively,
        without boxing the arguments and the result. Memoised: the router and the simulator
        ask for the same few points again and again, most of them at x = 1 (a batch of one),
        which has its own memo keyed by y alone (no key tuple to build, hash and compare)."""
        if x == 1.0:
            hit = self._memo1.get(y)
            if hit is not None:
                return hit
            if len(self._memo1) >= _MEMO_SIZE:
                self._memo1.clear()
            result = self._compute(x, y)
            self._memo1[y] = result
            return result
        hit = self._memo.get((x, y))
        if hit is not None:
            return hit
        if len(self._memo) >= _MEMO_SIZE:
            self._memo.clear()
        result = self._compute(x, y)
        self._memo[(x, y)] = result
        return result

    def _compute(self, x: float, y: float) -> tuple[float, bool]:
        outside = not (self.xs[0] <= x <= self.xs[-1] and self.ys[0] <= y <= self.ys[-1])
        x, y = max(x, self.xs[0]), max(y, self.ys[0])
        value = self._bilinear(x, y)
        if outside:
            edge = self._bilinear(min(x, self.xs[-1]), min(y, self.ys[-1]))
            value = max(value, edge)
        return value, outside

    def _bilinear(self, x: float, y: float) -> float:
        fx, i = _locate(self.xs, x)
        fy, j = _locate(self.ys, y)
        v = self.values
        i2, j2 = min(i + 1, len(self.xs) - 1), min(j + 1, len(self.ys) - 1)
        left = v[i][j] + (v[i][j2] - v[i][j]) * fy
        right = v[i2][j] + (v[i2][j2] - v[i2][j]) * fy
        return left + (right - left) * fx


def _locate(axis: Sequence[float], x: float) -> tuple[float, int]:
    """(fraction from axis[i] towards axis[i+1], i); fractions > 1 extrapolate linearly."""
    n = len(axis)
    if n == 1:
        return 0.0, 0
    i = bisect_right(axis, x) - 1
    i = 0 if i < 0 else n - 2 if i > n - 2 else i
    return (x - axis[i]) / (axis[i + 1] - axis[i]), i
