"""PMS polling mode against the PMS simulator and moto: records in once and in order across link errors,
outgoing records buffered and resent in order (the spec's "Link connection control")."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pms_connector.config import PropertyConfig
from pms_connector.pms.client import HttppmsClient
from pms_connector.pms.simulator import PmsSimulator
from pms_connector.polling import PollStore, poll_property
from tests.conftest import Deployment, IamRecorder, property_document

PID = "polled-hotel"


def rs(n: int) -> dict[str, Any]:
    return {"datetime": "2026-11-22T10:00:00", "action": "RS", "room": str(100 + n % 50), "status": f"S{n}"}


class Site:
    def __init__(self, deployment: Deployment, pms: PmsSimulator) -> None:
        self.dep, self.pms = deployment, pms
        doc = property_document(id=PID, pms_server={"url": pms.url, "auth": "md5", "user": "link",
                                                    "password": "pms-secret", "poll_interval_seconds": 2})
        doc.pop("ucm", None)
        deployment.add_property(doc)
        from pms_connector.config import parse_property

        self.prop: PropertyConfig = parse_property(doc)
        self.store = PollStore(deployment.names["ConnectorTable"])

    def poll(self, rounds: int = 1) -> Any:
        server = self.prop.pms_server
        assert server is not None and server.password is not None
        with HttppmsClient(server.url, auth="md5", user=server.user, password=server.password.get_secret_value(),
                           property_id=PID, zone=self.prop.zone, timeout_s=2) as client:
            return poll_property(self.prop, client, self.store, owner="test", remaining_ms=lambda: 60_000,
                                 sleep=lambda _s: None, max_rounds=rounds)

    def fifo(self) -> list[dict[str, Any]]:
        return [q.record for q in self.store.read_fifo(PID, after=0, limit=1000)]


@pytest.fixture(params=["remove", "confirm"])
def site(request: pytest.FixtureRequest, deployment: Deployment) -> Iterator[Site]:
    with PmsSimulator(property_id=PID, auth="md5", user="link", password="pms-secret",
                      delivery=request.param) as pms:
        yield Site(deployment, pms)


def test_polled_records_are_ingested_once_and_in_order_across_link_errors(site: Site) -> None:
    site.pms.queue(*[rs(n) for n in range(250)])
    faults = [{"http_status": 500}, {"reset": True}, {"code": 101}, {"http_status": 401}]
    for fault in faults:
        site.poll()  # some records in
        site.pms.fail_next(1, action="GET_REQUEST", **fault)
        report = site.poll()
        assert report.buffered
    for _ in range(10):
        if not site.pms.pending():
            break
        site.poll(rounds=3)
    site.poll()  # the last confirm
    assert site.pms.pending() == []
    assert [r["status"] for r in site.fifo()] == [f"S{n}" for n in range(250)]  # none lost, none twice


def test_a_batch_served_again_after_a_lost_confirm_is_not_ingested_twice(deployment: Deployment) -> None:
    with PmsSimulator(property_id=PID, auth="md5", user="link", password="pms-secret", delivery="confirm") as pms:
        site = Site(deployment, pms)
        pms.queue(*[rs(n) for n in range(5)])
        site.poll()  # ingested, confirm pending
        pms.fail_next(1, action="GET_REQUEST", delay_s=3)  # the confirming poll times out (2 s) after the PMS...
        site.poll()
        site.poll()
        site.poll()
        assert [r["status"] for r in site.fifo()] == [f"S{n}" for n in range(5)]
        assert pms.pending() == []


def test_outgoing_records_are_resent_in_order_after_link_errors(site: Site) -> None:
    store = site.store
    requests = [
        {"action": "CALL", "room": "101", "datetime": "2026-11-22T10:00:00", "number": "600111222", "duration": 30},
        {"action": "WAKE", "room": "101", "mode": "E", "uid": "w1", "waketime": "2026-11-23T07:00:00"},
        {"action": "RS", "room": "101", "status": "C"},  # not forwarded in polling mode
        {"action": "POST", "room": "102", "article": "MB", "amount": 4.5},
        {"action": "WAKE", "room": "102", "mode": "S", "uid": "w2", "waketime": "2026-11-23T07:00:00"},
    ]
    for n, request in enumerate(requests):
        store.store_inbound(PID, request_id=f"r{n}", action=request["action"], request=request,
                            answer={"code": 0}, retention_seconds=3600)
    site.pms.fail_next(1, http_status=500, action="CALL")
    assert site.poll().buffered
    assert site.pms.received() == []  # the CALL failed: nothing after it was sent
    site.pms.fail_next(1, reset=True, action="WAKE")
    site.poll()
    site.pms.fail_next(1, code=201, action="POST")  # the PMS refuses the POST for good: skipped, logged
    report = site.poll()
    assert report.rejected == 1
    site.poll()
    assert [r["action"] for r in site.pms.received()] == ["CALL", "WAKE"]
    assert site.pms.received()[1]["mode"] == "E"
    store.store_inbound(PID, request_id="r9", action="CALL", request={"action": "CALL", "room": "103"},
                        answer={"code": 0}, retention_seconds=3600)
    site.poll()
    assert [r["action"] for r in site.pms.received()] == ["CALL", "WAKE", "CALL"]


def test_the_poller_function_polls_every_polling_property(deployment: Deployment) -> None:
    with PmsSimulator(property_id=PID, auth="md5", user="link", password="pms-secret") as pms:
        Site(deployment, pms)
        pms.queue(rs(1), rs(2))
        from tests.conftest import FakeContext

        class Short(FakeContext):
            def get_remaining_time_in_millis(self) -> int:
                return 9_000  # one round, then too little time for another

        result = deployment.handler("PollerFunction")({}, Short())
        assert result["reports"][PID]["ingested"] == 2  # (demo-resort polls too: its PMS is not running here)
        assert pms.pending() == []


def test_the_poller_policy_allows_exactly_what_it_calls(deployment: Deployment, iam: IamRecorder) -> None:
    from tests.conftest import FakeContext
    from tests.integration.test_aws_calls import code_actions

    with PmsSimulator(property_id=PID, auth="md5", user="link", password="pms-secret", delivery="confirm") as pms:
        site = Site(deployment, pms)
        site.store.store_inbound(PID, request_id="c1", action="CALL", request={"action": "CALL", "room": "101"},
                                 answer={"code": 0}, retention_seconds=3600)
        iam.actions.clear()
        pms.queue(rs(1))

        class Short(FakeContext):
            def get_remaining_time_in_millis(self) -> int:
                return 9_000

        deployment.handler("PollerFunction")({}, Short())
        assert [r["action"] for r in pms.received()] == ["CALL"]
    assert iam.actions == code_actions(deployment, "PollerFunction")


def test_the_pms_link_state_is_reported_per_property_only_when_it_says_something(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.integration.test_observability import emf

    def link_state() -> list[float]:
        return [value for name, dims, value in emf(capsys.readouterr().out)
                if name == "PmsUnreachable" and dims == {"property": PID}]

    site.pms.queue(rs(1))
    capsys.readouterr()
    site.poll()
    assert link_state() == []  # healthy: nothing sent
    site.pms.fail_next(2, action="GET_REQUEST", http_status=500)
    site.poll()
    assert link_state() == [1]  # down when this poller stopped
    site.poll()  # still down (its second fault): said again, one value per poller run
    assert link_state() == [1]
    site.poll()
    assert link_state() == [0]  # back: said once...
    site.poll()
    assert link_state() == []  # ...then nothing
