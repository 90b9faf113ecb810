"""The running batch's KV cache for engines whose decoder takes and returns whole KV tensors.

Rows are left-padded: row r's real tokens are the last `lengths[r]` columns and
`mask[r]` is 1 exactly there. New rows join by padding the narrower side on the left;
finished rows leave by row selection, after which all-padding leading columns are cut.
Pure numpy: no engine types, testable on its own.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np


class KVBatch:
    def __init__(self, num_tensors: int, kv_heads: int, head_dim: int) -> None:
        self.num_tensors = num_tensors  # 2 per layer (key, value)
        self.kv_heads = kv_heads
        self.head_dim = head_dim
        self.tensors: list[Any] = [self._empty(0, 0) for _ in range(num_tensors)]
        self.mask = np.zeros((0, 0), dtype=np.int64)

    def _empty(self, rows: int, width: int) -> np.ndarray:
        return np.zeros((rows, self.kv_heads, width, self.head_dim), dtype=np.float32)

    @property
    def size(self) -> int:
        return int(self.mask.shape[0])

    @property
    def width(self) -> int:
        return int(self.mask.shape[1])

    def numpy_tensors(self, to_numpy: Callable[[Any], np.ndarray]) -> list[np.ndarray]:
        self.tensors = [t if isinstance(t, np.ndarray) else to_numpy(t) for t in self.tensors]
        return self.tensors

    def set_step_output(self, tensors: Sequence[Any], mask: np.ndarray) -> None:
        """After a decode step: the engine's present tensors (any array type) and new mask."""
        self.tensors = list(tensors)
        self.mask = mask

    def append(
        self, tensors: Sequence[np.ndarray], mask: np.ndarray, to_numpy: Callable[[Any], np.ndarray]
    ) -> None:
        """Add rows (already prefilled) with their KV tensors and left-padded mask."""
        old = self.numpy_tensors(to_numpy)
        width = max(self.width, mask.shape[1])
        self.tensors = [
            np.concatenate([_pad_left(a, width, axis=2), _pad_left(b, width, axis=2)], axis=0)
            for a, b in zip(old, tensors)
        ]
        self.mask = np.concatenate(
            [_pad_left(self.mask, width, axis=1), _pad_left(mask, width, axis=1)], axis=0
        )

    def keep(self, rows: Sequence[int], to_numpy: Callable[[Any], np.ndarray]) -> None:
        """Keep only `rows` (in this order); cut leading columns that are padding everywhere."""
        idx = np.asarray(rows, dtype=np.int64)
        mask = self.mask[idx]
        used = mask.any(axis=0)
        start = int(np.argmax(used)) if used.any() else mask.shape[1]
        self.mask = np.ascontiguousarray(mask[:, start:])
        self.tensors = [
            np.ascontiguousarray(t[idx, :, start:, :]) for t in self.numpy_tensors(to_numpy)
        ]


def _pad_left(a: np.ndarray, width: int, axis: int) -> np.ndarray:
    missing = width - a.shape[axis]
    if missing == 0:
        return a
    pad = [(0, 0)] * a.ndim
    pad[axis] = (missing, 0)
    return np.pad(a, pad)


def left_pad(rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token rows -> (input_ids, attention_mask, position_ids), left-padded to one width."""
    width = max(len(r) for r in rows)
    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = r
        mask[i, width - len(r) :] = 1
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    return ids, mask, positions
