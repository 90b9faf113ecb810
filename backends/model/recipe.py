"""The recipe of the project's own model: sizes, seed and the version that keys the cache."""

from __future__ import annotations

from dataclasses import asdict, dataclass

# Bump when anything that changes the built files changes (weights, tokenizer, export).
RECIPE_VERSION = 2


@dataclass(frozen=True)
class ModelRecipe:
    size: str
    vocab_size: int  # target for tokenizer training; the model uses the trained size
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    seed: int = 20261128
    # Weight scales. The output head is scaled up so that greedy decisions have clear
    # margins: fp32 engines that sum in different orders still pick the same token.
    init_std: float = 0.02
    lm_head_std: float = 0.5

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


RECIPES: dict[str, ModelRecipe] = {
    # ~4M parameters: tests and the default CPU fleet.
    "tiny": ModelRecipe(
        size="tiny",
        vocab_size=2048,
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
    ),
    # ~109M parameters (the trained vocabulary is ~2.7k): decode is memory-bound, like a real LLM. Benchmarks.
    "small": ModelRecipe(
        size="small",
        vocab_size=8192,
        hidden_size=768,
        intermediate_size=2560,
        num_hidden_layers=14,
        num_attention_heads=12,
        num_key_value_heads=4,
        max_position_embeddings=2048,
    ),
}
