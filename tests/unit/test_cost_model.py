"""bench/cost.py: the per-hotel cost model stays tied to what the code measurably does."""

from __future__ import annotations

import importlib.util
import json
import sys
from types import ModuleType

import pytest

from tests.conftest import ROOT


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


cost = load("cost")


def test_the_ingest_write_units_of_the_model_are_the_measured_ones(capsys: pytest.CaptureFixture[str]) -> None:
    measured = load("capacity").measure()
    capsys.readouterr()
    assert measured["BOOKING checkin"] == cost.WORK["ingest_booking"].wru
    others = {label: units for label, units in measured.items() if not label.startswith("BOOKING")}
    assert len(others) >= 5 and max(others.values()) == cost.WORK["ingest_other"].wru


def test_the_reference_hotel_costs_under_3_dollars_a_month_without_the_vpn() -> None:
    result = cost.report(cost.Hotel())
    lines = result["lines"]
    total = sum(lines["per_property"].values()) + sum(lines["shared"].values())
    assert result["connector_per_property_month"] == round(total, 2)
    assert total < 3.00
    assert sum(lines["vpn"].values()) > 10 * total  # the VPN, reported apart, dominates


def test_the_model_moves_the_way_the_deployment_does() -> None:
    base = cost.report(cost.Hotel())["connector_per_property_month"]
    assert cost.report(cost.Hotel(api_tracing=True))["connector_per_property_month"] > base + 2  # X-Ray on polls
    assert cost.report(cost.Hotel(poll_seconds=2.5))["connector_per_property_month"] > base + 0.5
    assert cost.report(cost.Hotel(properties=1))["connector_per_property_month"] > base + 5  # alone: shared costs


def test_the_alarm_topic_key_and_the_site_alarms_are_priced() -> None:
    """The alarm topic's customer managed key (CloudWatch cannot publish under aws/sns) is shared by the
    deployment: $1 a month, plus $1 for each of its first two yearly rotations; each site's two tunnel-state
    alarms go with its VPN."""
    key = "KMS key of the alarm topic (rotated yearly)"
    assert cost.PRICES["kms_key_month"] == cost.PRICES["kms_key_rotation_month"] == 1.00
    for rotations, dollars in ((0, 1.00), (1, 2.00), (2, 3.00), (5, 3.00)):
        shared = cost.monthly(cost.Hotel(key_rotations=rotations, properties=1))["shared"][key]
        assert dollars < shared < dollars + 0.01, (rotations, shared)  # + its few requests
    assert cost.Hotel().key_rotations == 2  # the reference hotel is priced after both billed rotations
    assert cost.monthly(cost.Hotel(sites=2))["vpn"]["The site's tunnel-state alarms"] == pytest.approx(0.40)


def test_the_script_prints_a_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cost.main([]) == 0
    assert "Connector, per hotel and month" in capsys.readouterr().out
    assert cost.main(["--json", "--properties", "10"]) == 0
    assert json.loads(capsys.readouterr().out)["hotel"]["properties"] == 10
