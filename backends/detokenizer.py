"""Incremental detokenization with stop strings, shared by engines that decode text themselves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class Decoder(Protocol):
    def decode(self, ids: list[int]) -> str: ...


_WINDOW = 6  # tokens decoded before the unread ones, so merges across the boundary are right


@dataclass
class IncrementalDetokenizer:
    """Turns a growing list of token ids into text deltas.

    Byte-level BPE can split one character over several tokens: text ending in U+FFFD is
    held back until the character completes. With stop strings, text that could still
    become a stop string is held back too, and a found stop string ends the text before it.
    """

    decoder: Decoder
    stop: tuple[str, ...] = ()
    token_ids: list[int] = field(default_factory=list)
    text: str = ""  # all text produced so far (including held-back text)
    emitted: int = 0  # characters of `text` already handed out
    _prefix_offset: int = 0
    _read_offset: int = 0
    stopped: bool = False

    def add(self, token_id: int) -> str:
        """Append one token; return the text that may now be emitted."""
        self.token_ids.append(token_id)
        prefix = self.decoder.decode(self.token_ids[self._prefix_offset : self._read_offset])
        full = self.decoder.decode(self.token_ids[self._prefix_offset :])
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            self.text += full[len(prefix) :]
            self._read_offset = len(self.token_ids)
            self._prefix_offset = max(0, self._read_offset - _WINDOW)
        return self._release()

    def _release(self) -> str:
        end = len(self.text)
        if self.stop:
            # Search only where a new match can start.
            longest = max(len(s) for s in self.stop)
            start = max(0, self.emitted - longest + 1)
            hits = [i for s in self.stop if (i := self.text.find(s, start)) >= 0]
            if hits:
                self.stopped = True
                self.text = self.text[: min(hits)]
                end = len(self.text)
            else:
                end -= _partial_stop_suffix(self.text, self.stop)
        end = max(end, self.emitted)
        delta = self.text[self.emitted : end]
        self.emitted = end
        return delta

    def flush(self) -> str:
        """At the end of a request: release whatever was held back for a stop string."""
        if self.stopped:
            return ""
        delta = self.text[self.emitted :]
        self.emitted = len(self.text)
        return delta


def _partial_stop_suffix(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of a stop string."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best
