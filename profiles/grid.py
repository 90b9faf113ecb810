"""Interpolation in a measured 2-D grid, with a stated rule outside it (pure Python)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

_MEMO_SIZE: Final = 65_536
_CELLS: Final = 1025  # integer x from 0 to 1024 have their x cell precomputed


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
    # Per integer x (x is a batch size or a count of running sequences in every caller):
    # its cell along xs and the fraction into it, so the x half of a lookup is done once.
    _cell: list[int] = field(default_factory=list, compare=False, repr=False)
    _frac: list[float] = field(default_factory=list, compare=False, repr=False)
    _memo1: dict[float, tuple[float, bool]] = field(  # x == 1, keyed by y alone
        default_factory=dict, compare=False, repr=False)
    # Per integer x inside the measured xs: the values interpolated along x at every ys (and
    # the last one again), so a lookup inside the grid is one search along y and one
    # interpolation; empty for an x outside the grid. Routers ask at integer x nearly always.
    _rows: list[list[float]] = field(default_factory=list, compare=False, repr=False)

    def __post_init__(self) -> None:
        xs, n = self.xs, len(self.ys)
        for k in range(_CELLS):
            fx, i = _locate(xs, max(float(k), xs[0]))
            self._cell.append(i)
            self._frac.append(fx)
            if xs[0] <= k <= xs[-1]:
                row = [self._along_x(i, fx, j) for j in range(n)]
                row.append(row[-1])
                self._rows.append(row)
            else:
                self._rows.append([])

    def at(self, x: float, y: float) -> tuple[float, bool]:
        """The value at (x, y) and whether it lies outside the measured grid.

        A named method, not __call__: compiled callers (profiles/compiled.py) call it natively,
        without boxing the arguments and the result. Batch-of-one lookups (x = 1: idle
        backends, the simulator's commonest question, asked again and again for the same
        prompt lengths) are memoised by y. The rest are not: a router's walk asks for a point
        at every event of a busy backend (~6 for a batch of 8), nearly all at contexts no
        earlier request asked for, and a memo's missed lookup (hash a key, insert it) costs
        more than the arithmetic. Integer x inside the grid reads its precomputed row."""
        if x == 1.0:
            hit = self._memo1.get(y)
            if hit is not None:
                return hit
            if len(self._memo1) >= _MEMO_SIZE:
                self._memo1.clear()
            result = self._compute(x, y)
            self._memo1[y] = result
            return result
        return self._compute(x, y)

    def pair(self, x: int, y: float) -> tuple[float, float, bool]:
        """`at(x, y)` and `at(x - 1, y)` (x >= 2) with one search along y, and whether either
        lies outside the grid: a decode step with and without one of its sequences."""
        ys = self.ys
        if 2 <= x < _CELLS and ys[0] <= y <= ys[-1]:
            row, below = self._rows[x], self._rows[x - 1]
            if row and below:  # both inside the grid
                fy, j = _locate(ys, y)
                return (row[j] + (row[j + 1] - row[j]) * fy,
                        below[j] + (below[j + 1] - below[j]) * fy, False)
        fy, j = _locate(ys, max(y, ys[0]))
        with_, outside = self._at_row(x, y, fy, j)
        without, outside_too = self._at_row(x - 1, y, fy, j)
        return with_, without, outside or outside_too

    def _compute(self, x: float, y: float) -> tuple[float, bool]:
        ys = self.ys
        k = int(x)
        if k == x and 0 <= k < _CELLS and ys[0] <= y <= ys[-1]:
            row = self._rows[k]
            if row:  # inside the grid
                fy, j = _locate(ys, y)
                return row[j] + (row[j + 1] - row[j]) * fy, False
        fy, j = _locate(ys, max(y, ys[0]))
        return self._at_row(x, y, fy, j)

    def _at_row(self, x: float, y: float, fy: float, j: int) -> tuple[float, bool]:
        """The value at (x, y), y's cell and fraction given."""
        xs, ys = self.xs, self.ys
        k = int(x)
        if k == x and 0 <= k < _CELLS:
            i, fx = self._cell[k], self._frac[k]
        else:
            fx, i = _locate(xs, max(x, xs[0]))
        value = self._interpolate(i, fx, j, fy)
        if xs[0] <= x <= xs[-1] and ys[0] <= y <= ys[-1]:
            return value, False
        edge = self._bilinear(min(max(x, xs[0]), xs[-1]), min(max(y, ys[0]), ys[-1]))
        return max(value, edge), True

    def _bilinear(self, x: float, y: float) -> float:
        fx, i = _locate(self.xs, x)
        fy, j = _locate(self.ys, y)
        return self._interpolate(i, fx, j, fy)

    def _along_x(self, i: int, fx: float, j: int) -> float:
        """The value at ys[j], fraction fx from xs[i] towards the next x."""
        v = self.values
        i2 = min(i + 1, len(self.xs) - 1)
        return v[i][j] + (v[i2][j] - v[i][j]) * fx

    def _interpolate(self, i: int, fx: float, j: int, fy: float) -> float:
        """Bilinear in cell (i, j) at fractions (fx, fy): along y first, then along x."""
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
    # bisect_right(axis, x) - 1, kept within the cells: a scan, not bisect (profile axes have
    # a handful of points, and compiled, a native loop beats a call out to bisect).
    i = 0
    while i < n - 2 and axis[i + 1] <= x:
        i += 1
    return (x - axis[i]) / (axis[i + 1] - axis[i]), i
