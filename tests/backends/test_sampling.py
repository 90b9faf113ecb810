import numpy as np
import pytest

from backends.errors import InvalidSamplingError
from backends.interface import SamplingParams
from backends.sampling import make_rng, sample, sample_batch


def _logits(seed: int = 0, vocab: int = 100) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(vocab).astype(np.float32) * 3


def test_greedy_is_argmax() -> None:
    logits = _logits()
    p = SamplingParams()
    assert sample(logits, p, make_rng(p)) == int(np.argmax(logits))


def test_seeded_sampling_reproduces_and_seeds_differ() -> None:
    logits = _logits()
    p = SamplingParams(temperature=1.0, seed=7)
    a = [sample(logits, p, rng) for rng in [make_rng(p)] for _ in range(20)]
    b = [sample(logits, p, rng) for rng in [make_rng(p)] for _ in range(20)]
    q = SamplingParams(temperature=1.0, seed=8)
    c = [sample(logits, q, rng) for rng in [make_rng(q)] for _ in range(20)]
    assert a == b
    assert a != c


def test_top_k_one_and_tiny_top_p_are_greedy() -> None:
    logits = _logits(1)
    best = int(np.argmax(logits))
    for p in (SamplingParams(temperature=2.0, top_k=1, seed=0),
              SamplingParams(temperature=2.0, top_p=1e-6, seed=0)):
        rng = make_rng(p)
        assert {sample(logits, p, rng) for _ in range(30)} == {best}


def test_top_p_only_samples_from_the_nucleus() -> None:
    logits = np.full(10, -10.0, dtype=np.float32)
    logits[[2, 5]] = 5.0  # two tokens hold nearly all the mass
    p = SamplingParams(temperature=1.0, top_p=0.9, seed=3)
    rng = make_rng(p)
    assert {sample(logits, p, rng) for _ in range(200)} == {2, 5}


def test_sample_batch_mixes_greedy_and_sampled_rows() -> None:
    logits = np.stack([_logits(i) for i in range(3)])
    params = [SamplingParams(), SamplingParams(temperature=1.0, seed=1), SamplingParams()]
    out = sample_batch(logits, params, [make_rng(p) for p in params])
    assert out[0] == int(np.argmax(logits[0])) and out[2] == int(np.argmax(logits[2]))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"seed": "x"}, "seed"),
        ({"stop": ("",)}, "stop"),
        ({"stop_token_ids": (-1,)}, "stop_token_ids"),
    ],
)
def test_validation_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(InvalidSamplingError) as info:
        SamplingParams(**kwargs).validate()
    assert info.value.field == field
    assert field in str(info.value)
