"""Build the project's model deterministically: tokenizer, HF weights, ONNX decoder, manifest.

Layout of a built model directory:
    config.json, generation_config.json      HF Llama config (vLLM and transformers load it)
    model.safetensors                        fp32 weights, HF names
    tokenizer.json, tokenizer_config.json    byte-level BPE trained here, with a chat template
    onnx/model.onnx                          decoder with KV cache (see export.py)
    manifest.json                            recipe, sizes, parameter count, checksums

Weights come from numpy's PCG64 with a fixed seed; the tokenizer is trained on a generated
corpus (corpus.py). Two builds give byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from backends.errors import ConfigError, ModelNotFoundError
from backends.model.recipe import RECIPE_VERSION, RECIPES, ModelRecipe

SPECIAL_TOKENS = ["<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
BOS, EOS, PAD = "<s>", "</s>", "<pad>"
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
HF_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
)
ONNX_FILE = "onnx/model.onnx"


def costroute_home() -> Path:
    return Path(os.environ.get("COSTROUTE_HOME", Path.home() / ".cache" / "costroute"))


def default_model_dir(size: str) -> Path:
    return costroute_home() / "models" / f"costroute-llama-{size}"


def get_recipe(size: str) -> ModelRecipe:
    try:
        return RECIPES[size]
    except KeyError:
        raise ConfigError(
            f"unknown model size {size!r}; choose one of {sorted(RECIPES)}", "size"
        ) from None


def resolve_model(name_or_path: str) -> Path:
    """A size name ('tiny', 'small') or a directory; the model must already be built."""
    path = default_model_dir(name_or_path) if name_or_path in RECIPES else Path(name_or_path)
    manifest = path / "manifest.json"
    if not manifest.is_file():
        hint = (
            f"run `costroute model build --size {name_or_path}`"
            if name_or_path in RECIPES
            else "pass a directory made by `costroute model build`"
        )
        raise ModelNotFoundError(f"no built model at {path} (manifest.json missing): {hint}")
    return path


def read_manifest(model_dir: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((model_dir / "manifest.json").read_text())


def build_model(
    size: str = "tiny",
    out: Path | None = None,
    force: bool = False,
    log: Callable[[str], None] = lambda _: None,
) -> Path:
    """Build (or reuse) the model of `size` in `out` (default: the cache). Returns the dir."""
    recipe = get_recipe(size)
    out = Path(out) if out is not None else default_model_dir(size)
    if not force and _matches(out, recipe):
        log(f"model {size} already built at {out} (manifest matches); reusing it")
        return out
    started = time.monotonic()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        log(f"training tokenizer (target vocab {recipe.vocab_size})")
        vocab_size = _write_tokenizer(recipe, tmp)
        log(f"generating weights (seed {recipe.seed}, vocab {vocab_size})")
        weights = make_weights(recipe, vocab_size)
        _write_hf(recipe, vocab_size, weights, tmp)
        log("exporting ONNX decoder (torch.onnx dynamo exporter)")
        (tmp / "onnx").mkdir()
        from backends.model.export import export_onnx

        export_onnx(recipe, vocab_size, weights, tmp / ONNX_FILE)
        manifest = _manifest(recipe, vocab_size, weights, tmp)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    log(f"built {size} ({manifest['num_parameters']:,} parameters) at {out} "
        f"in {time.monotonic() - started:.1f}s")
    return out


def build_code_hash() -> str:
    """Hash of the code that writes the model: a cached build from other code is rebuilt."""
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for name in ("build.py", "export.py", "corpus.py", "recipe.py"):
        digest.update((here / name).read_bytes())
    return digest.hexdigest()


def _matches(out: Path, recipe: ModelRecipe) -> bool:
    try:
        m = read_manifest(out)
    except (OSError, ValueError):
        return False
    if m.get("recipe_version") != RECIPE_VERSION or m.get("recipe") != recipe.as_dict():
        return False
    if m.get("build_code") != build_code_hash():
        return False
    return all(
        (out / name).is_file() and (out / name).stat().st_size == meta["bytes"]
        for name, meta in m.get("files", {}).items()
    )


def _write_tokenizer(recipe: ModelRecipe, out: Path) -> int:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from backends.model.corpus import generate_corpus

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=recipe.vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(generate_corpus(recipe.seed), trainer=trainer)
    tok.save(str(out / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": recipe.max_position_embeddings,
        "chat_template": CHAT_TEMPLATE,
    }
    _write_json(out / "tokenizer_config.json", config)
    return int(tok.get_vocab_size())


def make_weights(recipe: ModelRecipe, vocab_size: int) -> dict[str, np.ndarray]:
    """HF-named fp32 weights from a seeded PCG64 stream (same seed, same bytes)."""
    rng = np.random.Generator(np.random.PCG64(recipe.seed))
    h, i, d = recipe.hidden_size, recipe.intermediate_size, recipe.head_dim
    kv = recipe.num_key_value_heads * d

    def normal(shape: tuple[int, ...], std: float) -> np.ndarray:
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(std)).astype(np.float32)

    def norm_weight() -> np.ndarray:
        return (1.0 + normal((h,), 0.1)).astype(np.float32)

    w: dict[str, np.ndarray] = {"model.embed_tokens.weight": normal((vocab_size, h), 1.0)}
    std = recipe.init_std
    for layer in range(recipe.num_hidden_layers):
        p = f"model.layers.{layer}."
        w[p + "input_layernorm.weight"] = norm_weight()
        w[p + "self_attn.q_proj.weight"] = normal((h, h), std)
        w[p + "self_attn.k_proj.weight"] = normal((kv, h), std)
        w[p + "self_attn.v_proj.weight"] = normal((kv, h), std)
        w[p + "self_attn.o_proj.weight"] = normal((h, h), std)
        w[p + "post_attention_layernorm.weight"] = norm_weight()
        w[p + "mlp.gate_proj.weight"] = normal((i, h), std)
        w[p + "mlp.up_proj.weight"] = normal((i, h), std)
        w[p + "mlp.down_proj.weight"] = normal((h, i), std)
    w["model.norm.weight"] = norm_weight()
    w["lm_head.weight"] = normal((vocab_size, h), recipe.lm_head_std)
    return w


def _write_hf(recipe: ModelRecipe, vocab_size: int, weights: dict[str, np.ndarray], out: Path) -> None:
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    bos, eos, pad = (tok.token_to_id(t) for t in (BOS, EOS, PAD))
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab_size,
        "hidden_size": recipe.hidden_size,
        "intermediate_size": recipe.intermediate_size,
        "num_hidden_layers": recipe.num_hidden_layers,
        "num_attention_heads": recipe.num_attention_heads,
        "num_key_value_heads": recipe.num_key_value_heads,
        "head_dim": recipe.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": recipe.max_position_embeddings,
        "rms_norm_eps": recipe.rms_norm_eps,
        "rope_theta": recipe.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": recipe.rope_theta},
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": pad,
        "torch_dtype": "float32",
        "dtype": "float32",
        "initializer_range": recipe.init_std,
    }
    _write_json(out / "config.json", config)
    _write_json(
        out / "generation_config.json",
        {"bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad, "do_sample": False},
    )
    save_file(dict(sorted(weights.items())), str(out / "model.safetensors"),
              metadata={"format": "pt"})


def _manifest(recipe: ModelRecipe, vocab_size: int, weights: dict[str, np.ndarray], out: Path) -> dict:  # type: ignore[type-arg]
    files = {}
    for name in (*HF_FILES, ONNX_FILE):
        data = (out / name).read_bytes()
        files[name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return {
        "name": f"costroute-llama-{recipe.size}",
        "recipe_version": RECIPE_VERSION,
        "recipe": recipe.as_dict(),
        "architecture": "LlamaForCausalLM",
        "vocab_size": vocab_size,
        "num_parameters": int(sum(w.size for w in weights.values())),
        "dtype": "float32",
        "files": files,
        "build_code": build_code_hash(),
        # The model's identity: weights, config and tokenizer (what every engine serves).
        # Profiles pin it. The ONNX export is an engine artifact with its own sha256 above,
        # so a change in how the graph is exported does not invalidate vLLM's profiles.
        "checksum": hashlib.sha256(
            "".join(f"{n}:{files[n]['sha256']}" for n in sorted(HF_FILES)).encode()
        ).hexdigest(),
    }


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
