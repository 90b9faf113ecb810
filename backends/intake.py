"""Request checks every engine (and the ingress) makes before generating: typed errors that
name the field, the same wording everywhere."""

from __future__ import annotations

from collections.abc import Sequence

from backends.errors import EmptyPromptError, PromptTooLongError, UnknownTokenError
from backends.interface import SamplingParams


def check_token_ids(ids: Sequence[object], vocab_size: int, field: str = "prompt") -> None:
    bad = [t for t in ids
           if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < vocab_size]
    if bad:
        what = "prompt token id" if field == "prompt" else "stop token id"
        raise UnknownTokenError(
            f"{what} {bad[0]!r} is outside the vocabulary [0, {vocab_size})", field)


def check_lengths(prompt_tokens: int, max_tokens: int, max_model_len: int) -> None:
    if prompt_tokens == 0:
        raise EmptyPromptError("the prompt is empty; give at least one token", "prompt")
    if prompt_tokens >= max_model_len:
        raise PromptTooLongError(
            f"the prompt has {prompt_tokens} tokens but this model's context is "
            f"{max_model_len} tokens (prompt + max_tokens must fit); shorten the prompt",
            "prompt")
    if prompt_tokens + max_tokens > max_model_len:
        raise PromptTooLongError(
            f"prompt ({prompt_tokens} tokens) + max_tokens ({max_tokens}) exceeds the context "
            f"of {max_model_len} tokens; lower max_tokens to at most "
            f"{max_model_len - prompt_tokens}", "max_tokens")


def check_request(ids: Sequence[int], params: SamplingParams, max_model_len: int,
                  vocab_size: int) -> None:
    """Sampling parameters, lengths and stop tokens of a tokenized request."""
    params.validate()
    check_lengths(len(ids), params.max_tokens, max_model_len)
    check_token_ids(params.stop_token_ids, vocab_size, "stop_token_ids")
