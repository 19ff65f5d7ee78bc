"""PMS polling mode: for a PMS that serves the HTTPPMS API itself, the connector is the client.

Per property with ``pms_server``, under a lease (one poller per property, whatever invocations overlap):

1. **Outgoing, in order.** WAKE ``E``/``F`` results, CALL and POST records are already kept, in order, in the
   property's inbound log (they are written there once, in the transactions that create them). A forward
   cursor (``{pid}#meta`` / ``poll``: ``forwarded``) marks what the PMS has accepted. Each record after it is
   POSTed: ``ok`` or ``rejected`` (the PMS's 2xx codes: resending cannot help; logged and counted) moves the
   cursor; ``buffer`` (link errors, HTTP 400/401/500, 1xx codes: the spec's "Link connection control")
   stops there and the same records are resent in order on the next round. The log is the FIFO buffer.
2. **Incoming, once and in order.** GET_REQUEST; the records are validated and ingested exactly as the
   ingest API does (FIFO, state, UCM commands, one transaction). A PMS that delivers in confirmed batches
   gets its batch confirmed on the next GET_REQUEST only after the ingest committed, and the batch id is
   written in the ingest transaction, so a batch served again after a lost confirm is not ingested twice.
   Records that fail validation cannot be refused to the PMS: they are skipped, logged by index and field
   and counted (``PolledRecordsInvalid``).

A round repeats every ``poll_interval_seconds`` until the invocation's time runs short; the rate rule that
starts the poller function is one for all such properties, so an idle property costs no invocation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from pms_connector.observability import logger, metric_by, metrics
from pms_connector.state import StateStore, TooManyItems
from pms_connector.store import DuplicateRequest, _n, _s

if TYPE_CHECKING:
    from pms_connector.config import PropertyConfig
    from pms_connector.pms.client import HttppmsClient

LEASE_SECONDS = 90
RUN_SECONDS = 55  # of each minute: the rate rule starts the next poller at 60
LEASE_WAIT_SECONDS = 10
FORWARDED_ACTIONS = ("CALL", "POST")


@dataclass(frozen=True)
class PollMeta:
    forwarded: int = 0
    last_batch: str | None = None
    confirm: str | None = None  # a batch ingested but not yet confirmed to the PMS
    link_down: bool = False  # the PMS was unreachable when the last poller stopped


@dataclass
class PollReport:
    rounds: int = 0
    ingested: int = 0
    invalid: int = 0
    forwarded: int = 0
    rejected: int = 0
    buffered: bool = False  # the link failed this time: outgoing records wait, in order
    busy: bool = False
    errors: list[str] = field(default_factory=list)


def forwardable(action: str, request: Mapping[str, Any]) -> bool:
    if action in FORWARDED_ACTIONS:
        return True
    return action == "WAKE" and str(request.get("mode", "")).upper() in ("E", "F")


class PollStore(StateStore):
    """The poll lease and cursors, and the ingest of polled records."""

    def _key(self, pid: str) -> dict[str, Any]:
        return {"pk": _s(f"{pid}#meta"), "sk": _s("poll")}

    def acquire_poll(self, pid: str, owner: str, *, now: int) -> PollMeta | None:
        try:
            item = self._call("UpdateItem", lambda: self.client.update_item(
                TableName=self.table, Key=self._key(pid),
                UpdateExpression="SET lease_owner = :o, lease_until = :until",
                ConditionExpression="attribute_not_exists(lease_until) OR lease_until < :now OR lease_owner = :o",
                ExpressionAttributeValues={":o": _s(owner), ":until": _n(now + LEASE_SECONDS), ":now": _n(now)},
                ReturnValues="ALL_NEW"))["Attributes"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise
        return PollMeta(forwarded=int(item["forwarded"]["N"]) if "forwarded" in item else 0,
                        last_batch=item["last_batch"]["S"] if "last_batch" in item else None,
                        confirm=item["confirm"]["S"] if "confirm" in item else None,
                        link_down="link_down" in item)

    def update_poll(self, pid: str, owner: str, *, forwarded: int | None = None, confirm: str | None = None,
                    clear_confirm: bool = False, release: bool = False, link_down: bool | None = None) -> None:
        sets, removes, values = [], [], {":o": _s(owner)}
        if forwarded is not None:
            sets.append("forwarded = :f")
            values[":f"] = _n(forwarded)
        if confirm is not None:
            sets.append("confirm = :c")
            values[":c"] = _s(confirm)
        if clear_confirm:
            removes.append("confirm")
        if release:
            removes += ["lease_owner", "lease_until"]
        if link_down:
            sets.append("link_down = :o")  # who saw it down; only its presence matters
        elif link_down is False:
            removes.append("link_down")
        if not sets and not removes:
            return
        expression = (("SET " + ", ".join(sets)) if sets else "") + ((" REMOVE " + ", ".join(removes))
                                                                     if removes else "")
        self._call("UpdateItem", lambda: self.client.update_item(
            TableName=self.table, Key=self._key(pid), UpdateExpression=expression.strip(),
            ConditionExpression="lease_owner = :o", ExpressionAttributeValues=values))

    def ingest_polled(self, prop: PropertyConfig, records: list[dict[str, Any]], *, owner: str,
                      batch: str | None, retention_seconds: int) -> bool:
        """Ingest polled records (one transaction, or in order-keeping halves when too big). With a batch id,
        False when this batch was ingested before (served again after a lost confirm)."""
        also: list[Any] = []
        if batch is not None:
            also = [{"Update": {
                "TableName": self.table, "Key": self._key(prop.id),
                "UpdateExpression": "SET last_batch = :b, confirm = :b",
                "ConditionExpression": "lease_owner = :o AND (attribute_not_exists(last_batch) OR last_batch <> :b)",
                "ExpressionAttributeValues": {":b": _s(batch), ":o": _s(owner)}}}]
        try:
            self.ingest(prop, records, retention_seconds=retention_seconds, also=also,
                        correlation_id=logger.get_correlation_id())
        except DuplicateRequest:
            return False
        except TooManyItems:
            if len(records) == 1:
                raise
            middle = len(records) // 2  # the batch marker goes with the last half: all or the rest again
            self.ingest(prop, records[:middle], retention_seconds=retention_seconds,
                        correlation_id=logger.get_correlation_id())
            return self.ingest_polled(prop, records[middle:], owner=owner, batch=batch,
                                      retention_seconds=retention_seconds)
        return True


def poll_property(prop: PropertyConfig, client: HttppmsClient, store: PollStore, *, owner: str,
                  remaining_ms: Callable[[], int], clock: Callable[[], float] = time.time,
                  sleep: Callable[[float], None] = time.sleep, max_rounds: int | None = None,
                  stop_after_s: float = RUN_SECONDS) -> PollReport:
    """Forward outgoing records and poll incoming ones, round after round, for ``stop_after_s`` (the rule
    starts the next invocation a minute later) or until the invocation's time runs short."""
    from pms_connector.ingest import validate_records

    report = PollReport()
    settings = prop.pms_server
    assert settings is not None
    begun = clock()
    meta = store.acquire_poll(prop.id, owner, now=int(clock()))
    while meta is None and clock() - begun < LEASE_WAIT_SECONDS:  # the previous minute's poller finishing
        sleep(1.0)
        meta = store.acquire_poll(prop.id, owner, now=int(clock()))
    if meta is None:
        report.busy = True
        return report
    forwarded, confirm, link_down = meta.forwarded, meta.confirm, meta.link_down
    retention = (prop.httppms.queue_retention_days + prop.httppms.archive_days) * 86_400
    try:
        while max_rounds is None or report.rounds < max_rounds:
            report.rounds += 1
            started = clock()
            # 1. outgoing, in order
            moved = forwarded
            for entry in store.list_inbound(prop.id, after=forwarded, limit=100):
                if forwardable(entry.action, entry.request):
                    result = client.send(entry.request)
                    if result.outcome == "buffer":
                        report.buffered = link_down = True
                        metrics.add_metric(name="PmsLinkBuffered", unit="Count", value=1)
                        break
                    if result.outcome == "rejected":
                        report.rejected += 1
                        metrics.add_metric(name="PmsRecordRejected", unit="Count", value=1)
                        logger.error("PMS rejected a record", extra={"property": prop.id, "seq": entry.seq,
                                                                     "action": entry.action, "code": result.code})
                    else:
                        report.forwarded += 1
                moved = entry.seq
            if moved != forwarded:
                store.update_poll(prop.id, owner, forwarded=moved)
                forwarded = moved
            # 2. incoming, once and in order
            more = False
            poll = client.get_request(confirm=confirm)
            if poll.outcome == "ok":
                link_down = False
                if confirm is not None:
                    store.update_poll(prop.id, owner, clear_confirm=True)
                    confirm = None
                records = poll.records
                if records:
                    issues = validate_records(prop, records)
                    bad = {i["index"] for i in issues}
                    if bad:
                        report.invalid += len(bad)
                        metrics.add_metric(name="PolledRecordsInvalid", unit="Count", value=len(bad))
                        logger.error("PMS sent invalid records; skipped", extra={
                            "property": prop.id,
                            "issues": [{"index": i["index"], "field": i["field"]} for i in issues][:20]})
                    good = [r if "property" in r else {**r, "property": prop.id}
                            for i, r in enumerate(records) if i not in bad]
                    if good or poll.batch:
                        fresh = store.ingest_polled(prop, good, owner=owner, batch=poll.batch,
                                                    retention_seconds=retention) if good else True
                        if fresh:
                            report.ingested += len(good)
                            metrics.add_metric(name="EventsIngested", unit="Count", value=len(good))
                    confirm = poll.batch
                    more = True  # the PMS may hold more: ask again at once
            else:
                report.buffered = link_down = True
                metrics.add_metric(name="PmsLinkBuffered", unit="Count", value=1)
                report.errors.append(f"GET_REQUEST: {poll.outcome} {poll.code} {poll.description}"[:200])
            if remaining_ms() < (settings.poll_interval_seconds + settings.timeout_seconds) * 1000 + 3000:
                break
            if clock() - begun + settings.poll_interval_seconds > stop_after_s:
                break
            if not more:
                sleep(max(0.0, settings.poll_interval_seconds - (clock() - started)))
    finally:
        # The link state per property, sent only when it says something (down, or back after being down),
        # as UcmUnreachable for the UCMs: a healthy PMS costs no metric.
        if link_down:
            metric_by("PmsUnreachable", 1, property=prop.id)
        elif meta.link_down:
            metric_by("PmsUnreachable", 0, property=prop.id)
        store.update_poll(prop.id, owner, release=True,
                          link_down=link_down if link_down != meta.link_down else None)
    return report
