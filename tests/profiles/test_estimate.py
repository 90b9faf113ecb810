import pytest

from backends.errors import ConfigError
from profiles.estimate import KNOWN_ACCELERATORS, estimate_profile
from profiles.latency import BackendLoad, LatencyModel, RequestShape

MANIFEST = {
    "name": "costroute-llama-small",
    "checksum": "c" * 64,
    "num_parameters": 108_769_536,
    "recipe": {"num_hidden_layers": 14, "hidden_size": 768, "num_attention_heads": 12,
               "num_key_value_heads": 4, "max_position_embeddings": 2048},
}


def test_decode_is_memory_bound_at_batch_one() -> None:
    t = estimate_profile(accelerator="nvidia-h100-sxm", manifest=MANIFEST)
    weights = 108_769_536 * 2
    expected_ms = weights / (3350e9 * 0.7) * 1e3
    assert t.decode.ms[0][0] == pytest.approx(expected_ms, rel=0.05)
    assert t.kind == "estimated" and "ESTIMATED" in t.notes["label"]


def test_faster_memory_means_faster_decode() -> None:
    h100 = LatencyModel(estimate_profile(accelerator="nvidia-h100-sxm", manifest=MANIFEST))
    l4 = LatencyModel(estimate_profile(accelerator="nvidia-l4", manifest=MANIFEST))
    req = RequestShape(256, 128)
    assert h100.predict(req, BackendLoad()).tpot_ms < l4.predict(req, BackendLoad()).tpot_ms


def test_all_shipped_accelerators_estimate() -> None:
    for name in KNOWN_ACCELERATORS:
        assert estimate_profile(accelerator=name, manifest=MANIFEST).capacity["kv_tokens"] > 0


def test_unknown_accelerator_needs_figures() -> None:
    with pytest.raises(ConfigError, match="--bandwidth-gbs"):
        estimate_profile(accelerator="ascend-910b", manifest=MANIFEST)
    t = estimate_profile(accelerator="ascend-910b", manifest=MANIFEST, bandwidth_gbs=1600,
                         tflops=300, memory_gib=64)
    assert t.hardware["source"] == "user-supplied figures"
