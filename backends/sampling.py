"""Token sampling on logits (pure numpy): greedy, temperature, top-k, top-p, per-request seed."""

from __future__ import annotations

import numpy as np

from backends.interface import SamplingParams


def make_rng(params: SamplingParams) -> np.random.Generator:
    """A per-request generator: seeded requests reproduce their tokens exactly."""
    return np.random.default_rng(params.seed)


def sample(logits: np.ndarray, params: SamplingParams, rng: np.random.Generator) -> int:
    """Pick one token id from a 1-D logits vector."""
    if params.temperature == 0.0:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / params.temperature
    if params.top_k and params.top_k < scaled.shape[0]:
        kth = np.partition(scaled, -params.top_k)[-params.top_k]
        scaled = np.where(scaled < kth, -np.inf, scaled)
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    if params.top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        cumulative = np.cumsum(probs[order])
        # Keep the smallest prefix whose mass reaches top_p (always at least one token).
        keep = int(np.searchsorted(cumulative, params.top_p) + 1)
        kept = order[:keep]
        kept_probs = probs[kept] / probs[kept].sum()
        return int(kept[rng.choice(keep, p=kept_probs)])
    return int(rng.choice(probs.shape[0], p=probs))


def sample_batch(
    logits: np.ndarray, params: list[SamplingParams], rngs: list[np.random.Generator]
) -> list[int]:
    """Pick one token per row of a [batch, vocab] logits array (greedy rows in one argmax)."""
    greedy = np.argmax(logits, axis=-1)
    out = greedy.tolist()
    for i, p in enumerate(params):
        if p.temperature != 0.0:
            out[i] = sample(logits[i], p, rngs[i])
    return out
