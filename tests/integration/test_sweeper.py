"""The sweeper function: two queries for the whole backlog, per-property backlog metrics, parked markers."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from pms_connector.outbox import OutboxStore
from tests.conftest import CallCounter, Deployment, IamRecorder

COMMAND = ("checkin", {"address": "101", "room": "101", "firstname": "Ana", "lastname": "Ruiz"})


def outbox(deployment: Deployment, clock: Any = time.time) -> OutboxStore:
    return OutboxStore(deployment.names["ConnectorTable"], clock=clock)


def finish_one(store: OutboxStore, pid: str) -> None:
    """A command enqueued and sent: the property's history exists, its backlog is empty."""
    [seq] = store.enqueue(pid, [COMMAND])
    assert store.acquire(pid, "test", now=int(time.time()), lease_seconds=60) is not None
    assert store.finish(pid, "test", seq)


def clone_history(store: OutboxStore, source: str, targets: list[str]) -> None:
    """Copy one property's items (its sent commands, its outbox meta) to many properties, in bulk: the table
    then looks like 1,000 properties that all had work and finished it (moto is slow at 1,000 transactions)."""
    items = [
        item
        for suffix in ("outbox", "meta")
        for item in store.client.query(
            TableName=store.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"{source}#{suffix}"}},
        )["Items"]
    ]
    assert len(items) == 2
    puts = [
        {"PutRequest": {"Item": {**item, "pk": {"S": item["pk"]["S"].replace(source, target, 1)}}}}
        for target in targets
        for item in items
    ]
    for start in range(0, len(puts), 25):
        store.client.batch_write_item(RequestItems={store.table: puts[start : start + 25]})


def emitted(output: str) -> dict[tuple[str, str | None], float]:
    """EMF metrics printed by the handler: (metric name, property dimension) -> value."""
    found: dict[tuple[str, str | None], float] = {}
    for line in output.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for definition in blob["_aws"]["CloudWatchMetrics"]:
            for metric in definition["Metrics"]:
                value = blob[metric["Name"]]
                found[(metric["Name"], blob.get("property"))] = value[0] if isinstance(value, list) else value
    return found


def test_a_sweep_over_1000_idle_properties_costs_two_queries(
    deployment: Deployment, aws_calls: CallCounter, capsys: pytest.CaptureFixture[str]
) -> None:
    store = outbox(deployment)
    finish_one(store, "idle-0000")
    clone_history(store, "idle-0000", [f"idle-{n:04d}" for n in range(1, 1000)])
    capsys.readouterr()
    aws_calls.reset()
    summary = deployment.invoke("SweeperFunction", {"source": "aws.scheduler"})
    assert summary["due"] == 0 and summary["dispatched"] == 0
    assert aws_calls.calls == ["dynamodb.Query", "dynamodb.Query"]
    metrics = emitted(capsys.readouterr().out)
    assert metrics[("OutboxOldestPendingAgeSeconds", None)] == 0
    assert metrics[("OutboxParkedCommands", None)] == 0
    assert not [key for key in metrics if key[1] is not None]  # nothing per idle property


def test_backlog_metrics_name_the_property_its_oldest_command_and_its_parked_ones(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    past = outbox(deployment, clock=lambda: time.time() - 600)
    past.enqueue("slow-site", [COMMAND])  # written ten minutes ago, still not sent
    store = outbox(deployment)
    store.enqueue("slow-site", [COMMAND])  # a newer one does not make the backlog look younger
    store.enqueue("broken-site", [COMMAND, COMMAND])
    for pid in ("broken-site", "broken-site"):
        meta = store.acquire(pid, "test", now=int(time.time()), lease_seconds=60)
        assert meta is not None
        head = store.pending(pid, after=meta.done_up_to, limit=1)[0]
        store.park(pid, "test", head, "[18] unknown address", release=True)
    assert store.parked_counts() == {"broken-site": 2}
    capsys.readouterr()
    deployment.invoke("SweeperFunction", {"source": "aws.scheduler"})
    metrics = emitted(capsys.readouterr().out)
    assert 600 <= metrics[("OutboxOldestPendingAgeSeconds", "slow-site")] < 660
    assert metrics[("OutboxParkedCommands", "broken-site")] == 2
    assert ("OutboxParkedCommands", "slow-site") not in metrics
    assert metrics[("OutboxParkedCommands", None)] == 2
    assert metrics[("OutboxOldestPendingAgeSeconds", None)] >= 600


def test_a_retired_property_leaves_the_backlog_and_its_alarms_for_good(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    import boto3

    store = outbox(deployment)
    store.enqueue("demo-hotel", [COMMAND, COMMAND])  # demo-hotel has no UCM reachable here: commands wait
    meta = store.acquire("demo-hotel", "test", now=int(time.time()), lease_seconds=60)
    assert meta is not None
    store.park("demo-hotel", "test", store.pending("demo-hotel", after=0, limit=1)[0], "[18] unknown address",
               release=True)
    assert [m.property_id for m in store.backlog()] == ["demo-hotel"]
    assert store.parked_counts() == {"demo-hotel": 1}
    # Its stack is deleted: the parameter goes (infra/property.yaml), the sweeper's next run retires it.
    boto3.client("ssm").delete_parameter(Name=f"{deployment.env['CONFIG_PARAMETER_PREFIX']}/demo-hotel")
    deployment.invoke("SweeperFunction", {"source": "aws.scheduler"})
    assert (store.backlog(), store.parked_counts()) == ([], {})
    capsys.readouterr()
    deployment.invoke("SweeperFunction", {"source": "aws.scheduler"})
    assert [key for key in emitted(capsys.readouterr().out) if key[1] == "demo-hotel"] == []
    items = store.client.query(TableName=store.table, KeyConditionExpression="pk = :pk",
                               ExpressionAttributeValues={":pk": {"S": "demo-hotel#outbox"}})["Items"]
    assert len(items) == 2 and all("expires_at" in item for item in items)  # kept until their TTL, no longer


def test_an_invalid_config_keeps_the_outbox_waiting_and_alarmed(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    import boto3

    store = outbox(deployment)
    store.enqueue("demo-hotel", [COMMAND])
    name = f"{deployment.env['CONFIG_PARAMETER_PREFIX']}/demo-hotel"
    ssm = boto3.client("ssm")
    document = json.loads(ssm.get_parameter(Name=name)["Parameter"]["Value"])
    ssm.put_parameter(Name=name, Value=json.dumps({**document, "timezone": "Mars/Olympus"}), Overwrite=True)
    capsys.readouterr()
    deployment.invoke("SweeperFunction", {"source": "aws.scheduler"})
    assert [m.property_id for m in store.backlog()] == ["demo-hotel"]  # a typo retires nothing
    assert ("PropertyConfigInvalid", None) in emitted(capsys.readouterr().out)


def test_a_marker_rewritten_by_a_new_command_survives_retirement(deployment: Deployment) -> None:
    store = outbox(deployment)
    store.enqueue("gone-site", [COMMAND])
    original = store.client.get_item
    def enqueue_meanwhile(**kwargs: Any) -> Any:  # the property's stack re-created, a command arrives
        got = original(**kwargs)
        store.client.get_item = original  # type: ignore[method-assign]
        store.enqueue("gone-site", [COMMAND])
        return got

    store.client.get_item = enqueue_meanwhile  # type: ignore[method-assign]
    assert store.retire("gone-site") == (False, 0)
    assert [m.property_id for m in store.backlog()] == ["gone-site"]


def test_retrying_a_parked_command_clears_its_parked_marker_once(deployment: Deployment) -> None:
    store = outbox(deployment)
    store.enqueue("site-a", [COMMAND])
    meta = store.acquire("site-a", "test", now=int(time.time()), lease_seconds=60)
    assert meta is not None
    head = store.pending("site-a", after=0, limit=1)[0]
    store.park("site-a", "test", head, "[18] unknown address", release=True)
    assert store.parked_counts() == {"site-a": 1}
    new_seq = store.retry_parked("site-a", head.seq)
    assert new_seq > head.seq
    assert store.parked_counts() == {}
    _, commands = store.listing("site-a")
    assert [(c.seq, c.status) for c in commands] == [(head.seq, "retried"), (new_seq, "pending")]
    with pytest.raises(ValueError, match="not parked"):
        store.retry_parked("site-a", head.seq)  # a second operator retrying the same command


def test_a_property_in_backoff_is_in_the_backlog_but_not_due(deployment: Deployment) -> None:
    store = outbox(deployment)
    [seq] = store.enqueue("site-b", [COMMAND])
    later = int(time.time()) + 300
    store.set_due("site-b", later, seq, since=int(time.time()) - 30)
    [marker] = store.backlog()
    assert (marker.property_id, marker.next_due) == ("site-b", later)
    assert store.due_properties(int(time.time())) == []
    store.enqueue("site-b", [COMMAND])  # new work rings the doorbell and makes the property due again
    assert [pid for pid, _ in store.due_properties(int(time.time()))] == ["site-b"]
    assert store.backlog()[0].since == marker.since  # the oldest command is still the same one


# --- least privilege for the two UCM-facing functions -------------------------------------------------------


def stream_event(*property_ids: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventName": "INSERT",
                "eventSource": "aws:dynamodb",
                "dynamodb": {"Keys": {"pk": {"S": f"{pid}#outbox"}, "sk": {"S": "00000000000001"}}},
            }
            for pid in property_ids
        ]
    }


def checkin(address: str) -> tuple[str, dict[str, str]]:
    return ("checkin", {"address": address, "room": address, "firstname": "Ana", "lastname": "Ruiz"})


@pytest.mark.parametrize("function", ["DispatcherFunction", "SweeperFunction"])
def test_the_ucm_functions_policies_allow_exactly_what_they_call(
    deployment: Deployment, iam: IamRecorder, function: str
) -> None:
    """Every path that touches AWS: a command sent, one parked, the last one finishing, a retry backing off,
    a marker with nothing behind it cleared; the config read from SSM and Secrets Manager."""
    from pms_connector.ucm.simulator import UcmSimulator
    from tests.conftest import property_document
    from tests.integration.test_aws_calls import code_actions

    with UcmSimulator(
        api_user="cdrapi", api_password="api-pass", pms_user="admin1", pms_password="admin123", addresses=["101", "102"]
    ) as sim:
        pid = "iam-hotel"
        deployment.add_property(
            property_document(
                id=pid,
                ucm={
                    "base_url": sim.url,
                    "api_user": "cdrapi",
                    "api_password": "api-pass",
                    "pms_user": "admin1",
                    "pms_password": "admin123",
                    "ca_pem": sim.ca_pem,
                },
            )
        )
        store = outbox(deployment)

        def ring() -> None:  # the stream doorbell, or a sweep finding the due marker
            deployment.invoke(function, stream_event(pid) if function == "DispatcherFunction" else {})

        store.enqueue(pid, [checkin("101"), checkin("999"), checkin("102")])  # ok, parked (no such extension), ok
        ring()
        assert store.parked_counts() == {pid: 1}
        assert sim.state()["rooms"]["102"]["checked_in"]
        sim.fail_next(1, code=22)  # UCM busy: the command backs off
        [seq] = store.enqueue(pid, [("checkout", {"address": "102", "room": "102"})])
        ring()
        assert sim.state()["rooms"]["102"]["checked_in"]
        store.client.delete_item(TableName=store.table, Key={"pk": {"S": f"{pid}#outbox"}, "sk": {"S": f"{seq:014d}"}})
        store.set_due(pid, int(time.time()), seq)  # its command expired (TTL) while pending: a stale marker
        ring()
        assert store.backlog() == []
        store.enqueue("gone-hotel", [checkin("101")])  # a property whose stack was deleted: retired
        deployment.invoke(function, stream_event("gone-hotel") if function == "DispatcherFunction" else {})
        assert store.backlog() == []
    assert iam.actions == code_actions(deployment, function)


def test_the_sample_events_drive_the_ucm_functions(deployment: Deployment) -> None:
    """events/ samples for `sam local invoke`-style trials: a doorbell for demo-hotel and a sweep."""
    from tests.conftest import load_event

    store = outbox(deployment)
    store.enqueue("demo-hotel", [COMMAND])
    doorbell = deployment.invoke("DispatcherFunction", load_event("dispatcher-outbox-insert"))
    assert doorbell == {"batchItemFailures": []}
    # No simulator runs here, so demo-hotel's UCM is unreachable: the command backs off, kept.
    [command] = store.listing("demo-hotel")[1]
    assert (command.status, command.attempts) == ("pending", 1) and command.last_error
    sweep = deployment.invoke("SweeperFunction", load_event("sweeper-schedule"))
    assert sweep["due"] == 0 and [m.property_id for m in store.backlog()] == ["demo-hotel"]
