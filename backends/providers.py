"""ONNX Runtime execution providers: validation against what is installed, with install hints."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from backends.errors import ProviderUnavailableError

# Which PyPI package brings each execution provider.
PROVIDER_PACKAGES: dict[str, str] = {
    "CPUExecutionProvider": "onnxruntime",
    "CUDAExecutionProvider": "onnxruntime-gpu",
    "TensorrtExecutionProvider": "onnxruntime-gpu (with TensorRT installed)",
    "CANNExecutionProvider": "onnxruntime-cann",
    "OpenVINOExecutionProvider": "onnxruntime-openvino",
    "ROCMExecutionProvider": "onnxruntime-rocm",
    "MIGraphXExecutionProvider": "onnxruntime-migraphx",
    "DmlExecutionProvider": "onnxruntime-directml",
    "QNNExecutionProvider": "onnxruntime-qnn",
    "CoreMLExecutionProvider": "onnxruntime (macOS build)",
}

ProviderSpec = str | tuple[str, dict[str, Any]]


def split_providers(
    providers: Sequence[ProviderSpec],
) -> tuple[list[str], list[dict[str, Any]]]:
    names: list[str] = []
    options: list[dict[str, Any]] = []
    for p in providers:
        name, opts = (p, {}) if isinstance(p, str) else (p[0], dict(p[1]))
        names.append(name)
        options.append({k: str(v) for k, v in opts.items()})
    return names, options


def validate_providers(
    providers: Sequence[ProviderSpec], available: Sequence[str] | None = None
) -> tuple[list[str], list[dict[str, Any]]]:
    """Check that every provider is installed; return (names, options) for InferenceSession.

    A missing provider raises ProviderUnavailableError naming it and the package to install.
    """
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    names, options = split_providers(providers)
    if not names:
        raise ProviderUnavailableError(
            "no execution provider given; use e.g. ['CPUExecutionProvider']", "providers"
        )
    for name in names:
        if name not in available:
            package = PROVIDER_PACKAGES.get(name)
            hint = (
                f"install the `{package}` package in place of `onnxruntime`"
                if package
                else "check the provider name"
            )
            raise ProviderUnavailableError(
                f"execution provider {name!r} is not available in this onnxruntime build; "
                f"{hint}. Available here: {', '.join(available)}",
                "providers",
            )
    return names, options
