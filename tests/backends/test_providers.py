import pytest

from backends.errors import ProviderUnavailableError
from backends.providers import validate_providers


def test_available_providers_pass_with_options() -> None:
    names, options = validate_providers(
        [("CPUExecutionProvider", {"arena_extend_strategy": "kSameAsRequested"})]
    )
    assert names == ["CPUExecutionProvider"]
    assert options == [{"arena_extend_strategy": "kSameAsRequested"}]


@pytest.mark.parametrize(
    "provider, package",
    [
        ("CANNExecutionProvider", "onnxruntime-cann"),
        ("CUDAExecutionProvider", "onnxruntime-gpu"),
        ("OpenVINOExecutionProvider", "onnxruntime-openvino"),
        ("MIGraphXExecutionProvider", "onnxruntime-migraphx"),
        ("ROCMExecutionProvider", "onnxruntime-rocm"),
    ],
)
def test_missing_provider_names_it_and_its_package(provider: str, package: str) -> None:
    with pytest.raises(ProviderUnavailableError) as info:
        validate_providers([provider, "CPUExecutionProvider"], available=["CPUExecutionProvider"])
    message = str(info.value)
    assert provider in message and package in message and "CPUExecutionProvider" in message
    assert info.value.field == "providers"


def test_unknown_provider_name_is_rejected() -> None:
    with pytest.raises(ProviderUnavailableError, match="NopeExecutionProvider"):
        validate_providers(["NopeExecutionProvider"], available=["CPUExecutionProvider"])


def test_engine_checks_providers_at_construction() -> None:
    from backends.onnxruntime_engine import OnnxRuntimeEngine, OnnxRuntimeOptions

    with pytest.raises(ProviderUnavailableError, match="onnxruntime-cann"):
        OnnxRuntimeEngine(OnnxRuntimeOptions(providers=("CANNExecutionProvider",)))
