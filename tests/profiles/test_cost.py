from pathlib import Path

import pytest

from backends.errors import ConfigError
from profiles.cost import load_cost_table, parse_cost_table, provisioned_cost_usd, request_cost_usd

EXAMPLE = Path(__file__).parents[2] / "profiles" / "costs" / "example-2026.yaml"


def test_request_cost_is_price_per_second_times_replica_time() -> None:
    assert request_cost_usd(3_600_000, 2.0) == pytest.approx(2.0)  # a full hour
    assert request_cost_usd(500, 7.2) == pytest.approx(0.001)


def test_provisioned_cost() -> None:
    assert provisioned_cost_usd(3, 2.0, 1800) == pytest.approx(3.0)


def test_example_table_loads_with_sources_and_dates() -> None:
    prices = load_cost_table(EXAMPLE)
    assert prices["nvidia-h100-sxm-aws"].usd_per_hour == pytest.approx(6.88)
    assert prices["cpu-onnxruntime"].illustrative
    assert all(p.source and p.date for p in prices.values())


@pytest.mark.parametrize(
    "entry, field",
    [
        ({"usd_per_hour": -1, "source": "x", "date": "2026"}, "accelerators.gpu.usd_per_hour"),
        ({"usd_per_hour": "a", "source": "x", "date": "2026"}, "accelerators.gpu.usd_per_hour"),
        ({"usd_per_hour": 1.0, "date": "2026"}, "accelerators.gpu.source"),
        ({"usd_per_hour": 1.0, "source": "x"}, "accelerators.gpu.date"),
    ],
)
def test_bad_entries_name_the_field(entry: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_cost_table({"accelerators": {"gpu": entry}})
    assert info.value.field == field and field in str(info.value)
