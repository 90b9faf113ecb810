"""The running batch's KV cache, kept in preallocated numpy buffers and updated in place.

For decoders whose graph takes the past keys/values and returns only the new tokens' ones
(backends/model/export.py). Layout, per layer and kind: [row capacity, kv_heads, column
capacity, head_dim]; the first `size` rows are the running sequences, in batch order.

* Every row writes its next token at the same column, `write`, so a decode step appends one
  column for the whole batch with one assignment and no copy of the past.
* `mask[r, c] == 1` where row r holds a key at column c. Columns a row does not use (left
  padding, holes, the unused capacity on the right) are 0 and the graph ignores them. Stale
  values there are finite (buffers start zeroed), so masked scores never turn into NaN.
* A joining row (prefilled) takes the next free row and sits right before `write`; if its
  prompt is wider than `write`, `write` moves right and existing rows get a masked hole.
* A leaving row is replaced by the last running row (one row copied, not the batch), so the
  batch order changes: `remove_rows` returns the new order.
* Buffers grow (rows or columns) by reallocation; leading columns no row uses are cut when
  they are worth a copy, and column capacity shrinks back (to `write` + `grow`) once less
  than half of it is needed: decode steps attend over the whole capacity.

`views()` gives what a decode step feeds: the running rows of every buffer and of
`attention_mask` ([rows, capacity + 1]: the mask plus a last column of ones for the token
being decoded); these are contiguous slices, passed to ONNX Runtime without a copy.
Pure numpy: no engine types, testable on its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class KVCache:
    def __init__(self, num_tensors: int, kv_heads: int, head_dim: int, grow: int = 128,
                 rows: int = 8) -> None:
        self.num_tensors = num_tensors  # 2 per layer (key, value)
        self.kv_heads = kv_heads
        self.head_dim = head_dim
        self.grow = grow
        self.size = 0
        self.write = 0
        self.version = 0
        self._alloc(rows, grow)

    def _alloc(self, rows: int, capacity: int) -> None:
        old = getattr(self, "tensors", None)
        old_mask = getattr(self, "attention_mask", None)
        shape = (rows, self.kv_heads, capacity, self.head_dim)
        self.tensors = [np.zeros(shape, dtype=np.float32) for _ in range(self.num_tensors)]
        self.attention_mask = np.zeros((rows, capacity + 1), dtype=np.int64)
        self.attention_mask[:, capacity] = 1
        if old is not None and old_mask is not None and self.size:
            n, w = self.size, self.write
            for buf, prev in zip(self.tensors, old):
                buf[:n, :, :w] = prev[:n, :, :w]
            self.attention_mask[:n, :w] = old_mask[:n, :w]
        self.version += 1

    @property
    def capacity(self) -> int:
        return int(self.attention_mask.shape[1] - 1)

    @property
    def row_capacity(self) -> int:
        return int(self.attention_mask.shape[0])

    @property
    def mask(self) -> np.ndarray:
        return self.attention_mask[: self.size, : self.capacity]

    def views(self) -> tuple[list[np.ndarray], np.ndarray]:
        n = self.size
        return [t[:n] for t in self.tensors], self.attention_mask[:n]

    def append_step(self, new: Sequence[np.ndarray]) -> None:
        """Store one decoded token per row ([rows, kv_heads, 1, head_dim] per tensor)."""
        n, w = self.size, self.write
        for buf, t in zip(self.tensors, new):
            buf[:n, :, w, :] = t[:, :, 0, :]
        self.attention_mask[:n, w] = 1
        self.write = w + 1
        if self.write >= self.capacity:
            self._make_room(0, 0)

    def add_rows(self, new: Sequence[np.ndarray], mask: np.ndarray) -> None:
        """Append prefilled rows: tensors [n, kv_heads, width, head_dim], left-padded mask [n, width]."""
        count, width = mask.shape
        if max(self.write, width) + 1 > self.capacity or self.size + count > self.row_capacity:
            self._make_room(count, width)
        self.write = max(self.write, width)
        lo, hi = self.write - width, self.write
        rows = slice(self.size, self.size + count)
        for buf, t in zip(self.tensors, new):
            buf[rows, :, lo:hi] = t
        self.attention_mask[rows, : self.capacity] = 0
        self.attention_mask[rows, lo:hi] = mask
        self.size += count

    def remove_rows(self, remove: set[int]) -> list[int]:
        """Drop rows; the last running rows fill the gaps. Returns the old index of each row
        now at positions 0, 1, ... (the new batch order)."""
        order = [i for i in range(self.size)]
        keep = self.size - len(remove)
        movers = [i for i in range(keep, self.size) if i not in remove]
        holes = [i for i in sorted(remove) if i < keep]
        for hole, mover in zip(holes, movers):
            for buf in self.tensors:
                buf[hole, :, : self.write] = buf[mover, :, : self.write]
            self.attention_mask[hole, : self.write] = self.attention_mask[mover, : self.write]
            order[hole] = mover
        self.size = keep
        order = order[:keep]
        self._compact()
        return order

    def _compact(self, shrink: bool = True) -> None:
        """Cut leading columns no running row uses, when there are enough to pay the copy;
        give back column capacity the batch no longer needs. A decode step attends over
        every column of the buffers (masked or not), so a capacity left wide by one long
        prompt would slow every later step."""
        if self.size == 0:
            self.write = 0
            if shrink and self.capacity > self.grow:
                self._alloc(self.row_capacity, self.grow)
            return
        used = self.attention_mask[: self.size, : self.write].any(axis=0)
        start = int(np.argmax(used)) if used.any() else self.write
        if start >= max(self.grow, self.write // 4):
            n, w = self.size, self.write
            for buf in self.tensors:
                buf[:n, :, : w - start] = buf[:n, :, start:w].copy()
            self.attention_mask[:n, : w - start] = self.attention_mask[:n, start:w]
            self.attention_mask[:n, w - start : self.capacity] = 0
            self.write = w - start
        if shrink and self.capacity >= 2 * (self.write + self.grow):
            self._alloc(self.row_capacity, self.write + self.grow)

    def _make_room(self, new_rows: int, width: int) -> None:
        """Room for `new_rows` more rows and a write column of at least `width`."""
        self._compact(shrink=False)  # one reallocation below, not a shrink and then a growth
        rows = self.row_capacity
        while rows < self.size + new_rows:
            rows *= 2
        capacity = self.capacity
        while capacity < max(self.write, width) + 1:
            capacity += self.grow
        if (rows, capacity) != (self.row_capacity, self.capacity):
            self._alloc(rows, capacity)


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
