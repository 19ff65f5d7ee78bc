"""Wake-up supervision end to end on moto: ingest → stream → schedules → checks → results, against the UCM
simulator. The Scheduler's firing is played by invoking the supervisor with each schedule's own Input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import Deployment, IamRecorder, property_document
from tests.helpers import ingest_event

PID = "wake-hotel"
TOPIC = f"arn:aws:sns:us-east-1:123456789012:pms-connector-dev-{PID}-frontdesk"
ZONE = ZoneInfo("Europe/Madrid")


def tomorrow(hhmm: str = "07:00") -> str:
    day = (datetime.now(UTC).astimezone(ZONE) + timedelta(days=1)).date()
    return f"{day.isoformat()}T{hhmm}:00"


def wake(mode: str, waketime: str, uid: str = "w1", room: str = "101") -> dict[str, Any]:
    return {"datetime": datetime.now(UTC).astimezone(ZONE).strftime("%Y-%m-%dT%H:%M:%S"), "action": "WAKE",
            "room": room, "mode": mode, "uid": uid, "waketime": waketime}


def checkin(room: str, status: str = "checkin") -> dict[str, Any]:
    return {"datetime": "2026-11-22T10:00:00", "action": "BOOKING", "booking_uid": "b1", "status": status,
            "room": room, "account": "a1", "arrival": "2026-11-22T14:00:00", "departure": "2026-11-30T12:00:00",
            "GUEST_LIST": [{"uid": "g1", "name": "Zoë", "surname": "Okafor", "language": "en"}]}


class Hotel:
    """A deployment with one supervised property on a simulated UCM, and the levers AWS would pull."""

    def __init__(self, deployment: Deployment, sim: Any) -> None:
        import boto3

        from pms_connector import aws

        self.dep, self.sim = deployment, sim
        self.table = deployment.names["ConnectorTable"]
        self.group = deployment.names["WakeupScheduleGroup"]
        sns, sqs = boto3.client("sns"), boto3.client("sqs")
        sns.create_topic(Name=TOPIC.rsplit(":", 1)[1])
        self.desk = sqs.create_queue(QueueName="front-desk")["QueueUrl"]
        desk_arn = sqs.get_queue_attributes(QueueUrl=self.desk, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=TOPIC, Protocol="sqs", Endpoint=desk_arn, Attributes={"RawMessageDelivery": "true"})
        self.sqs = sqs
        deployment.add_property(property_document(id=PID, ucm={
            "base_url": sim.url, "api_user": "cdrapi", "api_password": "api-pass", "pms_user": "admin1",
            "pms_password": "admin123", "ca_pem": sim.ca_pem}, wakeup={"alert_topic_arn": TOPIC}))
        self.bus = deployment.subscribe_bus()
        self.scheduler_calls: list[str] = []
        aws.scheduler().meta.events.register(
            "before-call.scheduler.*", lambda event_name, **_: self.scheduler_calls.append(event_name.split(".")[-1]))
        self.streams = boto3.client("dynamodbstreams")
        self.stream_arn = boto3.client("dynamodb").describe_table(TableName=self.table)["Table"]["LatestStreamArn"]
        self.position: dict[str, str] = {}

    # --- the PMS and AWS's machinery --------------------------------------------------------------------

    def pms(self, *records: dict[str, Any]) -> dict[str, Any]:
        return self.dep.invoke("IngestFunction", ingest_event(PID, list(records)))

    def stream(self, function: str = "WakeupFunction") -> dict[str, Any]:
        """Deliver the stream records written since the last call, through the function's filter."""
        from pms_connector.local.pollers import matches

        records = []
        for shard in self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]:
            sid = shard["ShardId"]
            where: dict[str, Any] = {"ShardIteratorType": "TRIM_HORIZON"}
            if sid in self.position:
                where = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": self.position[sid]}
            iterator = self.streams.get_shard_iterator(StreamArn=self.stream_arn, ShardId=sid, **where)
            got = self.streams.get_records(ShardIterator=iterator["ShardIterator"]).get("Records", [])
            if got:
                self.position[sid] = got[-1]["dynamodb"]["SequenceNumber"]
            records += got
        event = self.dep.template.resources[function]["Properties"]["Events"]
        patterns = [json.loads(f["Pattern"]) for e in event.values() if e["Type"] == "DynamoDB"
                    for f in e["Properties"]["FilterCriteria"]["Filters"]]
        chosen = [r for r in records if any(matches(p, r) for p in patterns)]
        return self.dep.invoke(function, {"Records": chosen}) if chosen else {}

    def dispatch(self) -> None:
        self.dep.invoke("DispatcherFunction", {"Records": [{"eventName": "INSERT", "dynamodb": {
            "Keys": {"pk": {"S": f"{PID}#outbox"}, "sk": {"S": "1"}}}}]})

    def schedules(self, uid: str = "w1") -> dict[str, dict[str, Any]]:
        """The wake-up's schedules in the group, by kind (risk, result)."""
        import boto3

        from pms_connector.wakeups import schedule_name

        client = boto3.client("scheduler")  # not the supervisor's client: its calls are counted
        names = {schedule_name(PID, uid, "at_risk"): "risk", schedule_name(PID, uid, "result"): "result"}
        return {names[s["Name"]]: client.get_schedule(Name=s["Name"], GroupName=self.group)
                for s in client.list_schedules(GroupName=self.group)["Schedules"] if s["Name"] in names}

    def fire(self, kind: str, uid: str = "w1") -> str:
        """What the Scheduler does at the schedule's time: invoke the target with its Input."""
        schedule = self.schedules(uid)[kind]
        return str(self.dep.invoke("WakeupFunction", json.loads(schedule["Target"]["Input"]))["outcome"])

    # --- what came out ------------------------------------------------------------------------------------

    def desk_messages(self) -> list[str]:
        got = self.sqs.receive_message(QueueUrl=self.desk, MaxNumberOfMessages=10).get("Messages", [])
        return [m["Body"] for m in got]

    def fifo_wakes(self) -> list[dict[str, Any]]:
        from pms_connector.store import ConnectorStore

        records = [q.record for q in ConnectorStore(self.table).read_fifo(PID, after=0, limit=100)]
        return [r for r in records if r["action"] == "WAKE" and r["mode"] in ("E", "F")]

    def inbound_wakes(self) -> list[dict[str, Any]]:
        from pms_connector.store import ConnectorStore

        return [e.request for e in ConnectorStore(self.table).list_inbound(PID, after=0, limit=100)
                if e.action == "WAKE"]


@pytest.fixture
def hotel(deployment: Deployment) -> Iterator[Hotel]:
    from pms_connector.ucm.simulator import UcmSimulator

    with UcmSimulator(api_user="cdrapi", api_password="api-pass", pms_user="admin1", pms_password="admin123",
                      addresses=["101", "102", "103"]) as sim:
        yield Hotel(deployment, sim)


def test_a_wake_up_is_armed_with_two_schedules_in_the_property_zone(hotel: Hotel) -> None:
    waketime = tomorrow("07:00")
    assert hotel.pms(checkin("101"), wake("S", waketime))["statusCode"] == 202
    assert hotel.stream() == {"batchItemFailures": []}
    schedules = hotel.schedules()
    assert sorted(schedules) == ["result", "risk"]
    day = waketime[:10]
    assert schedules["risk"]["ScheduleExpression"] == f"at({day}T06:50:00)"  # 10 minutes of lead
    assert schedules["result"]["ScheduleExpression"] == f"at({day}T07:05:00)"  # 5 minutes of grace
    for schedule in schedules.values():
        assert schedule["ScheduleExpressionTimezone"] == "Europe/Madrid"
        assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
        assert schedule["ActionAfterCompletion"] == "DELETE"
        target = schedule["Target"]
        assert target["DeadLetterConfig"]["Arn"].endswith("WakeupDeadLetterQueue")
        assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
        assert target["Arn"].endswith(":function:pms-connector-test")  # the supervisor itself
    assert hotel.scheduler_calls == ["CreateSchedule", "CreateSchedule"]
    hotel.position.clear()  # the stream batch delivered again (a retried batch): no second pair
    hotel.stream()
    assert sorted(hotel.schedules()) == ["result", "risk"]
    again = hotel.schedules()
    assert {k: v["ScheduleExpression"] for k, v in again.items()} == \
        {k: v["ScheduleExpression"] for k, v in schedules.items()}
    assert hotel.scheduler_calls[2:] == ["CreateSchedule", "UpdateSchedule"] * 2


def test_with_the_ucm_up_the_result_is_E_once_whatever_the_scheduler_repeats(hotel: Hotel) -> None:
    waketime = tomorrow("06:30")
    hotel.pms(checkin("101"), wake("S", waketime))
    hotel.stream()
    hotel.dispatch()
    assert hotel.sim.state()["wakeups"]["101"] == [{"w_date": waketime[:10].replace("-", ""), "w_time": "0630",
                                                    "w_mode": "1"}]
    assert hotel.fire("risk") == "confirmed"
    assert hotel.fire("result") == "result E"
    assert hotel.fire("result") == "stale"  # a duplicated invocation: reported already
    assert hotel.fire("risk") == "stale"
    [record] = hotel.fifo_wakes()
    assert (record["mode"], record["uid"], record["room"], record["waketime"]) == ("E", "w1", "101", waketime)
    assert hotel.inbound_wakes() == [record]
    assert [e["detail"]["request"]["mode"] for e in hotel.bus.drain() if e["detail-type"] == "WAKE"] == ["E"]
    assert hotel.desk_messages() == []
    # Scheduler calls per wake-up: 2 creates; the Scheduler deletes both itself after they run.
    assert hotel.scheduler_calls == ["CreateSchedule", "CreateSchedule"]


def test_ucm_down_before_the_lead_time_alerts_the_desk_and_pushes_again_then_back_before_due_is_E(
    hotel: Hotel,
) -> None:
    waketime = tomorrow("05:45")
    hotel.pms(checkin("101"), wake("S", waketime))
    hotel.stream()  # the dispatcher never got through (site VPN down): nothing confirmed
    assert hotel.fire("risk") == "at risk"
    [message] = hotel.desk_messages()
    assert "room 101" in message and "05:45" in message and "by hand" in message
    assert "Zoë" not in message
    assert hotel.fire("risk") == "alerted before"  # the Scheduler's at-least-once: one alert
    assert hotel.desk_messages() == []
    hotel.dispatch()  # the site is back before the wake-up: the command and its re-push reach the UCM
    assert len(hotel.sim.state()["wakeups"]["101"]) == 1
    assert hotel.fire("result") == "result E"


def test_ucm_down_until_after_due_is_F(hotel: Hotel) -> None:
    hotel.pms(checkin("101"), wake("S", tomorrow("08:15")))
    hotel.stream()
    hotel.sim.fail_next(50, code=22)
    hotel.dispatch()
    assert hotel.fire("risk") == "at risk"
    assert hotel.fire("result") == "result F"
    [record] = hotel.fifo_wakes()
    assert record["mode"] == "F"


def test_a_parked_wake_up_is_at_risk_and_pushed_again(hotel: Hotel) -> None:
    hotel.pms(checkin("101"), wake("S", tomorrow("08:20")))
    hotel.stream()
    hotel.sim.fail_next(1, code=15, action="wakeup")  # the UCM refuses the command: parked
    hotel.dispatch()
    assert hotel.sim.state()["wakeups"]["101"] == []
    assert hotel.fire("risk") == "at risk"
    hotel.dispatch()  # the re-push
    assert len(hotel.sim.state()["wakeups"]["101"]) == 1
    assert hotel.fire("result") == "result E"


def test_a_cancel_deletes_the_schedules_and_a_new_time_replaces_them(hotel: Hotel) -> None:
    hotel.pms(checkin("101"), wake("S", tomorrow("07:00")))
    hotel.stream()
    risk_input = hotel.schedules()["risk"]["Target"]["Input"]
    hotel.pms(checkin("101"), wake("S", tomorrow("07:40")))  # same uid, new time
    hotel.stream()
    assert hotel.schedules()["risk"]["ScheduleExpression"].endswith("T07:30:00)")
    assert hotel.dep.invoke("WakeupFunction", json.loads(risk_input))["outcome"] == "stale"  # the old time's
    hotel.pms(wake("C", tomorrow("07:40")))
    hotel.stream()
    assert hotel.schedules() == {}
    assert hotel.scheduler_calls == ["CreateSchedule"] * 2 + ["UpdateSchedule"] * 2 + ["DeleteSchedule"] * 2
    hotel.dispatch()
    assert hotel.sim.state()["wakeups"]["101"] == []


def test_a_wake_up_follows_the_guest_to_a_new_room_and_ends_at_checkout(hotel: Hotel) -> None:
    hotel.pms(checkin("101"), wake("S", tomorrow("06:00")))
    hotel.stream()
    hotel.pms(checkin("103"))  # room move
    hotel.stream()
    hotel.dispatch()
    state = hotel.sim.state()
    assert state["wakeups"]["101"] == [] and len(state["wakeups"]["103"]) == 1
    assert hotel.fire("result") == "result E"
    assert hotel.fifo_wakes()[0]["room"] == "103"
    hotel.pms(wake("S", tomorrow("06:30"), uid="w2", room="103"))
    hotel.stream()
    hotel.pms(checkin("103", status="checkout"))
    hotel.stream()
    assert hotel.schedules("w2") == {}  # w2's schedules were deleted with the checkout


def test_a_wake_time_in_the_past_is_refused_naming_the_field(hotel: Hotel) -> None:
    past = (datetime.now(UTC).astimezone(ZONE) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S")
    response = hotel.pms(wake("S", past))
    assert response["statusCode"] == 400
    [issue] = json.loads(response["body"])["issues"]
    assert issue["field"] == "waketime" and "in the past" in issue["reason"] and "Europe/Madrid" in issue["reason"]


def test_the_supervisor_policy_allows_exactly_what_it_calls(hotel: Hotel, iam: IamRecorder) -> None:
    """Arm, at risk (re-push, front-desk alert), result (FIFO, inbound, bus), cancel. The queue's
    sqs:SendMessage is the stream mapping's on-failure destination: Lambda sends there, not the code (it is
    among lambda_service_actions, as the stream reads are)."""
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

    from pms_connector import api
    from tests.integration.test_aws_calls import code_actions

    hotel.pms(checkin("101"), wake("S", tomorrow("07:00")))
    for provider in DEFAULT_PROVIDERS.values():  # a fresh supervisor container reads the config itself
        provider.clear_cache()
    api.directory.cache_clear()
    iam.actions.clear()
    hotel.stream()
    assert hotel.fire("risk") == "at risk"
    hotel.dispatch()
    assert hotel.fire("result") == "result E"
    for mode, hhmm in (("S", "07:10"), ("S", "07:20"), ("C", "07:20")):  # armed, moved, cancelled
        hotel.pms(wake(mode, tomorrow(hhmm), uid="w2"))
        hotel.stream()
    dispatcher_only = {"dynamodb:DeleteItem"}  # the dispatch above ran in the same process
    # iam:PassRole is checked by the Scheduler when a schedule names the role.
    implicit = {"iam:PassRole"}
    assert iam.actions - dispatcher_only == code_actions(hotel.dep, "WakeupFunction") - implicit
    assert implicit <= code_actions(hotel.dep, "WakeupFunction")


def test_the_sample_events_drive_the_supervisor_and_the_poller(deployment: Deployment) -> None:
    """events/ samples: a wake-up item's stream record arms its schedules; its result check finds no such
    wake-up in this table (stale); the poller's sweep finds demo-resort's PMS unreachable and buffers."""
    import boto3

    from tests.conftest import load_event

    assert deployment.invoke("WakeupFunction", load_event("wakeup-stream-insert")) == {"batchItemFailures": []}
    listed = boto3.client("scheduler").list_schedules(GroupName=deployment.names["WakeupScheduleGroup"])
    assert len(listed["Schedules"]) == 2
    assert deployment.invoke("WakeupFunction", load_event("wakeup-check-result")) == {"outcome": "stale"}

    from tests.conftest import FakeContext

    class Short(FakeContext):
        def get_remaining_time_in_millis(self) -> int:
            return 9_000

    result = deployment.handler("PollerFunction")(load_event("poller-schedule"), Short())
    assert result["reports"]["demo-resort"]["buffered"] is True


@pytest.mark.parametrize(("waketime", "risk", "result"), [
    # Spring gap (02:00-03:00 does not exist): 02:30 is read as 03:30 CEST (01:30 UTC); the check 10 minutes
    # before is 03:20 CEST, never the non-existent 02:20 the Scheduler would skip; the result is at 03:35.
    ("2027-03-28T02:30:00", ("at(2027-03-28T03:20:00)", "Europe/Madrid"), ("at(2027-03-28T03:35:00)", "Europe/Madrid")),
    # Autumn repeat (02:00-03:00 happens twice): 02:30 is the first one (00:30 UTC); both checks fall in the
    # repeated hour, where a wall time would be ambiguous, so they are written in UTC.
    ("2027-10-31T02:30:00", ("at(2027-10-31T00:20:00)", "UTC"), ("at(2027-10-31T00:35:00)", "UTC")),
])
def test_dst_wake_ups_get_schedules_that_fire_at_the_intended_instants(
    hotel: Hotel, waketime: str, risk: tuple[str, str], result: tuple[str, str]
) -> None:
    from pms_connector.wakeups import parse_at, wake_instant

    hotel.pms(checkin("101"), wake("S", waketime))
    hotel.stream()
    schedules = hotel.schedules()
    made = {k: (v["ScheduleExpression"], v["ScheduleExpressionTimezone"]) for k, v in schedules.items()}
    assert made == {"risk": risk, "result": result}
    due = wake_instant(waketime, ZONE)
    # What EventBridge Scheduler does with them (as documented; the local runner's scheduler does the same):
    assert parse_at(*risk) == due - timedelta(minutes=10)
    assert parse_at(*result) == due + timedelta(minutes=5)
