"""A plain torch Llama decoder used only to export the ONNX graph (build time, never serving).

It computes exactly what transformers' LlamaForCausalLM computes, written for a lean ONNX
graph: fused QKV and gate/up projections, grouped-query attention by broadcasting (no
repeat), and logits for the last position only.

Graph contract (what the ONNX Runtime engine feeds):
    input_ids       int64 [batch, seq]
    attention_mask  int64 [batch, past + seq]  1 = attend to this key, 0 = padding or unused
    position_ids    int64 [batch, seq]
    past_key_values.{i}.key / .value   float32 [batch, kv_heads, past, head_dim]
 -> logits          float32 [batch, vocab]   (last position of each row)
    new_key_values.{i}.key / .value    float32 [batch, kv_heads, seq, head_dim]

The graph returns only the new tokens' keys and values and never copies the past: attention
is computed in two parts (past keys, new keys) joined at the scores. The engine keeps the
past in its own preallocated buffer, appends the new columns in place, and masks columns it
does not use, so a decode step costs no KV copy. Past keys are visible wherever the mask is
1 (in any column order); new keys are causal among themselves and masked by their part of
`attention_mask` (left padding in a prefill batch).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backends.model.recipe import ModelRecipe


def export_onnx(recipe: ModelRecipe, vocab_size: int, weights: dict[str, np.ndarray], out: Path) -> None:
    import torch

    model = _build_module(recipe, vocab_size, weights).eval()
    L, kv, d = recipe.num_hidden_layers, recipe.num_key_value_heads, recipe.head_dim
    batch, seq, past = 2, 3, 4
    past_kv = tuple(torch.zeros(batch, kv, past, d) for _ in range(2 * L))
    args = (
        torch.ones(batch, seq, dtype=torch.int64),
        torch.ones(batch, past + seq, dtype=torch.int64),
        torch.arange(past, past + seq, dtype=torch.int64).repeat(batch, 1),
        *past_kv,
    )
    b = torch.export.Dim("batch", min=1, max=1024)
    s = torch.export.Dim("seq", min=1, max=recipe.max_position_embeddings)
    p = torch.export.Dim("past", min=0, max=recipe.max_position_embeddings)
    t = torch.export.Dim("total", min=1, max=2 * recipe.max_position_embeddings)
    dynamic_shapes = (
        {0: b, 1: s},
        {0: b, 1: t},
        {0: b, 1: s},
        tuple({0: b, 2: p} for _ in range(2 * L)),
    )
    names = [f"past_key_values.{i}.{kind}" for i in range(L) for kind in ("key", "value")]
    out_names = [f"new_key_values.{i}.{kind}" for i in range(L) for kind in ("key", "value")]
    with torch.no_grad():
        program = torch.onnx.export(
            model,
            args,
            dynamo=True,
            dynamic_shapes=dynamic_shapes,
            input_names=["input_ids", "attention_mask", "position_ids", *names],
            output_names=["logits", *out_names],
            optimize=True,
            verbose=False,
        )
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    program.save(str(out), external_data=False)
    _strip_metadata(out)


def _strip_metadata(path: Path) -> None:
    """Drop the exporter's per-node metadata (stack traces of the exporting process, FX node
    text): it differs with the caller, and two builds must be byte-identical."""
    import onnx

    model = onnx.load(str(path))
    graphs = [model.graph]
    nodes = list(model.graph.node) + [n for f in model.functions for n in f.node]
    for node in nodes:
        del node.metadata_props[:]
        node.doc_string = ""
        graphs.extend(a.g for a in node.attribute if a.HasField("g"))
    for graph in graphs:
        for info in (*graph.input, *graph.output, *graph.value_info):
            del info.metadata_props[:]
        for init in graph.initializer:
            del init.metadata_props[:]
        del graph.metadata_props[:]
    del model.metadata_props[:]
    onnx.save(model, str(path))


def _build_module(recipe: ModelRecipe, vocab_size: int, w: dict[str, np.ndarray]):  # type: ignore[no-untyped-def]
    import torch
    from torch import nn

    H, KV, d = recipe.num_attention_heads, recipe.num_key_value_heads, recipe.head_dim
    G = H // KV
    eps = recipe.rms_norm_eps

    def t(name: str) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(w[name]))

    class Decoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Parameter(t("model.embed_tokens.weight"), requires_grad=False)
            self.lm_head = nn.Parameter(t("lm_head.weight").T.contiguous(), requires_grad=False)
            self.norm = nn.Parameter(t("model.norm.weight"), requires_grad=False)
            inv_freq = 1.0 / (recipe.rope_theta ** (np.arange(0, d, 2, dtype=np.float64) / d))
            freqs = np.outer(np.arange(recipe.max_position_embeddings, dtype=np.float64), inv_freq)
            emb = np.concatenate([freqs, freqs], axis=-1)
            self.register_buffer("cos", torch.from_numpy(np.cos(emb).astype(np.float32)))
            self.register_buffer("sin", torch.from_numpy(np.sin(emb).astype(np.float32)))
            self.layers = nn.ParameterList()
            for i in range(recipe.num_hidden_layers):
                pre = f"model.layers.{i}."
                qkv = torch.cat([t(pre + f"self_attn.{n}_proj.weight") for n in "qkv"]).T.contiguous()
                gate_up = torch.cat([t(pre + f"mlp.{n}_proj.weight") for n in ("gate", "up")]).T.contiguous()
                for tensor in (
                    t(pre + "input_layernorm.weight"),
                    qkv,
                    t(pre + "self_attn.o_proj.weight").T.contiguous(),
                    t(pre + "post_attention_layernorm.weight"),
                    gate_up,
                    t(pre + "mlp.down_proj.weight").T.contiguous(),
                ):
                    self.layers.append(nn.Parameter(tensor, requires_grad=False))

        def forward(self, input_ids, attention_mask, position_ids, *past):  # type: ignore[no-untyped-def]
            B, S = input_ids.shape
            T = attention_mask.shape[1]
            x = self.embed[input_ids]
            cos = self.cos[position_ids].unsqueeze(1)  # type: ignore[index]  # [B, 1, S, d]
            sin = self.sin[position_ids].unsqueeze(1)  # type: ignore[index]
            key_pos = torch.arange(T, device=x.device)
            query_pos = torch.arange(S, device=x.device) + (T - S)
            causal = key_pos.unsqueeze(0) <= query_pos.unsqueeze(1)  # [S, T]
            allowed = causal.unsqueeze(0) & attention_mask.unsqueeze(1).bool()  # [B, S, T]
            bias = torch.where(allowed, 0.0, torch.finfo(torch.float32).min)
            bias = bias.unsqueeze(1).unsqueeze(1)  # [B, 1, 1, S, T]
            news = []
            for i in range(recipe.num_hidden_layers):
                ln1, wqkv, wo, ln2, wgu, wdown = list(self.layers)[6 * i : 6 * i + 6]
                h = _rms(x, ln1, eps)
                q, k, v = (h @ wqkv).split([H * d, KV * d, KV * d], dim=-1)
                q = q.view(B, S, KV, G, d).permute(0, 2, 3, 1, 4)  # [B, KV, G, S, d]
                k = k.view(B, S, KV, d).transpose(1, 2)  # [B, KV, S, d]
                v = v.view(B, S, KV, d).transpose(1, 2)
                q = q * cos.unsqueeze(1) + _rotate_half(q) * sin.unsqueeze(1)
                k = k * cos + _rotate_half(k) * sin
                news += [k, v]
                past_k, past_v = past[2 * i].unsqueeze(2), past[2 * i + 1].unsqueeze(2)
                P = past_k.shape[3]
                scores = torch.cat(
                    [q @ past_k.transpose(-1, -2), q @ k.unsqueeze(2).transpose(-1, -2)], dim=-1
                ) * (d**-0.5) + bias  # [B, KV, G, S, P + S]
                probs = torch.softmax(scores, dim=-1)
                o = probs[..., :P] @ past_v + probs[..., P:] @ v.unsqueeze(2)  # [B, KV, G, S, d]
                o = o.permute(0, 3, 1, 2, 4).reshape(B, S, H * d)
                x = x + o @ wo
                h = _rms(x, ln2, eps)
                gate, up = (h @ wgu).chunk(2, dim=-1)
                x = x + (torch.nn.functional.silu(gate) * up) @ wdown
            last = _rms(x[:, -1, :], self.norm, eps)  # type: ignore[index]
            return (last @ self.lm_head, *news)

    return Decoder()


def _rms(x, weight, eps):  # type: ignore[no-untyped-def]
    import torch

    # x / sqrt(...) (not rsqrt): ONNX Runtime fuses this form into SimplifiedLayerNormalization.
    return weight * (x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def _rotate_half(x):  # type: ignore[no-untyped-def]
    import torch

    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)
