import numpy as np

from backends.kv_batch import KVBatch, left_pad


def test_left_pad_positions_and_mask() -> None:
    ids, mask, pos = left_pad([[5, 6, 7], [9]])
    assert ids.tolist() == [[5, 6, 7], [0, 0, 9]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert pos.tolist() == [[0, 1, 2], [0, 0, 0]]


def _rows(n: int, width: int, value: float) -> list[np.ndarray]:
    return [np.full((n, 1, width, 2), value, dtype=np.float32) for _ in range(2)]


def test_append_pads_the_narrower_side_and_keep_trims() -> None:
    b = KVBatch(2, 1, 2)
    b.append(_rows(1, 2, 1.0), np.ones((1, 2), dtype=np.int64), np.asarray)
    b.append(_rows(1, 4, 2.0), np.ones((1, 4), dtype=np.int64), np.asarray)
    assert (b.size, b.width) == (2, 4)
    assert b.mask.tolist() == [[0, 0, 1, 1], [1, 1, 1, 1]]
    assert b.tensors[0][0, 0, :, 0].tolist() == [0, 0, 1, 1]
    b.keep([0], np.asarray)  # the wide row left: its leading columns go
    assert (b.size, b.width) == (1, 2)
    assert b.tensors[1][0, 0, :, 0].tolist() == [1, 1]
    b.keep([], np.asarray)
    assert (b.size, b.width) == (0, 0)
