"""`pms-connector property retire` on moto: what a deleted property stack leaves in the table and in the
Scheduler is deleted, the records pmslink has not received are kept first (or knowingly discarded), and
nothing of another property is touched.

Given demo-hotel with a checked-in guest, a wake-up (two schedules), records delivered and undelivered, a
parked and pending outbox commands, charges and inbound entries; and demo-hotel-annex, whose id starts with
demo-hotel's, with its own guest and wake-up, which must survive.
"""

from __future__ import annotations

import io
import json
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import boto3
import pytest

from pms_connector import operator
from pms_connector.operator import OperatorError, delete_items
from pms_connector.outbox import DUE_PK, PARKED_PK, OutboxStore
from pms_connector.store import ConnectorStore
from tests.conftest import Deployment, property_document
from tests.helpers import answer, httppms_event, ingest_event, signed
from tests.integration.test_cli_operator import STACK, Cli, booking, create_stack, dnd, pmslink_sends

PID, ANNEX, RESORT = "demo-hotel", "demo-hotel-annex", "demo-resort"
PACKAGE = Path(operator.__file__).resolve().parent
ZONE = ZoneInfo("Europe/Madrid")


def wake(room: str, uid: str) -> dict[str, Any]:
    now = datetime.now(UTC).astimezone(ZONE)
    waketime = (now + timedelta(days=1)).replace(hour=7, minute=0, second=0).strftime("%Y-%m-%dT%H:%M:%S")
    return {"datetime": now.strftime("%Y-%m-%dT%H:%M:%S"), "action": "WAKE", "room": room, "mode": "S",
            "uid": uid, "waketime": waketime}


@dataclass
class Hotels:
    dep: Deployment
    table: str
    group: str
    undelivered: list[dict[str, Any]]  # what pmslink has not received of demo-hotel, in order

    def arm_wakeups(self) -> None:
        """What the table's stream does: the wake-up items reach the supervisor, which arms their schedules."""
        from pms_connector.local.pollers import matches

        streams = boto3.client("dynamodbstreams")
        arn = boto3.client("dynamodb").describe_table(TableName=self.table)["Table"]["LatestStreamArn"]
        records = []
        for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
            iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                                  ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            records += streams.get_records(ShardIterator=iterator).get("Records", [])
        events = self.dep.template.resources["WakeupFunction"]["Properties"]["Events"]
        patterns = [json.loads(f["Pattern"]) for e in events.values() if e["Type"] == "DynamoDB"
                    for f in e["Properties"]["FilterCriteria"]["Filters"]]
        chosen = [r for r in records if any(matches(p, r) for p in patterns)]
        assert self.dep.invoke("WakeupFunction", {"Records": chosen}) == {"batchItemFailures": []}

    def items(self) -> list[dict[str, Any]]:
        client = boto3.client("dynamodb")
        out: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": self.table}
        while True:
            page = client.scan(**kwargs)
            out += page["Items"]
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def of(self, pid: str) -> list[tuple[str, str]]:
        """The keys of a property's own items, and of its due and parked markers."""
        return sorted((i["pk"]["S"], i["sk"]["S"]) for i in self.items()
                      if i["pk"]["S"].startswith(f"{pid}#")
                      or (i["pk"]["S"] == DUE_PK and i["sk"]["S"] == pid)
                      or (i["pk"]["S"] == PARKED_PK and i["sk"]["S"].startswith(f"{pid}#")))

    def schedules(self, pid: str) -> list[str]:
        """The property's schedules in the group, told by the Input the supervisor gave them."""
        client = boto3.client("scheduler")
        names = [s["Name"] for s in client.list_schedules(GroupName=self.group)["Schedules"]]
        return sorted(n for n in names if json.loads(
            client.get_schedule(Name=n, GroupName=self.group)["Target"]["Input"])["property"] == pid)

    def stack_deleted(self, pid: str) -> None:
        """What deleting the property's stack does: its parameter and secret go."""
        boto3.client("ssm").delete_parameter(Name=f"{self.dep.env['CONFIG_PARAMETER_PREFIX']}/{pid}")
        boto3.client("secretsmanager").delete_secret(SecretId=f"{self.dep.env['CONFIG_SECRET_PREFIX']}/{pid}",
                                                     ForceDeleteWithoutRecovery=True)


def ingest(dep: Deployment, pid: str, records: list[dict[str, Any]]) -> list[int]:
    response = dep.invoke("IngestFunction", ingest_event(pid, records))
    assert response["statusCode"] == 202, response["body"]
    sequence: list[int] = answer(response)["sequence"]
    return sequence


@pytest.fixture
def hotels(deployment: Deployment) -> Hotels:
    table, group = deployment.env["TABLE_NAME"], deployment.names["WakeupScheduleGroup"]
    create_stack(STACK, {"ConnectorTableName": table, "WakeupScheduleGroupName": group,
                         "ConfigParameterPrefix": deployment.env["CONFIG_PARAMETER_PREFIX"],
                         "ConfigSecretPrefix": deployment.env["CONFIG_SECRET_PREFIX"]})
    deployment.add_property(property_document(PID, id=ANNEX, name="Demo Hotel Annex"))

    # demo-hotel: a guest checked in with a wake-up and 30 rooms on DND, all delivered to pmslink...
    ingest(deployment, PID, [booking("101"), wake("101", "w1"), *(dnd(str(200 + i)) for i in range(30))])
    delivered = answer(deployment.invoke("HttppmsFunction", httppms_event(signed(
        {"action": "GET_REQUEST", "property": PID}))))
    assert len(delivered["ACTION_LIST"]) == 32
    # ... then three records pmslink has not received yet.
    undelivered = [dnd("301"), dnd("302"), {**booking("102"), "booking_uid": "bk-2"}]
    assert ingest(deployment, PID, undelivered) == [33, 34, 35]
    # pmslink posted charges (one on a room the PMS never named) and a message.
    for room, units in (("101", 1), ("101", 2), ("909", 1)):
        pmslink_sends(deployment, {"action": "POST", "room": room, "post_type": "M", "article": "WA",
                                   "description": "Water", "units": units, "amount": 2.5})
    pmslink_sends(deployment, {"action": "MSGTXT", "room": "101", "text": "Call me at 7, Zacarías"})
    # The UCM refused the first command: parked by an operator; the others wait.
    outbox = OutboxStore(table)
    first = outbox.pending(PID, after=0, limit=1)[0]
    outbox.park_pending(PID, first.seq, "room unknown on the UCM")

    ingest(deployment, ANNEX, [booking("101"), wake("101", "w1"), dnd("102")])
    hotels = Hotels(deployment, table, group, undelivered)
    hotels.arm_wakeups()
    return hotels


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys)


@pytest.fixture
def batch_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of requests of every BatchWriteItem the CLI's clients send (botocore's before-call event)."""
    sizes: list[int] = []
    real_client = boto3.session.Session.client

    def count(params: dict[str, Any], **_: Any) -> None:  # the request as it goes on the wire
        body = json.loads(params["body"])
        sizes.append(sum(len(requests) for requests in body["RequestItems"].values()))

    def client(self: boto3.session.Session, *args: Any, **kwargs: Any) -> Any:
        made = real_client(self, *args, **kwargs)
        made.meta.events.register("before-call.dynamodb.BatchWriteItem", count)
        return made

    monkeypatch.setattr(boto3.session.Session, "client", client)
    return sizes


def test_retire_refuses_a_live_property_then_undelivered_records_then_keeps_them_and_deletes_the_rest(
        hotels: Hotels, cli: Cli, tmp_path: Path, batch_sizes: list[int]) -> None:
    before, annex = hotels.of(PID), hotels.of(ANNEX)
    assert {pk.split("#", 1)[1] for pk, _ in before if pk.startswith(f"{PID}#")} == {
        "booking", "room", "meta", "wakeup", "fifo", "outbox", "inbound", "dedupe", "request",
        "charges#101", "charges#909"}
    assert (DUE_PK, PID) in before and any(pk == PARKED_PK for pk, _ in before)
    assert len(hotels.schedules(PID)) == 2 and len(hotels.schedules(ANNEX)) == 2
    export = tmp_path / "undelivered.jsonl"

    # While its stack is there, the property is live: refused, nothing read beyond its parameter.
    live = cli("property", "retire", PID, "--export", str(export), "--yes")
    assert live.code == 2
    assert live.err.strip() == (f"error: property '{PID}' is live: its config /pms-connector/dev/properties/"
                                f"{PID} still exists. Delete its stack first (docs/deploy.md), or pass --force")

    hotels.stack_deleted(PID)
    refused = cli("property", "retire", PID, "--yes")
    assert refused.code == 2
    assert refused.err.strip() == (f"error: {PID}: 3 record(s) not received by pmslink yet (after seq 32): keep "
                                   "them with --export FILE, or pass --discard-undelivered")
    assert hotels.of(PID) == before and not export.exists()

    run = cli("property", "retire", PID, "--export", str(export), "--yes")

    assert run.code == 0, run.err
    lines = [json.loads(line) for line in export.read_text(encoding="utf-8").splitlines()]
    # The records as stored for pmslink: as the PMS sent them, with the property the ingest API adds.
    assert lines == [{"seq": seq, "record": {**record, "property": PID}}
                     for seq, record in zip([33, 34, 35], hotels.undelivered, strict=True)]
    assert stat.S_IMODE(export.stat().st_mode) == 0o600
    assert hotels.of(PID) == []  # no item of its own, no due or parked marker
    assert hotels.of(ANNEX) == annex
    assert hotels.schedules(PID) == [] and len(hotels.schedules(ANNEX)) == 2
    assert len(batch_sizes) > 1 and max(batch_sizes) == 25  # batched, and never more than 25 a call
    table = dict(line.rsplit(None, 1) for line in run.out.splitlines()[1:-1])
    counts = {pk: sum(1 for p, _ in before if p == pk) for pk, _ in before}
    own = {pk: n for pk, n in counts.items() if pk.startswith(f"{PID}#")}
    assert table == {**{pk: str(n) for pk, n in own.items()}, "due marker": "1", "parked markers": "1",
                     "wake-up schedules": "2"}
    assert run.out.splitlines()[-1] == (f"{PID}: retired: {sum(own.values())} item(s), 2 outbox marker(s), 2 wake-up "
                                        f"schedule(s) deleted, 3 undelivered record(s) exported to {export}")

    again = cli("property", "retire", PID, "--export", str(tmp_path / "again.jsonl"), "--yes")
    assert again.code == 0, again.err
    assert again.out.strip() == f"{PID}: nothing to retire: no items, outbox markers or wake-up schedules left"
    assert not (tmp_path / "again.jsonl").exists()
    as_json = cli("property", "retire", PID, "--yes", "--json")
    assert json.loads(as_json.out)["nothing_to_do"] is True


def test_a_live_property_is_retired_only_with_force(hotels: Hotels, cli: Cli) -> None:
    run = cli("property", "retire", ANNEX, "--force", "--discard-undelivered", "--yes", "--json")

    assert run.code == 0, run.err
    assert run.err.startswith(f"warning: retiring a live property: its config /pms-connector/dev/properties/{ANNEX}")
    result = json.loads(run.out)
    assert (result["live"], result["undelivered"], result["discarded"], result["exported"]) == (True, 3, 3, 0)
    assert result["schedules_deleted"] == 2 and result["due_marker"] is True
    assert hotels.of(ANNEX) == [] and hotels.schedules(ANNEX) == []
    assert len(hotels.schedules(PID)) == 2 and hotels.of(PID)  # demo-hotel's, though its id is a prefix


def test_an_open_confirm_batch_counts_as_undelivered(hotels: Hotels, cli: Cli) -> None:
    from pms_connector import fifo

    store = ConnectorStore(hotels.table)
    store.append_fifo(RESORT, [dnd("1"), dnd("2"), dnd("3")], retention_seconds=3600)
    batch = fifo.get_request(store, RESORT, mode="confirm", confirm=None, now=time.time())
    assert len(batch.records) == 3 and batch.batch_id  # answered to pmslink, not confirmed
    hotels.stack_deleted(RESORT)

    refused = cli("property", "retire", RESORT, "--yes")
    assert refused.code == 2
    assert "3 record(s) not received by pmslink yet (after seq 0, 3 of them in an unconfirmed batch)" in refused.err
    run = cli("property", "retire", RESORT, "--discard-undelivered", "--yes", "--json")
    assert run.code == 0, run.err
    result = json.loads(run.out)
    assert result["deleted"]["fifo"] == 3 and result["deleted"]["meta"] == 1 and result["discarded"] == 3
    assert hotels.of(RESORT) == []


def test_it_asks_on_a_terminal_and_needs_yes_off_one(hotels: Hotels, cli: Cli, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    hotels.stack_deleted(PID)
    before = hotels.of(PID)
    script = cli("property", "retire", PID, "--discard-undelivered")
    assert script.code == 2
    assert script.err.strip() == "error: property retire asks for confirmation: pass --yes when not on a terminal"

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    declined = cli("property", "retire", PID, "--discard-undelivered")
    assert declined.code == 1
    assert re.search(rf"{PID}: \d+ item\(s\) in 11 partition\(s\), 2 outbox marker\(s\) and 2 wake-up "
                     r"schedule\(s\) will be deleted for good; 3 undelivered record\(s\) discarded\. Go on\? \[y/N\]",
                     declined.err), declined.err
    assert hotels.of(PID) == before

    taken = tmp_path / "taken.jsonl"
    taken.write_text("mine\n", encoding="utf-8")
    exists = cli("property", "retire", PID, "--export", str(taken), "--yes")
    assert exists.code == 2 and "exists: not overwritten" in exists.err
    assert taken.read_text(encoding="utf-8") == "mine\n" and hotels.of(PID) == before


def test_without_a_stack_the_table_and_schedule_group_come_from_the_environment(hotels: Hotels, cli: Cli) -> None:
    hotels.stack_deleted(PID)  # $TABLE_NAME and $WAKEUP_SCHEDULE_GROUP: the functions' variables
    run = cli("property", "retire", PID, "--discard-undelivered", "--yes", "--json", stack=False)
    assert run.code == 0, run.err
    assert json.loads(run.out)["schedule_group"] == hotels.group
    assert hotels.of(PID) == [] and hotels.schedules(PID) == []


def test_a_stack_without_the_group_output_names_it_by_its_resource(hotels: Hotels, cli: Cli) -> None:
    # moto's CloudFormation cannot make a schedule group: an SSM parameter named like it stands in for the
    # WakeupScheduleGroup resource (its physical id is its name), which is all DescribeStackResource returns.
    template = {"Resources": {"WakeupScheduleGroup": {"Type": "AWS::SSM::Parameter", "Properties": {
        "Name": hotels.group, "Type": "String", "Value": "stand-in"}}},
        "Outputs": {"ConnectorTableName": {"Value": hotels.table}}}
    boto3.client("cloudformation").create_stack(StackName="older", TemplateBody=json.dumps(template))
    hotels.stack_deleted(PID)
    run = cli("property", "retire", PID, "--discard-undelivered", "--yes", "--json", "--stack", "older",
              stack=False)
    assert run.code == 0, run.err
    assert json.loads(run.out)["schedules_deleted"] == 2 and hotels.schedules(PID) == []


# ------------------------------------------------------------------------------------------- the deletes


class ThrottledTable:
    """A DynamoDB client whose BatchWriteItem leaves the last request of each call unprocessed, ``refusals``
    times in all."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.calls: list[list[Any]] = []

    def batch_write_item(self, RequestItems: dict[str, list[Any]]) -> dict[str, Any]:
        [requests] = RequestItems.values()
        self.calls.append(requests)
        if self.refusals:
            self.refusals -= 1
            return {"UnprocessedItems": {"t": requests[-1:]}}
        return {"UnprocessedItems": {}}


def keys(count: int) -> list[dict[str, Any]]:
    return [{"pk": {"S": "p#fifo"}, "sk": {"S": f"{i:014d}"}} for i in range(count)]


def test_deletes_go_25_a_call_and_unprocessed_ones_are_retried_with_backoff() -> None:
    table, sleeps = ThrottledTable(refusals=3), []
    progress: list[tuple[int, int | None]] = []

    assert delete_items(table, "t", keys(60), lambda d, t: progress.append((d, t)), sleeps.append) == 60

    assert [len(c) for c in table.calls] == [25, 1, 1, 1, 25, 10]
    deleted = sorted(r["DeleteRequest"]["Key"]["sk"]["S"] for c in table.calls for r in c)
    assert len(set(deleted)) == 60
    assert 0 < sleeps[0] < sleeps[1] < sleeps[2]  # exponential backoff (each within its jittered range)
    assert progress[-1] == (60, 60)


def test_deletes_still_unprocessed_after_every_try_fail_the_command() -> None:
    table = ThrottledTable(refusals=100)
    with pytest.raises(OperatorError, match="1 delete\\(s\\) unprocessed after 8 tries") as failed:
        delete_items(table, "t", keys(3), sleep=lambda _s: None)
    assert failed.value.exit_code == 1 and len(table.calls) == 8


# --------------------------------------------------------------------------------------- the partitions


def _sources() -> Iterator[tuple[Path, str]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, path.read_text(encoding="utf-8")


def test_every_partition_the_code_writes_is_one_retire_deletes() -> None:
    """A new "{pid}#word" key in the package must be added to PROPERTY_PARTITIONS (or retire leaves it)."""
    found: dict[str, set[str]] = {}
    for path, text in _sources():
        for word in re.findall(r"\{[^{}\s]+\}#([a-z_]+)", text):  # f"{pid}#fifo", ``{pid}#room``...
            found.setdefault(word, set()).add(path.name)
        for word in re.findall(r"_versioned_put\(\s*[\w.]+,\s*\"([a-z_]+)\"", text):  # f"{pid}#{kind}"
            found.setdefault(word, set()).add(path.name)
    unknown = {w: sorted(files) for w, files in found.items() if w not in operator.PROPERTY_PARTITIONS}
    assert not unknown, f"partitions retire does not delete: {unknown} (add them to PROPERTY_PARTITIONS)"
    assert set(operator.PROPERTY_PARTITIONS) <= set(found), "PROPERTY_PARTITIONS names one the code no longer has"
