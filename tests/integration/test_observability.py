"""What on-call sees: one correlation id from the PMS's HTTP request to the UCM call it caused, and the
metrics of each step with the property dimension only where it tells which hotel is in trouble."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Deployment, property_document
from tests.helpers import DEMO_INGEST_KEY, answer, httppms_event, ingest_event, signed
from tests.integration.test_wakeups import PID, Hotel, checkin, hotel  # noqa: F401 - the fixture


class Logged:
    """The product logger's JSON lines while a test runs (its own handler, with Powertools' formatter)."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def where(self, message: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("message") == message]


@pytest.fixture
def logged() -> Iterator[Logged]:
    from pms_connector.observability import logger

    product = logging.getLogger(logger.name)
    found = Logged()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            found.lines.append(json.loads(self.format(record)))

    handler = Collect()
    handler.setFormatter(product.handlers[0].formatter)
    product.addHandler(handler)
    yield found
    product.removeHandler(handler)


def emf(output: str) -> list[tuple[str, dict[str, str], float]]:
    """Every EMF metric printed: (name, dimensions besides service, value)."""
    found = []
    for line in output.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for definition in blob["_aws"]["CloudWatchMetrics"]:
            dims = {d: blob[d] for group in definition["Dimensions"] for d in group if d != "service"}
            for metric in definition["Metrics"]:
                value = blob[metric["Name"]]
                found.append((metric["Name"], dims, value[0] if isinstance(value, list) else value))
    return found


def test_the_pms_request_id_follows_its_records_to_the_ucm_call(hotel: Hotel, logged: Logged) -> None:  # noqa: F811
    event = ingest_event(PID, [checkin("101")])
    event["requestContext"]["requestId"] = "req-7f3a9c"
    assert hotel.dep.invoke("IngestFunction", event)["statusCode"] == 202
    hotel.dispatch()

    ingested = logged.where("records ingested")
    answered = logged.where("ucm command answered")
    assert [line["correlation_id"] for line in ingested] == ["req-7f3a9c"]
    assert answered and {line["correlation_id"] for line in answered} == {"req-7f3a9c"}
    assert {line["property"] for line in answered} == {PID}
    assert answered[0]["outcome"] == "ok"


def test_a_command_from_another_request_logs_that_request_s_id(hotel: Hotel, logged: Logged) -> None:  # noqa: F811
    for n, room in enumerate(["101", "102"]):
        event = ingest_event(PID, [checkin(room)])
        event["requestContext"]["requestId"] = f"req-{n}"
        hotel.dep.invoke("IngestFunction", event)
    hotel.dispatch()  # one invocation sends both: each line names its own request
    assert [line["correlation_id"] for line in logged.where("ucm command answered")] == ["req-0", "req-1"]


def test_ucm_link_state_is_reported_per_property_only_when_it_says_something(
    hotel: Hotel, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    hotel.pms(checkin("101"))
    capsys.readouterr()
    hotel.dispatch()
    assert [m for m in emf(capsys.readouterr().out) if m[0] == "UcmUnreachable"] == []  # healthy: nothing sent

    hotel.sim.fail_next(5, reset=True)
    hotel.pms(checkin("102"))
    hotel.dispatch()
    printed = emf(capsys.readouterr().out)
    assert ("UcmUnreachable", {"property": PID}, 1) in printed
    assert ("UcmCommandRetried", {}, 1) in printed

    hotel.pms(checkin("103"))  # a backlog behind the failed head: recovery is still reported once it sends
    hotel.sim.reset_faults()
    from pms_connector.outbox import OutboxStore

    store = OutboxStore(hotel.table)  # the retry is due in seconds: make it due now, as time would
    head = next(c for c in store.pending(PID, after=0, limit=10) if c.attempts)
    store.reschedule(PID, head, next_attempt_at=0, error="test")
    hotel.dispatch()
    printed = emf(capsys.readouterr().out)
    assert ("UcmUnreachable", {"property": PID}, 0) in printed
    assert hotel.sim.state()["rooms"]["103"]["checked_in"]  # the command behind the head went too


def test_traffic_counters_carry_no_property_and_inbound_requests_count_by_action(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deployment.invoke("IngestFunction", ingest_event("demo-hotel", [checkin("101")]))["statusCode"] == 202
    for request in ({"action": "GET_REQUEST"}, {"action": "DND", "room": "101", "active": True}):
        response = deployment.invoke("HttppmsFunction", httppms_event(signed({**request, "property": "demo-hotel"})))
        assert answer(response)["code"] == 0, answer(response)
    printed = emf(capsys.readouterr().out)
    names = {(name, tuple(sorted(dims))) for name, dims, _ in printed}
    assert ("EventsIngested", ()) in names
    assert ("RecordsDelivered", ()) in names
    assert ("InboundRequests", ()) in names
    assert ("InboundRequests", ("action",)) in names
    assert ("InboundRequests", {"action": "DND"}, 1) in printed
    assert not [n for n, dims in names if "property" in dims]


def test_a_deployment_with_a_new_property_logs_no_secret_of_it(deployment: Deployment, logged: Logged) -> None:
    document = property_document(id="secret-inn", ingest={"api_key": "inn-key-" + "q" * 24})
    deployment.add_property(document)
    bad = ingest_event("secret-inn", [checkin("101")], key="inn-key-wrong-" + "z" * 20)
    assert deployment.invoke("IngestFunction", bad)["statusCode"] == 401
    good = ingest_event("secret-inn", [checkin("101")], key="inn-key-" + "q" * 24)
    assert deployment.invoke("IngestFunction", good)["statusCode"] == 202
    text = json.dumps(logged.lines)
    assert "inn-key-" not in text and DEMO_INGEST_KEY not in text
