"""The tokenizer of a built model (HF `tokenizer.json`), without transformers or torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class Tokenizer:
    def __init__(self, model_dir: Path) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        self._tok = HFTokenizer.from_file(str(model_dir / "tokenizer.json"))
        config = json.loads((model_dir / "tokenizer_config.json").read_text())
        self.chat_template: str | None = config.get("chat_template")
        self.eos_token_id: int | None = self._tok.token_to_id(config.get("eos_token", ""))
        self.vocab_size: int = self._tok.get_vocab_size()
        self._compiled: Any = None

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: list[int]) -> str:
        return str(self._tok.decode(ids, skip_special_tokens=True))

    def apply_chat_template(
        self, messages: list[dict[str, Any]], add_generation_prompt: bool = True
    ) -> str:
        if not self.chat_template:
            raise ValueError("this model has no chat template")
        return str(self._template().render(messages=messages,
                                           add_generation_prompt=add_generation_prompt))

    def _template(self) -> Any:
        """The chat template, compiled once (compiling it took longer than rendering it)."""
        if self._compiled is None:
            import jinja2

            env = jinja2.Environment(autoescape=False, keep_trailing_newline=True)
            self._compiled = env.from_string(self.chat_template or "")
        return self._compiled
