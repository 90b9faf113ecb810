import pytest

from profiles.grid import Grid2D

GRID = Grid2D((1.0, 2.0, 4.0), (10.0, 20.0), ((1.0, 2.0), (3.0, 4.0), (5.0, 8.0)))


def test_exact_points_and_bilinear_inside() -> None:
    assert GRID.at(2, 20) == (4.0, False)
    value, outside = GRID.at(1.5, 15)
    assert value == pytest.approx(2.5) and not outside


def test_above_the_grid_extends_the_last_slope_and_flags() -> None:
    value, outside = GRID.at(8, 20)  # slope 4/2 per unit of x between x=2 and x=4 at y=20
    assert outside and value == pytest.approx(16.0)
    value, outside = GRID.at(4, 40)  # along y: slope (8-5)/10 per token, 20 tokens past the edge
    assert outside and value == pytest.approx(14.0)


def test_below_the_grid_clamps_to_the_edge() -> None:
    assert GRID.at(0.5, 5) == (1.0, True)


def test_a_falling_slope_never_goes_below_the_edge() -> None:
    noisy = Grid2D((1.0, 2.0), (10.0,), ((5.0,), (4.0,)))
    value, outside = noisy.at(10, 10)
    assert outside and value == pytest.approx(4.0)


def test_the_batch_of_one_memo_answers_as_the_grid_does() -> None:
    grid = Grid2D((1.0, 2.0), (10.0, 20.0), ((1.0, 2.0), (3.0, 4.0)))
    for _ in range(2):  # computed, then memoised
        assert grid.at(1, 15) == (1.5, False)
        assert grid.at(1.0, 30) == (3.0, True)
        assert grid.at(2, 15) == (3.5, False)


def test_pair_answers_as_two_lookups_do() -> None:
    for x, y in ((2, 15.0), (3, 12.5), (4, 40.0), (8, 5.0), (2, 20.0)):
        with_, without, outside = GRID.pair(x, y)
        assert (with_, without) == (GRID.at(x, y)[0], GRID.at(x - 1, y)[0])
        assert outside == (GRID.at(x, y)[1] or GRID.at(x - 1, y)[1])


def test_integer_x_from_the_row_table_is_the_bilinear_value() -> None:
    # Inside the grid an integer x reads its precomputed row (interpolated along x first):
    # the same bilinear value to rounding, on a grid whose x cells span several integers.
    grid = Grid2D((1.0, 4.0, 16.0), (48.0, 100.0, 1040.0),
                  ((1.5, 2.0, 9.0), (2.5, 3.1, 12.0), (6.0, 7.5, 30.0)))
    for x in range(1, 17):
        for y in (48.0, 60.5, 100.0, 777.0, 1040.0):
            value, outside = grid.at(x, y)
            assert not outside and value == pytest.approx(grid._bilinear(float(x), y), rel=1e-12)
            if x >= 2:
                with_, without, out = grid.pair(x, y)
                assert not out and (with_, without) == (value, grid.at(x - 1, y)[0])
    for x, y in ((17, 60.0), (8, 2000.0), (8, 10.0)):  # outside: the stated rule, flagged
        assert grid.at(x, y)[1] and grid.pair(x, y)[2]
