"""The operator CLI against a "deployed" stack on moto: what an operator sees on the terminal, and exit codes.

The stack is a CloudFormation stack on moto whose Outputs name the resources the `deployment` fixture built
from template.yaml (moto cannot build the SAM template itself; DescribeStacks is all the CLI reads).
"""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from pms_connector.cli import main
from pms_connector.config import UcmSettings
from pms_connector.outbox import OutboxMeta, OutboxStore
from pms_connector.store import ConnectorStore, seq_key
from pms_connector.ucm.client import UcmClient, ucm_token
from pms_connector.ucm.simulator import UcmSimulator
from tests.conftest import Deployment, demo_documents, property_document
from tests.helpers import answer, httppms_event, ingest_event, signed

STACK = "pms-connector-test"
INGEST, HTTPPMS = "IngestFunction", "HttppmsFunction"
GUEST = {"uid": "g1", "main": True, "name": "Zacarías", "surname": "Quiñones-Oyelaran", "language": "es",
         "email": "zq@example.org", "mobile": "+34600111222", "passport": "PX9988776"}
PERSONAL = ("Zacarías", "Quiñones", "zq@example.org", "+34600111222", "PX9988776", "Call me at 7")
SIM_API_PASSWORD, SIM_PMS_PASSWORD = "sim-api-password-1", "sim-pms-password-1"
WRONG_API_PASSWORD, WRONG_PMS_PASSWORD = "wrong-api-password", "wrong-pms-password"


def _secrets() -> list[str]:
    from pms_connector.config import parse_properties, split_secrets

    values = [SIM_API_PASSWORD, SIM_PMS_PASSWORD, WRONG_API_PASSWORD, WRONG_PMS_PASSWORD]
    for config in parse_properties(demo_documents()).values():
        for section in split_secrets(config)[1].values():
            values += section.values()
    return values


SECRETS = _secrets()


@dataclass
class Run:
    code: int
    out: str
    err: str


@dataclass
class Cli:
    capsys: pytest.CaptureFixture[str]

    def __call__(self, *argv: str, stack: bool = True) -> Run:
        self.capsys.readouterr()  # what the handlers printed before (their logs) is not the command's
        code = main([*argv, *(["--stack", STACK] if stack else [])])
        captured = self.capsys.readouterr()
        printed = captured.out + captured.err
        for value in (*SECRETS, *PERSONAL):  # never a secret or a guest's personal data, whatever the command
            assert value not in printed, f"{value!r} printed by {argv}"
        assert "Traceback" not in printed
        # Off a terminal (capsys is not one, nor is a script's pipe): no progress bar, no control character.
        assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f]", printed), f"control characters printed by {argv}"
        return Run(code, captured.out, captured.err)


@pytest.fixture
def stack(deployment: Deployment) -> Deployment:
    """A stack whose Outputs point at the deployment's resources."""
    outputs = {
        "ApiUrl": "https://example.execute-api.us-east-1.amazonaws.com/",
        "EventBusName": deployment.env["EVENT_BUS_NAME"],
        "ConnectorTableName": deployment.env["TABLE_NAME"],
        "ConfigParameterPrefix": deployment.env["CONFIG_PARAMETER_PREFIX"],
        "ConfigSecretPrefix": deployment.env["CONFIG_SECRET_PREFIX"],
        "AlarmTopicArn": "arn:aws:sns:us-east-1:123456789012:alarms",
        "DashboardUrl": "https://console.aws.amazon.com/cloudwatch/home#dashboards",
    }
    create_stack(STACK, outputs)
    return deployment


def create_stack(name: str, outputs: dict[str, str], environment: str = "dev") -> None:
    template = {
        "Parameters": {"Environment": {"Type": "String"}},
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},  # a stack needs one resource
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    boto3.client("cloudformation").create_stack(
        StackName=name, TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": "Environment", "ParameterValue": environment}])


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys)


def dnd(room: str) -> dict[str, Any]:
    return {"datetime": "2026-01-01T10:00:00", "action": "DND", "room": room, "active": True}


def booking(room: str = "101") -> dict[str, Any]:
    return {"datetime": "2026-01-01T10:00:00", "action": "BOOKING", "booking_uid": "bk-1", "status": "checkin",
            "room": room, "arrival": "2026-01-01T10:00:00", "departure": "2035-01-03T10:00:00",
            "GUEST_LIST": [GUEST]}


def ingest(dep: Deployment, records: list[dict[str, Any]]) -> list[int]:
    response = dep.invoke(INGEST, ingest_event("demo-hotel", records))
    assert response["statusCode"] == 202, response["body"]
    sequence: list[int] = answer(response)["sequence"]
    return sequence


def get_request(dep: Deployment) -> list[dict[str, Any]]:
    body = answer(dep.invoke(HTTPPMS, httppms_event(signed({"action": "GET_REQUEST", "property": "demo-hotel"}))))
    return list(body.get("ACTION_LIST", []))


def pmslink_sends(dep: Deployment, request: dict[str, Any]) -> None:
    body = answer(dep.invoke(HTTPPMS, httppms_event(signed({"property": "demo-hotel", **request}))))
    assert body["code"] == 0, body


def written_hours_ago(dep: Deployment, seqs: list[int], hours: float) -> None:
    """Given records written some hours ago (the ingest API stamps them with the current time)."""
    import time

    client = boto3.client("dynamodb")
    for seq in seqs:
        client.update_item(TableName=dep.env["TABLE_NAME"], Key={"pk": {"S": "demo-hotel#fifo"},
                                                                 "sk": {"S": seq_key(seq)}},
                           UpdateExpression="SET ingested_at = :t",
                           ExpressionAttributeValues={":t": {"N": str(int(time.time() - hours * 3600))}})


# ------------------------------------------------------------------------------------ stack and lists


def test_property_list_shows_every_property_with_its_queue_and_outbox(stack: Deployment, cli: Cli) -> None:
    ingest(stack, [booking("101"), dnd("102"), dnd("103")])  # a check-in: one UCM command in the outbox

    run = cli("property", "list")

    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert lines[0].split() == ["ID", "NAME", "TIMEZONE", "AUTH", "DELIVERY", "UCM", "POLLING", "QUEUE",
                                "OUTBOX", "PARKED"]
    hotel = next(line for line in lines if line.startswith("demo-hotel "))
    resort = next(line for line in lines if line.startswith("demo-resort "))
    assert "Europe/Madrid" in hotel and " md5 " in hotel and " remove " in hotel
    assert hotel.split()[-4:-2] == ["3", "pending"]  # 3 records for pmslink, the outbox has work
    assert " token " in resort and " confirm " in resort
    assert resort.split()[-3:] == ["0", "idle", "0"]
    assert "2 properties: 3 record(s) waiting for pmslink, 1 outbox(es)" in lines[-1]

    as_json = cli("property", "list", "--json")
    rows = {row["property_id"]: row for row in json.loads(as_json.out)}
    assert rows["demo-hotel"]["queue"]["pending"] == 3
    assert rows["demo-resort"]["polling"] is True and rows["demo-hotel"]["ucm"] is True


def test_without_a_stack_the_table_and_environment_are_used(deployment: Deployment, cli: Cli) -> None:
    run = cli("queue", "depth", "--environment", "dev", stack=False)  # $TABLE_NAME from the deployment
    assert run.code == 0, run.err
    assert [line.split()[0] for line in run.out.splitlines()[1:3]] == ["demo-hotel", "demo-resort"]

    elsewhere = cli("queue", "depth", "--environment", "qa", stack=False)
    assert elsewhere.code == 0
    assert "no properties under /pms-connector/qa/properties" in elsewhere.err


def test_a_stack_that_does_not_exist_or_is_not_ours_is_a_usage_error(stack: Deployment, cli: Cli) -> None:
    missing = cli("property", "list", "--stack", "nope", stack=False)
    assert missing.code == 2
    assert missing.err.strip() == "error: stack 'nope' not found in region us-east-1"

    create_stack("other", {"Something": "else"})
    other = cli("property", "list", "--stack", "other", stack=False)
    assert other.code == 2
    assert "has no output ConnectorTableName" in other.err

    both = cli("queue", "depth", "--table", "t")
    assert both.code == 2 and "not both" in both.err


def test_the_resources_are_the_stacks_outputs(stack: Deployment, cli: Cli) -> None:
    create_stack("qa", {"ConnectorTableName": "qa-table", "ConfigParameterPrefix": "/pms-connector/qa/properties",
                        "ConfigSecretPrefix": "pms-connector/qa/properties"})
    listing = cli("property", "list", "--stack", "qa", stack=False)
    assert listing.code == 0
    assert "no properties under /pms-connector/qa/properties" in listing.err
    depth = cli("queue", "depth", "demo-hotel", "--stack", "qa", stack=False)
    assert depth.code == 1 and "ResourceNotFoundException" in depth.err  # qa-table, not $TABLE_NAME

    create_stack("older", {"ConnectorTableName": stack.env["TABLE_NAME"]}, environment="dev")
    from_parameter = cli("queue", "depth", "--stack", "older", stack=False)  # prefixes from Environment
    assert from_parameter.code == 0
    assert from_parameter.out.splitlines()[1].split()[0] == "demo-hotel"


def test_an_aws_error_is_one_line_and_exit_1(deployment: Deployment, cli: Cli) -> None:
    run = cli("queue", "depth", "demo-hotel", "--table", "no-such-table", stack=False)
    assert run.code == 1
    assert run.err.startswith("error: ") and "ResourceNotFoundException" in run.err
    assert len(run.err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------ show and validate


def test_property_show_prints_the_config_without_secrets(stack: Deployment, cli: Cli) -> None:
    ingest(stack, [dnd("101")])

    run = cli("property", "show", "demo-hotel")

    assert run.code == 0, run.err
    assert "  httppms.auth: md5" in run.out
    assert "  ucm.base_url: https://ucm-simulator" in run.out
    for field in ("httppms.password", "ingest.api_key", "ucm.api_password", "ucm.pms_password"):
        assert f"  {field}: set" in run.out
    assert "httppms.token" not in run.out  # md5 auth needs no token
    assert "queue: 1 pending (newest seq 1, delivered up to 0)" in run.out
    assert "outbox: idle, 0 parked" in run.out

    unknown = cli("property", "show", "no-hotel")
    assert unknown.code == 2 and "no property 'no-hotel'" in unknown.err


def test_property_show_tells_a_held_site_its_hold_and_why(stack: Deployment, cli: Cli, sim: UcmSimulator) -> None:
    # Given a site whose UCM refuses the PMS token: the dispatcher's first command holds it
    site(stack, "site-held", sim, pms_password=WRONG_PMS_PASSWORD)
    store = OutboxStore(stack.env["TABLE_NAME"])
    assert store.meta("site-held") is None  # no dispatcher has touched its outbox yet
    store.enqueue("site-held", [("checkout", {"address": "101", "room": "101"})])
    before = int(time.time())
    stack.invoke("DispatcherFunction", {"Records": [{"eventName": "INSERT", "eventSource": "aws:dynamodb", "dynamodb": {
        "Keys": {"pk": {"S": "site-held#outbox"}, "sk": {"S": seq_key(1)}}}}]})

    # When an operator looks at it
    meta = store.meta("site-held")
    shown = cli("property", "show", "site-held", "--json")

    # Then the hold is there, until when and why, read without taking the dispatcher's lease
    assert meta is not None and meta.held_until > before
    assert meta == OutboxMeta(done_up_to=0, held_until=meta.held_until, hold_reason="[16] Auth error !")
    assert shown.code == 0, shown.err
    detail = json.loads(shown.out)
    assert detail["hold"] == {"until": meta.held_until, "reason": "[16] Auth error !"}
    assert detail["outbox"]["pending_since"] is not None  # the command waits for the hold to end
    assert store.acquire("site-held", "after-show", now=int(time.time()), lease_seconds=30) is not None

    healthy = json.loads(cli("property", "show", "demo-hotel", "--json").out)
    assert healthy["hold"] is None
    text = cli("property", "show", "site-held")
    assert re.fullmatch(r"held until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(in [45]m\): \[16\] Auth error !",
                        text.out.splitlines()[-1]), text.out
    assert "held" not in cli("property", "show", "demo-hotel").out


def test_property_validate_names_each_invalid_field_and_exits_2(stack: Deployment, cli: Cli) -> None:
    ssm, secrets = boto3.client("ssm"), boto3.client("secretsmanager")
    broken = property_document("demo-hotel", id="broken-hotel", timezone="Mars/Olympus")
    for section, key in (("httppms", "password"), ("ingest", "api_key"), ("ucm", "api_password"),
                         ("ucm", "pms_password")):
        broken[section].pop(key)
    ssm.put_parameter(Name=f"{stack.env['CONFIG_PARAMETER_PREFIX']}/broken-hotel", Value=json.dumps(broken),
                      Type="String")
    secrets.create_secret(Name=f"{stack.env['CONFIG_SECRET_PREFIX']}/broken-hotel",
                          SecretString=json.dumps({"httppms": {"password": "broken-password-1"},
                                                   "ucm": {"api_password": "a", "pms_password": "b"}}))

    assert cli("property", "validate", "demo-hotel").code == 0
    one = cli("property", "validate", "broken-hotel")
    every = cli("property", "validate", "--all")

    assert one.code == every.code == 2
    assert "property 'broken-hotel': timezone: unknown IANA time zone 'Mars/Olympus'" in one.out
    assert "property 'broken-hotel': ingest.api_key: is required" in one.out
    assert "broken-password-1" not in one.out + every.out
    assert [line.split()[:2] for line in every.out.splitlines() if not line.startswith(" ")][:3] == [
        ["INVALID", "broken-hotel"], ["ok", "demo-hotel"], ["ok", "demo-resort"]]
    assert every.out.splitlines()[-1] == "2 valid, 1 invalid"
    assert cli("property", "validate").code == 2  # an ID or --all


# ---------------------------------------------------------------------------------------------- queues


def test_queue_depth_is_newest_seq_minus_the_delivered_cursor(stack: Deployment, cli: Cli) -> None:
    ingest(stack, [dnd("1"), dnd("2"), dnd("3")])
    get_request(stack)
    ingest(stack, [dnd("4"), dnd("5")])

    run = cli("queue", "depth", "demo-hotel")

    assert run.code == 0, run.err
    row = run.out.splitlines()[1].split()
    assert row[:4] == ["demo-hotel", "5", "3", "2"]


def test_queue_replay_since_delivers_the_records_written_since_then_again(stack: Deployment, cli: Cli,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    ingest(stack, [dnd("1"), dnd("2"), dnd("3")])
    written_hours_ago(stack, [1, 2, 3], 3)
    ingest(stack, [dnd("4"), dnd("5")])
    assert len(get_request(stack)) == 5

    not_interactive = cli("queue", "replay", "demo-hotel", "--since", "2h")
    assert not_interactive.code == 2 and "--yes" in not_interactive.err

    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda *_: "n")
    declined = cli("queue", "replay", "demo-hotel", "--since", "2h")
    assert declined.code == 1
    assert declined.out == "" and "will be delivered again. Go on? [y/N]" in declined.err  # stdout: output only
    assert get_request(stack) == []

    run = cli("queue", "replay", "demo-hotel", "--since", "2h", "--yes")
    assert run.code == 0, run.err
    assert "demo-hotel: 2 record(s) written since" in run.out and "(seq 4..5)" in run.out
    assert [r["room"] for r in get_request(stack)] == ["4", "5"]

    from datetime import UTC, datetime, timedelta

    iso = (datetime.now(UTC) - timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert cli("queue", "replay", "demo-hotel", "--since", iso, "--yes").code == 0
    assert [r["room"] for r in get_request(stack)] == ["1", "2", "3", "4", "5"]

    as_json = cli("queue", "replay", "demo-hotel", "--since", iso, "--yes", "--json")
    assert as_json.code == 0
    assert {k: v for k, v in json.loads(as_json.out).items() if k != "since"} == {
        "property_id": "demo-hotel", "from_seq": 1, "delivered_up_to": 5, "count": 5, "replayed": True}
    assert len(get_request(stack)) == 5

    written_hours_ago(stack, [4, 5], 1)
    nothing = cli("queue", "replay", "demo-hotel", "--since", "30m", "--yes")
    assert nothing.code == 0 and "no record written since" in nothing.out
    ingest(stack, [dnd("6")])
    pending = cli("queue", "replay", "demo-hotel", "--since", "30m", "--yes")
    assert pending.code == 0 and "(from seq 6) are not delivered yet" in pending.out
    assert cli("queue", "replay", "demo-hotel", "--since", "yesterday", "--yes").code == 2
    assert cli("queue", "replay", "no-hotel", "--since", "2h", "--yes").code == 2


# ------------------------------------------------------------------------------------ outbox and inbound


def test_outbox_commands_work_with_a_stack(stack: Deployment, cli: Cli) -> None:
    ingest(stack, [booking("101")])

    listing = cli("outbox", "list", "demo-hotel")
    assert listing.code == 0, listing.err
    header, row, summary = listing.out.splitlines()
    assert header.split() == ["SEQ", "STATE", "ACTION", "ADDRESS", "ATTEMPTS", "LAST", "ERROR"]
    seq = row.split()[0]
    assert row.split()[1:] == ["pending", "checkin", "101", "0"]
    assert summary == "1 pending, 0 parked (of the last 1)"

    parked = cli("outbox", "park", "--property", "demo-hotel", "--seq", seq, "--reason", "room closed")
    assert parked.code == 0, parked.err
    listed = json.loads(cli("outbox", "list", "demo-hotel", "--json").out)
    assert listed == [{"seq": int(seq), "state": "parked", "action": "checkin", "address": "101", "attempts": 1,
                       "last_error": "parked by operator: room closed"}]  # the fields (the guest's name): never
    retried = cli("outbox", "retry", "demo-hotel", "--seq", seq, "--json")
    assert retried.code == 0, retried.err
    queued = json.loads(retried.out)
    assert queued == {"property": "demo-hotel", "seq": int(seq), "queued_as": queued["queued_as"]}
    assert queued["queued_as"] > int(seq)
    assert cli("outbox", "retry", "demo-hotel", "--seq", seq).code == 1  # no longer parked
    again = cli("outbox", "park", "demo-hotel", "--seq", str(queued["queued_as"]), "--reason", "still closed",
                "--json")
    assert json.loads(again.out) == {"property": "demo-hotel", "seq": queued["queued_as"], "parked": True,
                                     "reason": "still closed"}
    assert cli("outbox", "list").code == 2  # which property?


def test_outbox_list_pages_through_many_commands(stack: Deployment, cli: Cli) -> None:
    store = OutboxStore(stack.env["TABLE_NAME"])
    for first in range(0, 250, 50):
        store.enqueue("demo-hotel", [("checkout", {"address": str(100 + n), "room": str(100 + n)})
                                     for n in range(first, first + 50)])

    default = cli("outbox", "list", "demo-hotel")
    many = json.loads(cli("outbox", "list", "demo-hotel", "--limit", "180", "--json").out)
    every = json.loads(cli("outbox", "list", "demo-hotel", "--limit", "1000", "--json").out)

    assert [line.split()[0] for line in default.out.splitlines()[1:-1]] == [str(s) for s in range(221, 251)]
    assert default.out.splitlines()[-1] == "30 pending, 0 parked (of the last 30)"
    assert [row["seq"] for row in many] == list(range(71, 251))  # one query for the newest 100, then pages
    assert [row["seq"] for row in every] == list(range(1, 251))
    assert cli("outbox", "list", "demo-hotel", "--limit", "0").code == 2


def test_long_cells_are_cut_with_an_ellipsis(stack: Deployment, cli: Cli) -> None:
    store = OutboxStore(stack.env["TABLE_NAME"])
    store.enqueue("demo-hotel", [("checkout", {"address": "101", "room": "101"})])
    store.park_pending("demo-hotel", 1, "the extension was renumbered during the refurbishment of the third floor")

    row = cli("outbox", "list", "demo-hotel").out.splitlines()[1]

    assert row.endswith("…") and len(row.split("  ")[-1]) == 60
    assert json.loads(cli("outbox", "list", "demo-hotel", "--json").out)[0]["last_error"].endswith("third floor")


def test_fifo_commands_print_json_with_json(stack: Deployment, cli: Cli) -> None:
    ingest(stack, [booking("101"), dnd("102")])
    get_request(stack)
    ingest(stack, [dnd("103")])

    table = cli("fifo", "list", "--property", "demo-hotel")
    listed = cli("fifo", "list", "--property", "demo-hotel", "--json")
    status = cli("fifo", "status", "--property", "demo-hotel", "--json")
    replayed = cli("fifo", "replay", "--property", "demo-hotel", "--from-seq", "2", "--json")

    assert table.code == listed.code == status.code == replayed.code == 0
    assert table.out.splitlines()[0].split() == ["SEQ", "STATE", "ACTION", "ROOM", "WRITTEN", "(UTC)"]
    assert [line.split()[:4] for line in table.out.splitlines()[1:]] == [
        ["1", "delivered", "BOOKING", "101"], ["2", "delivered", "DND", "102"], ["3", "pending", "DND", "103"]]
    rows = json.loads(listed.out)
    assert [(r["seq"], r["state"], r["action"], r["room"]) for r in rows] == [
        (1, "delivered", "BOOKING", "101"), (2, "delivered", "DND", "102"), (3, "pending", "DND", "103")]
    assert set(rows[0]) == {"seq", "state", "action", "room", "ingested_at"}  # never the record (the guest)
    assert json.loads(status.out)["pending"] == 1
    assert json.loads(replayed.out) == {"property": "demo-hotel", "delivered_up_to": 1}


def test_queue_depth_prints_json_with_json(stack: Deployment, cli: Cli) -> None:
    ingest(stack, [dnd("1"), dnd("2")])

    rows = json.loads(cli("queue", "depth", "--json").out)

    assert [(r["property_id"], r["pending"]) for r in rows] == [("demo-hotel", 2), ("demo-resort", 0)]


def test_a_progress_bar_runs_on_a_terminal_only(stack: Deployment, cli: Cli, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import functools

    from pms_connector import cli as module

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(module, "_ProgressBar", functools.partial(module._ProgressBar, stream=terminal, delay=0))
    plain = main(["property", "list", "--stack", STACK])
    out = capsys.readouterr().out

    assert plain == 0
    drawn = terminal.getvalue()
    assert "\r[" in drawn and "] 2/2 properties 100% " in drawn and drawn.endswith(" s\n")
    assert re.search(r"\r\x1b\[K2 properties in \d+\.\d s\n$", drawn), drawn
    assert "\r" not in out and out.splitlines()[0].startswith("ID ")  # the table is unchanged on stdout


def test_inbound_tail_shows_action_room_and_time_only(stack: Deployment, cli: Cli,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pmslink_sends(stack, {"action": "MSGTXT", "room": "101", "text": "Call me at 7, Zacarías"})
    pmslink_sends(stack, {"action": "POST", "room": "102", "post_type": "M", "article": "WA",
                          "description": "Water", "units": 1, "amount": 2.5})

    run = cli("inbound", "tail", "demo-hotel", "--limit", "5")

    assert run.code == 0, run.err
    header, *rows = run.out.splitlines()
    assert header.split() == ["SEQ", "RECEIVED", "(Europe/Madrid)", "ACTION", "ROOM", "BUS"]
    assert [row.split()[0::3] for row in rows] == [["1", "MSGTXT"], ["2", "POST"]]
    assert [row.split()[4:] for row in rows] == [["101", "published"], ["102", "published"]]
    assert cli("inbound", "tail", "demo-hotel", "--limit", "1").out.splitlines()[1].split()[0] == "2"
    as_json = json.loads(cli("inbound", "tail", "demo-hotel", "--json").out)  # one document
    assert [(r["seq"], r["action"], r["room"], r["published"]) for r in as_json] == [
        (1, "MSGTXT", "101", True), (2, "POST", "102", True)]
    assert all(set(r) == {"seq", "action", "room", "received_at", "published"} for r in as_json)

    from pms_connector import operator

    sleeps: list[float] = []

    def sleep(seconds: float) -> None:  # the first poll finds a new request; the second is Ctrl-C
        sleeps.append(seconds)
        if len(sleeps) == 1:
            pmslink_sends(stack, {"action": "DND", "room": "103", "active": True})
        else:
            raise KeyboardInterrupt

    monkeypatch.setattr(operator.time, "sleep", sleep)
    follow = cli("inbound", "tail", "demo-hotel", "--follow")
    assert follow.code == 130
    assert sleeps == [2.0, 2.0]
    lines = follow.out.splitlines()
    assert lines[-1].split()[0::3] == ["3", "DND"]
    assert lines[-1].index("DND") == lines[0].index("ACTION")  # a new entry lines up under the header

    def interrupt(_seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(operator.time, "sleep", interrupt)
    followed = cli("inbound", "tail", "demo-hotel", "--follow", "--json")  # a stream: one object a line
    assert followed.code == 130
    assert [json.loads(line)["seq"] for line in followed.out.splitlines()] == [1, 2, 3]
    assert cli("inbound", "tail", "no-hotel").code == 2


def test_the_inbound_tail_is_the_newest_sequence_of_the_inbound_log(stack: Deployment) -> None:
    store = ConnectorStore(stack.env["TABLE_NAME"])
    assert store.inbound_tail("demo-hotel") == 0  # nothing received yet

    for room in ("101", "102", "103"):
        pmslink_sends(stack, {"action": "DND", "room": room, "active": True})

    assert store.inbound_tail("demo-hotel") == 3
    assert store.inbound_tail("demo-resort") == 0  # one log per property
    assert store.fifo_tail("demo-hotel") == 0  # and not the FIFO's


# ------------------------------------------------------------------------------------------- check-ucm


@pytest.fixture
def sim() -> Iterator[UcmSimulator]:
    with UcmSimulator(api_user="cdrapi", api_password=SIM_API_PASSWORD, pms_user="admin1",
                      pms_password=SIM_PMS_PASSWORD, addresses=["101", "102"]) as simulator:
        yield simulator


def site(dep: Deployment, pid: str, sim: UcmSimulator, **ucm: Any) -> None:
    settings = {"base_url": sim.url, "api_user": "cdrapi", "api_password": SIM_API_PASSWORD, "pms_user": "admin1",
                "pms_password": SIM_PMS_PASSWORD, "ca_pem": sim.ca_pem, "connect_timeout_seconds": 2.0, **ucm}
    dep.add_property(property_document("demo-hotel", id=pid, ucm=settings))


def test_check_ucm_probes_reachability_tls_and_credentials_without_touching_guests(
        stack: Deployment, cli: Cli, sim: UcmSimulator) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with UcmSimulator(api_user="x", api_password="y", pms_user="x", pms_password="y", addresses=[]) as other:
        foreign_ca = other.ca_pem
    site(stack, "site-ok", sim)
    site(stack, "site-password", sim, api_password=WRONG_API_PASSWORD)
    site(stack, "site-token", sim, pms_password=WRONG_PMS_PASSWORD)
    site(stack, "site-ca", sim, ca_pem=foreign_ca)
    site(stack, "site-closed", sim, base_url=f"https://127.0.0.1:{closed}")

    ok = cli("property", "check-ucm", "site-ok", "--from-here")
    assert ok.code == 0, ok.out + ok.err
    assert ok.out.splitlines()[0] == f"site-ok: UCM {sim.url}, checked from this machine"
    steps = [line.split()[:2] for line in ok.out.splitlines()[1:-1]]
    assert steps == [["dns", "ok"], ["tcp", "ok"], ["tls", "ok"], ["login", "ok"], ["token", "ok"]]
    assert "certificate commonName=localhost trusted" in ok.out and " ms " in ok.out
    assert ok.out.splitlines()[-1] == "all checks passed"
    without_stack = cli("property", "check-ucm", "site-ok", stack=False)  # $TABLE_NAME, --environment dev
    assert without_stack.code == 0 and "checked from this machine" in without_stack.out
    report = json.loads(cli("property", "check-ucm", "site-ok", "--from-here", "--json").out)
    assert (report["property"], report["exit_code"], report["checked_from"]) == ("site-ok", 0, "this machine")
    assert [s["name"] for s in report["steps"]] == ["dns", "tcp", "tls", "login", "token"]

    cases = {"site-password": (5, "login"), "site-token": (5, "token"), "site-ca": (4, "tls"),
             "site-closed": (3, "tcp")}
    for pid, (code, step) in cases.items():
        run = cli("property", "check-ucm", pid, "--from-here")
        assert run.code == code, (pid, run.out, run.err)
        failed = next(line.split() for line in run.out.splitlines() if " FAIL " in line)
        assert failed[:2] == [step, "FAIL"], run.out
        assert run.out.splitlines()[-1] == f"check failed (exit {code})"

    # Only empty requests reached the UCM: no room was read or changed.
    assert {entry["action"] for entry in sim.log()} == {None}
    assert {entry["code"] for entry in sim.log()} == {-9, 16}
    assert not any(room["checked_in"] for room in sim.state()["rooms"].values())

    no_ucm = cli("property", "check-ucm", "demo-resort", "--from-here")
    assert no_ucm.code == 2 and "no ucm section" in no_ucm.err


# ---------------------------------------------------------------------------------------- UcmClient.probe


def ucm_settings(sim: UcmSimulator, **overrides: Any) -> UcmSettings:
    return UcmSettings.model_validate({
        "base_url": sim.url, "api_user": "cdrapi", "api_password": SIM_API_PASSWORD, "pms_user": "admin1",
        "pms_password": SIM_PMS_PASSWORD, "ca_pem": sim.ca_pem, "connect_timeout_seconds": 2.0, **overrides})


def probe(settings: UcmSettings) -> tuple[int | None, str, str, int | None]:
    with UcmClient(settings) as client:
        reply = client.probe()
    return reply.code, reply.text, reply.outcome, reply.http_status


def test_probe_accepts_the_right_credentials_and_touches_no_room(sim: UcmSimulator,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    assert probe(ucm_settings(sim)) == (-9, "Action error !", "ok", 200)

    assert sim.log() == [{"action": None, "address": None, "fields": {}, "code": -9}]
    assert not any(room["checked_in"] for room in sim.state()["rooms"].values())
    (line,) = [r for r in caplog.records if r.getMessage() == "ucm probe"]
    assert (line.__dict__["action"], line.__dict__["code"], line.__dict__["outcome"]) == ("probe", -9, "ok")
    logged = caplog.text + repr([r.__dict__ for r in caplog.records])
    token = ucm_token(ucm_settings(sim))
    for secret in (SIM_API_PASSWORD, SIM_PMS_PASSWORD, token, token.lower(), "pms_data_request", "%3C"):
        assert secret not in logged


def test_probe_holds_a_site_whose_login_token_or_api_is_refused(sim: UcmSimulator) -> None:
    assert probe(ucm_settings(sim, api_password=WRONG_API_PASSWORD)) == (None, "HTTP 401", "hold", 401)
    assert probe(ucm_settings(sim, pms_password=WRONG_PMS_PASSWORD)) == (16, "Auth error !", "hold", 200)
    sim.set_pmsapi_enabled(False)
    assert probe(ucm_settings(sim))[0::2] == (21, "hold")
    assert {entry["action"] for entry in sim.log()} == {None}  # the 401 never got past Digest: not logged


def test_probe_holds_a_site_whose_certificate_is_not_trusted(sim: UcmSimulator) -> None:
    with UcmSimulator(api_user="x", api_password="y", pms_user="x", pms_password="y", addresses=[]) as other:
        foreign_ca = other.ca_pem

    assert probe(ucm_settings(sim, ca_pem=foreign_ca)) == (
        None, "TLS certificate not trusted (ca_pem, verify_tls)", "hold", None)
    assert probe(ucm_settings(sim, ca_pem=None, verify_tls=False))[0::2] == (-9, "ok")  # said so in the logs
    assert sim.log() == [{"action": None, "address": None, "fields": {}, "code": -9}]  # the untrusted one never left


def test_probe_of_an_unreachable_ucm_is_a_retry(sim: UcmSimulator) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]

    code, _text, outcome, status = probe(ucm_settings(sim, base_url=f"https://127.0.0.1:{port}"))

    assert (code, outcome, status) == (None, "retry", None)
