"""The running batch's KV cache, kept in preallocated numpy buffers and updated in place.

For decoders whose graph takes the past keys/values and returns only the new tokens' ones
(backends/model/export.py). Layout, per layer and kind: [rows, kv_heads, capacity, head_dim].

* Every row writes its next token at the same column, `write`, so a decode step appends one
  column for the whole batch with one assignment and no copy of the past.
* `mask[r, c] == 1` where row r holds a key at column c. Columns a row does not use (left
  padding, holes, the unused capacity on the right) are 0 and the graph ignores them.
* A joining row (prefilled) is placed right before `write`; if its prompt is wider than
  `write`, `write` moves right and existing rows get a masked hole.
* Rows leaving trigger one compacting copy that also drops leading columns no row uses.
* When `write` reaches the capacity, the buffers grow by `grow` columns.

`attention_mask` (shape [rows, capacity + 1]) is what a decode step feeds: the mask plus a
last column of ones for the token being decoded. `version` changes whenever the buffers are
reallocated, so callers may cache views or device handles of them until then.
Pure numpy: no engine types, testable on its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class KVCache:
    def __init__(self, num_tensors: int, kv_heads: int, head_dim: int, grow: int = 64) -> None:
        self.num_tensors = num_tensors  # 2 per layer (key, value)
        self.kv_heads = kv_heads
        self.head_dim = head_dim
        self.grow = grow
        self.write = 0
        self.version = 0
        self._alloc(0, grow)

    def _alloc(self, rows: int, capacity: int) -> None:
        shape = (rows, self.kv_heads, capacity, self.head_dim)
        self.tensors = [np.zeros(shape, dtype=np.float32) for _ in range(self.num_tensors)]
        self.attention_mask = np.zeros((rows, capacity + 1), dtype=np.int64)
        self.attention_mask[:, capacity] = 1
        self.version += 1

    @property
    def size(self) -> int:
        return int(self.attention_mask.shape[0])

    @property
    def capacity(self) -> int:
        return int(self.attention_mask.shape[1] - 1)

    @property
    def mask(self) -> np.ndarray:
        return self.attention_mask[:, : self.capacity]

    def append_step(self, new: Sequence[np.ndarray]) -> None:
        """Store one decoded token per row ([rows, kv_heads, 1, head_dim] per tensor)."""
        w = self.write
        for buf, t in zip(self.tensors, new):
            buf[:, :, w, :] = t[:, :, 0, :]
        self.attention_mask[:, w] = 1
        self.write = w + 1
        if self.write >= self.capacity:
            self._resize(list(range(self.size)), self.capacity + self.grow, start=0)

    def add_rows(self, new: Sequence[np.ndarray], mask: np.ndarray) -> None:
        """Append prefilled rows: tensors [n, kv_heads, width, head_dim], left-padded mask [n, width]."""
        n, width = mask.shape
        write = max(self.write, width)
        capacity = max(self.capacity, write + 1)
        if capacity != self.capacity:
            capacity += self.grow
        old_rows = self.size
        old_tensors, old_mask = self.tensors, self.mask
        self._alloc(old_rows + n, capacity)
        lo = write - width
        for buf, old, t in zip(self.tensors, old_tensors, new):
            buf[:old_rows, :, : old.shape[2]] = old
            buf[old_rows:, :, lo:write] = t
        self.attention_mask[:old_rows, : old_mask.shape[1]] = old_mask
        self.attention_mask[old_rows:, lo:write] = mask
        self.write = write

    def keep_rows(self, rows: Sequence[int]) -> None:
        """Keep only `rows` (in this order); drop leading columns that no kept row uses."""
        mask = self.mask[list(rows)]
        used = mask.any(axis=0)
        start = int(np.argmax(used)) if used.any() else self.write
        self._resize(rows, self.write - start + self.grow, start)

    def _resize(self, rows: Sequence[int], capacity: int, start: int) -> None:
        idx = np.asarray(rows, dtype=np.int64)
        width = self.write - start
        old_tensors, old_mask = self.tensors, self.mask
        self._alloc(len(idx), capacity)
        for buf, old in zip(self.tensors, old_tensors):
            buf[:, :, :width] = old[idx, :, start : self.write]
        self.attention_mask[:, :width] = old_mask[idx, start : self.write]
        self.write = width


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
