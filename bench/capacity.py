"""DynamoDB write units of one ingest request per record type, measured on moto: bench/cost.py's input.

    python bench/capacity.py

Each of the spec's example records (docs/specs, "records from the PMS") is posted alone to the ingest handler
of a moto deployment built from template.yaml (demo-hotel, with a UCM). The transaction the handler sends is
captured through botocore's parameter hook and priced with DynamoDB's rules: an item written costs one WRU
per started KB of its size (attribute names plus values), twice inside a transaction; an Update or a
ConditionCheck is counted as a small item (2 WRU in a transaction).
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _value_size(value: dict[str, Any]) -> int:
    ((kind, data),) = value.items()
    if kind == "S":
        return len(str(data).encode())
    if kind == "N":
        return math.ceil(len(str(data).lstrip("-").replace(".", "")) / 2) + 1
    if kind == "B":
        return len(data)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + _value_size(v) + 1 for k, v in data.items())
    if kind == "L":
        return 3 + sum(_value_size(v) + 1 for v in data)
    return sum(len(str(v).encode()) for v in data)  # sets


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def transaction_wru(items: list[dict[str, Any]]) -> int:
    units = 0
    for entry in items:
        ((kind, body),) = entry.items()
        units += 2 * (math.ceil(item_size(body["Item"]) / 1024) if kind == "Put" else 1)
    return units


def measure() -> dict[str, int]:
    import tests.conftest as fixtures
    from moto import mock_aws
    from tests.helpers import ingest_event
    from tests.spec_examples import records_from_pms

    from pms_connector import aws
    from pms_connector.config import parse_properties
    from pms_connector.local.provision import create_resources, push_properties
    from pms_connector.local.template import Template

    results: dict[str, int] = {}
    template = Template(fixtures.TEMPLATE)
    env: dict[str, str] = {}
    for spec in template.functions().values():
        env.update(spec.environment)
    with mock_aws(), mock.patch.dict(os.environ, env):
        names = create_resources(template)
        push_properties(parse_properties(fixtures.demo_documents()), parameter_prefix=env["CONFIG_PARAMETER_PREFIX"],
                        secret_prefix=env["CONFIG_SECRET_PREFIX"])
        fixtures.reset_caches()
        sent: list[tuple[str, dict[str, Any]]] = []
        aws.dynamodb().meta.events.register(
            "provide-client-params.dynamodb.*",
            lambda params, event_name, **_: sent.append((event_name.rsplit(".", 1)[-1], params)))
        deployment = fixtures.Deployment(template, names, env)
        for example in records_from_pms():
            record = {k: v for k, v in example.body.items() if k != "property"}
            sent.clear()
            response = deployment.invoke("IngestFunction", ingest_event("demo-hotel", [record]))
            if response["statusCode"] != 202:
                continue  # e.g. the spec's WAKE example, dated in the past
            label = f"{record['action']} {record.get('status', '')}".strip()
            results[label] = sum(transaction_wru(params["TransactItems"]) for name, params in sent
                                 if name == "TransactWriteItems")
        fixtures.reset_caches()  # nothing of this moto deployment outlives it
    return results


def main() -> int:
    import contextlib
    import io
    import logging
    import warnings

    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    with contextlib.redirect_stdout(io.StringIO()):  # the handlers' logs and EMF metrics
        measured = measure()
    for label, units in measured.items():
        print(f"{label:<20} {units:>3} WRU per ingest request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
