"""The wake-up supervisor's AWS side (see wakeups.py for the rules): schedules, checks, results.

AWS calls, measured in tests/integration/test_wakeups.py:
- a wake-up set: 2 CreateSchedule (the Scheduler deletes both after they run: ActionAfterCompletion DELETE);
  a new time: 2 UpdateSchedule; a cancel: 2 DeleteSchedule. So 2 per wake-up, 4 with a cancel.
- the at-risk check: GetItem + BatchGetItem; when not confirmed also the re-push (Query + TransactWriteItems),
  an SNS Publish and an UpdateItem.
- the result: GetItem + BatchGetItem + 2 Query + TransactWriteItems + PutEvents + UpdateItem.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from pms_connector import aws
from pms_connector.errors import StorageBusy
from pms_connector.observability import logger, metric_by, metrics
from pms_connector.outbox import OutboxStore
from pms_connector.records import DATETIME_FORMAT
from pms_connector.store import APPEND_ATTEMPTS, _n, _s, dumps, seq_key
from pms_connector.wakeups import Kind, Wakeup, schedule_name, schedule_requests, wakeup_from_item

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef
    from mypy_boto3_scheduler import EventBridgeSchedulerClient

    from pms_connector.bus import EventPublisher
    from pms_connector.config import PropertyConfig


class WakeupStore(OutboxStore):
    """Wake-up items, the evidence that the UCM has them, and the exactly-once result."""

    def get_wakeup(self, property_id: str, uid: str) -> Wakeup | None:
        item = self._get(f"{property_id}#wakeup", uid)
        return wakeup_from_item(item) if item else None

    def confirmed(self, wakeup: Wakeup) -> bool:
        """Did the UCM answer the command that programs this wake-up with success?"""
        keys = [{"pk": _s(f"{wakeup.property_id}#meta"), "sk": _s("outbox")}]
        if wakeup.seq:
            keys.append({"pk": _s(f"{wakeup.property_id}#outbox"), "sk": _s(seq_key(wakeup.seq))})
        got = self._call("BatchGetItem", lambda: self.client.batch_get_item(
            RequestItems={self.table: {"Keys": keys, "ConsistentRead": True}}))
        items = got.get("Responses", {}).get(self.table, [])
        if got.get("UnprocessedKeys"):
            raise StorageBusy("wake-up check: storage throttled; the scheduler retries")
        meta: Mapping[str, Any] = next((i for i in items if i["pk"]["S"].endswith("#meta")), {})
        done = int(meta["done_up_to"]["N"]) if "done_up_to" in meta else 0
        if not wakeup.seq:  # programmed by an earlier command for the same room and time
            return done >= wakeup.floor
        command = next((i for i in items if i["pk"]["S"].endswith("#outbox")), None)
        return done >= wakeup.seq and command is not None and command["status"]["S"] == "pending"

    def repush(self, prop: PropertyConfig, wakeup: Wakeup) -> int:
        """Queue the wake-up's programming again (a parked or lost command gets one more chance)."""
        from pms_connector.ucm.plan import wakeup_fields

        assert prop.ucm is not None
        fields = wakeup_fields(prop.ucm.address(wakeup.room), wakeup.room, wakeup.waketime, set_=True)
        # The check's invocation id goes with the command, to the dispatcher's line for the UCM call.
        return self.enqueue(prop.id, [("wakeup", fields)], correlation_id=logger.get_correlation_id())[0]

    def mark_alerted(self, wakeup: Wakeup, seq: int | None) -> None:
        values: dict[str, Any] = {":gen": _n(wakeup.gen), ":now": _n(int(self._clock()))}
        expression = "SET alerted_at = :now"
        if seq is not None:
            expression, values[":seq"] = expression + ", seq = :seq", _n(seq)
        try:
            self._call("UpdateItem", lambda: self.client.update_item(
                TableName=self.table, Key={"pk": _s(f"{wakeup.property_id}#wakeup"), "sk": _s(wakeup.uid)},
                UpdateExpression=expression, ConditionExpression="gen = :gen", ExpressionAttributeValues=values))
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise  # a changed wake-up has new schedules of its own

    def record_result(self, prop: PropertyConfig, wakeup: Wakeup, mode: str, record: Mapping[str, Any],
                      *, retention_seconds: int) -> int | None:
        """Write the result once: the wake-up's result, the pmslink FIFO record and the inbound log entry in
        one transaction. Returns the inbound sequence, or None when a result was written before (or the
        wake-up changed meanwhile)."""
        pid = prop.id
        now = int(self._clock())
        for attempt in range(APPEND_ATTEMPTS):
            fifo_seq, inbound_seq = self._tail(f"{pid}#fifo") + 1, self._tail(f"{pid}#inbound") + 1
            request_id = f"wakeup:{wakeup.uid}:{wakeup.gen}"
            transaction: list[TransactWriteItemTypeDef] = [
                {"Update": {
                    "TableName": self.table, "Key": {"pk": _s(f"{pid}#wakeup"), "sk": _s(wakeup.uid)},
                    "UpdateExpression": "SET #result = :mode, inbound_seq = :iseq, reported_at = :now",
                    "ConditionExpression": "gen = :gen AND #status = :set AND attribute_not_exists(#result)",
                    "ExpressionAttributeNames": {"#result": "result", "#status": "status"},
                    "ExpressionAttributeValues": {":mode": _s(mode), ":iseq": _n(inbound_seq), ":now": _n(now),
                                                  ":gen": _n(wakeup.gen), ":set": _s("set")},
                }},
                self._put({"pk": _s(f"{pid}#fifo"), "sk": _s(seq_key(fifo_seq)), "record": _s(dumps(record)),
                           "action": _s("WAKE"), "ingested_at": _n(now), "expires_at": _n(now + retention_seconds)}),
                self._put({"pk": _s(f"{pid}#inbound"), "sk": _s(seq_key(inbound_seq)), "action": _s("WAKE"),
                           "request": _s(dumps(record)), "request_id": _s(request_id), "received_at": _n(now),
                           "expires_at": _n(now + retention_seconds), "publish_pending": _n(1)}),
            ]
            try:
                self._call("TransactWriteItems", functools.partial(self.client.transact_write_items,
                                                                   TransactItems=transaction))
                return inbound_seq
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "TransactionCanceledException":
                    raise
                reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
                if reasons and reasons[0] == "ConditionalCheckFailed":
                    return None
                time.sleep(random.uniform(0, 0.02 * (2**attempt)))  # noqa: S311 - jitter, not crypto
        raise StorageBusy("wake-up result: too many concurrent writers; the scheduler retries")


class WakeupScheduler:
    """The two one-time schedules of each wake-up, in the stack's schedule group."""

    def __init__(self, group: str, role_arn: str, dlq_arn: str | None,
                 client: EventBridgeSchedulerClient | None = None) -> None:
        self.group, self.role_arn, self.dlq_arn = group, role_arn, dlq_arn
        self._client = client

    @property
    def client(self) -> EventBridgeSchedulerClient:
        if self._client is None:
            self._client = aws.scheduler()
        return self._client

    def arm(self, prop: PropertyConfig, wakeup: Wakeup, *, target_arn: str, now: datetime,
            replacing: bool = False) -> None:
        """Create both schedules (``replacing``: update them, the wake-up had a time already). Either way the
        other call is the fallback: a retried stream batch finds them created, a fired one finds them gone."""
        for request in schedule_requests(prop, wakeup, group=self.group, target_arn=target_arn,
                                         role_arn=self.role_arn, dlq_arn=self.dlq_arn, now=now):
            first, second = ((self.client.update_schedule, self.client.create_schedule) if replacing else
                             (self.client.create_schedule, self.client.update_schedule))
            try:
                first(**request)
            except ClientError as exc:
                if exc.response["Error"]["Code"] not in ("ConflictException", "ResourceNotFoundException"):
                    raise
                second(**request)

    def disarm(self, property_id: str, uid: str) -> None:
        kinds: tuple[Kind, ...] = ("at_risk", "result")
        for kind in kinds:
            try:
                self.client.delete_schedule(Name=schedule_name(property_id, uid, kind), GroupName=self.group)
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                    raise


# --- the checks the schedules run ----------------------------------------------------------------------------

def check(kind: Kind, prop: PropertyConfig, uid: str, gen: int, *, store: WakeupStore,
          publisher: EventPublisher, alert: Callable[[PropertyConfig, Wakeup], None],
          now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> str:
    """Run a wake-up's at-risk check or result; returns what happened (for logs and tests)."""
    wakeup = store.get_wakeup(prop.id, uid)
    if wakeup is None or wakeup.gen != gen or not wakeup.live:
        return "stale"  # changed, cancelled or reported since this schedule was made
    confirmed = store.confirmed(wakeup)
    if kind == "at_risk":
        if confirmed:
            return "confirmed"
        if wakeup.alerted:
            return "alerted before"
        seq = store.repush(prop, wakeup) if prop.ucm is not None else None
        metrics.add_metric(name="WakeupAtRisk", unit="Count", value=1)
        metric_by("WakeupAtRisk", 1, property=prop.id)
        logger.error("wake-up at risk: not confirmed on the UCM", extra={"uid": uid, "room": wakeup.room,
                                                                       "waketime": wakeup.waketime})
        alert(prop, wakeup)
        store.mark_alerted(wakeup, seq)
        return "at risk"
    mode = "E" if confirmed else "F"
    record = {"datetime": now().astimezone(prop.zone).strftime(DATETIME_FORMAT), "action": "WAKE",
              "property": prop.id, "room": wakeup.room, "mode": mode, "uid": uid, "waketime": wakeup.waketime}
    retention = (prop.httppms.queue_retention_days + prop.httppms.archive_days) * 86_400
    inbound_seq = store.record_result(prop, wakeup, mode, record, retention_seconds=retention)
    if inbound_seq is None:  # reported before: make sure the bus has it too
        wakeup = store.get_wakeup(prop.id, uid) or wakeup
        entry = store.get_inbound(prop.id, wakeup.inbound_seq) if wakeup.inbound_seq else None
        if entry is None or not entry.publish_pending:
            return "reported before"
        inbound_seq, record = entry.seq, dict(entry.request)
    publisher.publish("WAKE", {"property": prop.id, "seq": inbound_seq, "request_id": f"wakeup:{uid}:{gen}",
                               "request": record})
    store.mark_published(prop.id, inbound_seq)
    if mode == "F":
        metrics.add_metric(name="WakeupFailed", unit="Count", value=1)
        metric_by("WakeupFailed", 1, property=prop.id)
        logger.error("wake-up failed: never confirmed on the UCM", extra={"uid": uid, "room": wakeup.room})
    logger.info("wake-up result reported", extra={"uid": uid, "mode": mode, "inbound_seq": inbound_seq})
    return f"result {mode}"


def sns_alert(prop: PropertyConfig, wakeup: Wakeup) -> None:
    """Tell the property's front desk to call the guest by hand (room and time only, no guest data)."""
    topic = prop.wakeup.alert_topic_arn
    if not topic:
        logger.warning("no front-desk topic configured for the wake-up alert", extra={"uid": wakeup.uid})
        return
    when = datetime.strptime(wakeup.waketime, DATETIME_FORMAT)
    message = (f"Wake-up call at risk at {prop.name}: room {wakeup.room}, {when:%H:%M} on {when:%Y-%m-%d} "
               f"({prop.timezone}) is not confirmed on the phone system. Call the guest by hand.")
    try:
        aws.sns().publish(TopicArn=topic, Subject=f"Wake-up at risk: room {wakeup.room} {when:%H:%M}"[:100],
                          Message=message)
    except (ClientError, BotoCoreError) as exc:
        # The metric and its alarm still fire; raising would re-run the check (and the re-push).
        logger.error("front-desk alert not sent", extra={"error": type(exc).__name__})
