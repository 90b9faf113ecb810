import numpy as np

from backends.kv_cache import KVCache, left_pad


def test_left_pad_positions_and_mask() -> None:
    ids, mask, pos = left_pad([[5, 6, 7], [9]])
    assert ids.tolist() == [[5, 6, 7], [0, 0, 9]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert pos.tolist() == [[0, 1, 2], [0, 0, 0]]


def _kv(n: int, width: int, value: float) -> list[np.ndarray]:
    return [np.full((n, 1, width, 2), value, dtype=np.float32) for _ in range(2)]


def _col(cache: KVCache, row: int) -> list[float]:
    return cache.tensors[0][row, 0, : cache.write, 0].tolist()


def test_rows_join_before_the_write_column_and_steps_append_in_place() -> None:
    c = KVCache(2, 1, 2, grow=8)
    c.add_rows(_kv(1, 2, 1.0), np.ones((1, 2), dtype=np.int64))
    assert (c.size, c.write) == (1, 2)
    c.add_rows(_kv(1, 3, 2.0), np.array([[0, 1, 1]]))  # wider: the old row gets a hole
    assert c.write == 3
    assert c.mask[:, :3].tolist() == [[1, 1, 0], [0, 1, 1]]
    assert _col(c, 0) == [1, 1, 0] and _col(c, 1) == [2, 2, 2]
    version = c.version
    c.append_step(_kv(2, 1, 5.0))
    assert c.version == version  # no reallocation: written in place
    assert c.write == 4 and c.mask[:, 3].tolist() == [1, 1]
    past, mask = c.views()
    assert past[0].shape[0] == 2 and past[0].flags["C_CONTIGUOUS"]
    assert mask[:, -1].tolist() == [1, 1]  # the column for the token being decoded


def test_growth_keeps_the_data() -> None:
    c = KVCache(2, 1, 2, grow=2, rows=1)
    c.add_rows(_kv(1, 1, 1.0), np.ones((1, 1), dtype=np.int64))
    for step in range(5):
        c.append_step(_kv(1, 1, float(step + 2)))
    assert c.capacity > c.write == 6
    assert _col(c, 0) == [1, 2, 3, 4, 5, 6]
    c.add_rows(_kv(2, 3, 9.0), np.ones((2, 3), dtype=np.int64))  # rows grow too
    assert c.size == 3 and c.row_capacity >= 3
    assert _col(c, 0) == [1, 2, 3, 4, 5, 6] and _col(c, 2) == [0, 0, 0, 9, 9, 9]


def test_remove_rows_moves_the_last_rows_into_the_gaps() -> None:
    c = KVCache(2, 1, 2, grow=4)
    for v in (1.0, 2.0, 3.0, 4.0):
        c.add_rows(_kv(1, 2, v), np.ones((1, 2), dtype=np.int64))
    order = c.remove_rows({0, 2})
    assert order == [3, 1]  # old row 3 took row 0's place
    assert c.size == 2 and _col(c, 0) == [4, 4] and _col(c, 1) == [2, 2]
    assert c.remove_rows({0, 1}) == [] and (c.size, c.write) == (0, 0)


def test_leading_columns_nobody_uses_are_cut() -> None:
    c = KVCache(2, 1, 2, grow=2)
    c.add_rows(_kv(1, 6, 1.0), np.ones((1, 6), dtype=np.int64))
    c.add_rows(_kv(1, 2, 2.0), np.ones((1, 2), dtype=np.int64))
    order = c.remove_rows({0})  # the long row left: 4 leading columns are unused
    assert order == [1]
    assert (c.size, c.write) == (1, 2)
    assert _col(c, 0) == [2, 2] and c.mask[0, :2].tolist() == [1, 1]
    assert not c.mask[0, 2:].any()


def test_capacity_shrinks_back_after_a_long_prompt_leaves() -> None:
    """Decode steps attend over every column of the buffers: one long prompt must not leave
    them wide for the rest of the engine's life."""
    c = KVCache(2, 1, 2, grow=4)
    c.add_rows(_kv(1, 40, 1.0), np.ones((1, 40), dtype=np.int64))
    c.add_rows(_kv(1, 3, 2.0), np.ones((1, 3), dtype=np.int64))
    assert c.capacity >= 41
    c.remove_rows({0})  # the long row leaves: the short one needs 3 columns + room to grow
    assert (c.size, c.write) == (1, 3) and c.capacity == 3 + 4
    assert _col(c, 0) == [2, 2, 2] and c.mask[0].tolist() == [1, 1, 1, 0, 0, 0, 0]
    past, mask = c.views()
    assert past[0].shape[2] == 7 and mask.shape == (1, 8) and past[0].flags["C_CONTIGUOUS"]
    c.append_step(_kv(1, 1, 5.0))
    assert _col(c, 0) == [2, 2, 2, 5]
    c.remove_rows({0})  # empty: back to the initial width
    assert (c.size, c.write, c.capacity) == (0, 0, 4)
