"""A deterministic text corpus for training the tokenizer.

Generated from a fixed word list with Python's Mersenne Twister (stable across Python
versions for `random()`), so every machine trains the same tokenizer. Prose, code-like
lines, numbers and some non-ASCII text, so the tokenizer sees what prompts contain.
"""

from __future__ import annotations

import random

_WORDS = ["the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "with", "was", "on", "be", "by", "at", "this", "are", "from", "or", "an", "have", "not", "which", "but", "all", "were", "when", "we", "there", "can", "more", "one", "their", "has", "been", "if", "will", "would", "about", "so", "what", "up", "out", "them", "some", "other", "into", "time", "only", "could", "new", "these", "two", "may", "first", "then", "do", "any", "like", "my", "now", "over", "such", "our", "man", "me", "even", "most", "made", "after", "also", "did", "many", "before", "must", "through", "back", "years", "where", "much", "your", "way", "well", "down", "should", "because", "each", "just", "those", "people", "how", "too", "little", "state", "good", "very", "make", "world", "still", "own", "see", "men", "work", "long", "get", "here", "between", "both", "life", "being", "under", "never", "day", "same", "another", "know", "while", "last", "might", "us", "great", "old", "year", "off", "come", "since", "against", "go", "came", "right", "used", "take", "three", "request", "token", "model", "latency", "cost", "price", "budget", "router", "backend", "accelerator", "throughput", "queue", "batch", "replica", "cluster", "serve", "deploy", "profile", "memory", "bandwidth", "compute", "kernel", "tensor", "matrix", "vector", "cache", "prefill", "decode", "stream", "answer", "question", "system", "user", "assistant", "please", "thank", "hello", "world", "reason", "because", "first", "second", "minute", "hour", "second", "millisecond", "dollar", "cent", "percent", "rate", "load", "capacity", "python", "function", "return", "value", "class", "import", "error", "string", "number", "list", "table", "file"]

_PUNCT = [".", ".", ".", ",", ",", "?", "!", ";", ":"]
_UNICODE = ["café", "naïve", "über", "señor", "東京", "数据", "ÿ", "€", "—", "→", "✓", "π"]
_CODE = [
    "def {w}({v}):\n    return {v} + {n}\n",
    "for {v} in range({n}):\n    print({v})\n",
    "if {v} > {n}:\n    {w} = {v} * 2\n",
    "{w} = [{n}, {n2}, {n3}]\n",
    '{{"{w}": {n}, "{v}": "{w}"}}\n',
]


def generate_corpus(seed: int, n_sentences: int = 6000) -> list[str]:
    rng = random.Random(seed)
    lines: list[str] = []
    for _ in range(n_sentences):
        kind = rng.random()
        if kind < 0.12:
            tpl = _CODE[int(rng.random() * len(_CODE))]
            lines.append(
                tpl.format(
                    w=_pick(rng, _WORDS),
                    v=_pick(rng, ["x", "y", "i", "n", "item", "value", "total"]),
                    n=int(rng.random() * 1000),
                    n2=int(rng.random() * 100),
                    n3=int(rng.random() * 10),
                )
            )
            continue
        words = [_pick(rng, _WORDS) for _ in range(3 + int(rng.random() * 14))]
        if rng.random() < 0.15:
            words.insert(int(rng.random() * len(words)), str(int(rng.random() * 10000)))
        if rng.random() < 0.08:
            words.insert(int(rng.random() * len(words)), _pick(rng, _UNICODE))
        sentence = " ".join(words)
        lines.append(sentence[0].upper() + sentence[1:] + _pick(rng, _PUNCT))
    return lines


def _pick(rng: random.Random, items: list[str]) -> str:
    return items[int(rng.random() * len(items))]
