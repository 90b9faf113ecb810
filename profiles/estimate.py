"""Roofline profiles for hardware you do not own (labelled `estimated` everywhere).

    decode step(b, c)  = max(bytes read / bandwidth, FLOPs / peak) / efficiency
        bytes read     = weights + b x c x KV bytes per token
        FLOPs          = 2 x parameters x b + 4 x b x c x layers x hidden
    prefill(b, p)      = max(bytes / bandwidth, FLOPs / peak) / efficiency
        bytes          = weights + b x p x KV bytes per token (written)
        FLOPs          = 2 x parameters x b x p + 2 x b x p^2 x layers x hidden
    capacity           = KV tokens that fit in (memory - weights) x 0.9

Weights are assumed served at `bytes_per_param` (2: bf16/fp16, the dtype the TFLOPS figures
are quoted for). Real engines add per-step overheads the roofline ignores, so these are
lower bounds on time: use measured tables where you can.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from backends.errors import ConfigError
from profiles.table import ProfileTable, Surface


@dataclass(frozen=True)
class Datasheet:
    bandwidth_gbs: float  # memory bandwidth, GB/s
    tflops: float  # dense peak, bf16/fp16
    memory_gib: float
    source: str


KNOWN_ACCELERATORS: dict[str, Datasheet] = {
    "nvidia-h100-sxm": Datasheet(3350, 989, 80, "NVIDIA H100 SXM datasheet: 3.35 TB/s, 989 TFLOPS bf16 dense"),
    "nvidia-h200": Datasheet(4800, 989, 141, "NVIDIA H200 datasheet: 4.8 TB/s, 989 TFLOPS bf16 dense"),
    "nvidia-a100-80gb": Datasheet(2000, 312, 80, "NVIDIA A100 80GB datasheet: 2.0 TB/s, 312 TFLOPS bf16"),
    "nvidia-l40s": Datasheet(864, 362, 48, "NVIDIA L40S datasheet: 864 GB/s, 362 TFLOPS bf16 dense"),
    "nvidia-l4": Datasheet(300, 121, 24, "NVIDIA L4 datasheet: 300 GB/s, 121 TFLOPS bf16 dense"),
    "amd-mi300x": Datasheet(5300, 1307, 192, "AMD MI300X datasheet: 5.3 TB/s, 1307 TFLOPS bf16 dense"),
}

BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256)
TOKENS = (16, 64, 256, 1024, 2048, 4096, 8192)


def estimate_profile(
    *,
    accelerator: str,
    manifest: dict[str, Any],
    bandwidth_gbs: float | None = None,
    tflops: float | None = None,
    memory_gib: float | None = None,
    efficiency: float = 0.7,
    bytes_per_param: float = 2.0,
    backend_id: str | None = None,
    command: str = "",
) -> ProfileTable:
    sheet = KNOWN_ACCELERATORS.get(accelerator)
    bw = bandwidth_gbs or (sheet.bandwidth_gbs if sheet else None)
    peak = tflops or (sheet.tflops if sheet else None)
    mem = memory_gib or (sheet.memory_gib if sheet else None)
    missing = [name for name, v in (("--bandwidth-gbs", bw), ("--tflops", peak),
                                    ("--memory-gib", mem)) if not v]
    if missing:
        raise ConfigError(
            f"no shipped figures for accelerator {accelerator!r} (known: "
            f"{', '.join(sorted(KNOWN_ACCELERATORS))}); give {', '.join(missing)} from its "
            "datasheet (e.g. Ascend 910B: published figures conflict, use your vendor's)",
            missing[0].lstrip("-").replace("-", "_"),
        )
    if not 0 < efficiency <= 1:
        raise ConfigError(f"efficiency must be in (0, 1], got {efficiency}", "efficiency")
    assert bw and peak and mem
    r = manifest["recipe"]
    params = float(manifest["num_parameters"])
    layers, hidden = int(r["num_hidden_layers"]), int(r["hidden_size"])
    head_dim = hidden // int(r["num_attention_heads"])
    kv_bytes = 2 * layers * int(r["num_key_value_heads"]) * head_dim * bytes_per_param
    weights = params * bytes_per_param
    bw_bs, peak_fs = bw * 1e9 * efficiency, peak * 1e12 * efficiency
    max_len = int(r["max_position_embeddings"])
    tokens = tuple(t for t in TOKENS if t <= max_len) or (max_len,)

    def decode_ms(b: int, c: int) -> float:
        read = weights + b * c * kv_bytes
        flops = 2 * params * b + 4 * b * c * layers * hidden
        return max(read / bw_bs, flops / peak_fs) * 1e3

    def prefill_ms(b: int, p: int) -> float:
        moved = weights + b * p * kv_bytes
        flops = 2 * params * b * p + 2 * b * p * p * layers * hidden
        return max(moved / bw_bs, flops / peak_fs) * 1e3

    kv_tokens = int(max((mem * 2**30 - weights) * 0.9, 0) / kv_bytes)
    if kv_tokens < 1:
        raise ConfigError(f"the model ({weights / 2**30:.1f} GiB) does not fit {mem} GiB",
                          "memory_gib")
    return ProfileTable(
        backend_id=backend_id or f"{accelerator}-estimated",
        kind="estimated",
        engine={"name": "roofline", "version": "1", "execution_provider": None},
        accelerator=accelerator,
        hardware={"bandwidth_gbs": bw, "tflops": peak, "memory_gib": mem,
                  "source": sheet.source if sheet and not (bandwidth_gbs or tflops)
                  else "user-supplied figures"},
        model={"id": manifest["name"], "checksum": manifest["checksum"],
               "dtype": f"{int(bytes_per_param * 8)}-bit (assumed)",
               "num_parameters": manifest["num_parameters"]},
        created=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        command=command or "profiles.estimate.estimate_profile",
        prefill=Surface(BATCH, tokens, tuple(tuple(prefill_ms(b, t) for t in tokens) for b in BATCH)),
        decode=Surface(BATCH, tokens, tuple(tuple(decode_ms(b, t) for t in tokens) for b in BATCH)),
        capacity={"max_num_seqs": BATCH[-1], "kv_tokens": kv_tokens},
        notes={"rule": "roofline: max(bytes / bandwidth, FLOPs / peak) / efficiency",
               "efficiency": efficiency, "bytes_per_param": bytes_per_param,
               "label": "ESTIMATED, not measured"},
    )
