"""What AWS would do by itself and moto does not: ring the dispatcher on outbox inserts (the table's stream)
and run the sweeper on its rate rule. Both call the functions' handlers unchanged, from background threads.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import boto3

from pms_connector.local.template import Template

log = logging.getLogger("pms_connector.local")
STREAM_POLL_SECONDS = 0.2


class Poller(threading.Thread):
    def __init__(self, name: str, every: float, tick: Callable[[], None]) -> None:
        super().__init__(name=name, daemon=True)
        self.every, self.tick, self.stopping = every, tick, threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.every):
            try:
                self.tick()
            except Exception:
                log.exception("%s failed", self.name)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)


def _context(function: str, timeout_s: float) -> Any:
    from pms_connector.local.runner import LocalContext

    return LocalContext(function_name=f"local-{function}", aws_request_id=str(uuid.uuid4()),
                        deadline=time.monotonic() + timeout_s)


def _timeout(template: Template, logical_id: str) -> float:
    props = template.resources[logical_id]["Properties"]
    return float(props.get("Timeout") or template.doc.get("Globals", {}).get("Function", {}).get("Timeout", 10))


def stream_doorbell(template: Template, table: str) -> Poller | None:
    """Delivers the table's stream records to the function with a DynamoDB event on it (filter applied)."""
    targets = [(lid, ev) for lid, res in template.of_type("AWS::Serverless::Function").items()
               for ev in res["Properties"].get("Events", {}).values() if ev.get("Type") == "DynamoDB"]
    if not targets:
        return None
    logical_id, _ = targets[0]
    handler = template.load_handler(logical_id, instance=99)
    timeout = _timeout(template, logical_id)
    streams = boto3.client("dynamodbstreams")
    arn = boto3.client("dynamodb").describe_table(TableName=table)["Table"]["LatestStreamArn"]
    consumed: dict[str, int] = {}  # shard id -> last sequence number handed to the function

    def tick() -> None:
        for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
            sid = shard["ShardId"]
            # A fresh iterator every tick: moto replaces a table's stream object when it rolls back a failed
            # transaction, so an iterator kept from the previous tick could be reading a stale copy.
            position: dict[str, Any] = {"ShardIteratorType": "TRIM_HORIZON"}
            if sid in consumed:
                position = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": str(consumed[sid])}
            iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=sid, **position)["ShardIterator"]
            got = streams.get_records(ShardIterator=iterator, Limit=100).get("Records", [])
            records = [r for r in got if r.get("eventName") == "INSERT"
                       and r["dynamodb"]["Keys"]["pk"]["S"].endswith("#outbox")]
            if records:
                for record in records:
                    record["eventSourceARN"] = arn
                handler({"Records": records}, _context(logical_id, timeout))
            if got:
                consumed[sid] = int(got[-1]["dynamodb"]["SequenceNumber"])
                _forget_consumed(table, consumed[sid])

    return Poller("stream-doorbell", STREAM_POLL_SECONDS, tick)


def _forget_consumed(table: str, last_seq: int) -> None:
    """Drop stream records the doorbell has read from moto's in-memory shard.

    moto keeps every stream record forever and deep-copies all of it on each TransactWriteItems (to roll
    back), so without this a long-running local runner gets slower with every write. Runs in-process under
    the lock that serialises moto's requests.
    """
    from moto.core import DEFAULT_ACCOUNT_ID  # type: ignore[attr-defined]
    from moto.dynamodb.models import dynamodb_backends

    from pms_connector.local.runner import MOTO_LOCK

    with MOTO_LOCK:
        region = boto3.session.Session().region_name or "us-east-1"
        shard = dynamodb_backends[DEFAULT_ACCOUNT_ID][region].tables[table].stream_shard
        if shard is None:
            return
        keep_from = last_seq + 1 - shard.starting_sequence_number
        if keep_from > 0:
            shard.items = shard.items[keep_from:]
            shard.starting_sequence_number += keep_from


def schedules(template: Template, *, speedup: float = 1.0) -> list[Poller]:
    """Runs each function with a rate schedule (Schedule / ScheduleV2 events) at its rate."""
    pollers = []
    for lid, res in template.of_type("AWS::Serverless::Function").items():
        for event in res["Properties"].get("Events", {}).values():
            if event.get("Type") not in ("Schedule", "ScheduleV2"):
                continue
            found = re.fullmatch(r"rate\((\d+) (minute|minutes|second|seconds|hour|hours)\)",
                                 str(event["Properties"]["ScheduleExpression"]))
            if not found:
                continue
            seconds = int(found[1]) * {"s": 1, "m": 60, "h": 3600}[found[2][0]]
            handler = template.load_handler(lid, instance=98)
            timeout = _timeout(template, lid)

            def tick(handler: Any = handler, lid: str = lid, timeout: float = timeout) -> None:
                handler({"source": "aws.scheduler", "detail-type": "Scheduled Event", "detail": {}},
                        _context(lid, timeout))

            pollers.append(Poller(f"schedule-{lid}", seconds / speedup, tick))
    return pollers
