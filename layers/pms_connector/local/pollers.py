"""What AWS would do by itself and moto does not: deliver the table's stream to the functions that listen to
it (the dispatcher's doorbell, the wake-up supervisor), run the sweeper on its rate rule and fire the
one-time schedules the supervisor creates. All call the functions' handlers unchanged, from background
threads.
"""

from __future__ import annotations

import json
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
    """Delivers the table's stream records to each function with a DynamoDB event on it, through the event's
    FilterCriteria, as Lambda's event source mapping does."""
    targets = []
    for lid, res in template.of_type("AWS::Serverless::Function").items():
        for event in res["Properties"].get("Events", {}).values():
            if event.get("Type") != "DynamoDB":
                continue
            filters = event["Properties"].get("FilterCriteria", {}).get("Filters", [])
            patterns = [json.loads(f["Pattern"]) for f in filters]
            targets.append((lid, template.load_handler(lid, instance=99), patterns, _timeout(template, lid)))
    if not targets:
        return None
    arn = boto3.client("dynamodb").describe_table(TableName=table)["Table"]["LatestStreamArn"]
    region = arn.split(":")[3]
    consumed: list[int] = []  # the last sequence number handed to the functions

    def tick() -> None:
        got = _stream_records(table, region, after=consumed[0] if consumed else None)
        for record in got:
            record["eventSourceARN"] = arn
        for lid, handler, patterns, timeout in targets:
            records = [r for r in got if not patterns or any(matches(p, r) for p in patterns)]
            if records:
                answer = handler({"Records": records}, _context(lid, timeout)) or {}
                if answer.get("batchItemFailures"):
                    log.error("%s could not handle %d stream record(s)", lid, len(answer["batchItemFailures"]))
        if got:
            consumed[:] = [int(got[-1]["dynamodb"]["SequenceNumber"])]
            _forget_consumed(table, region, consumed[0])

    return Poller("stream-doorbell", STREAM_POLL_SECONDS, tick)


def matches(pattern: Any, value: Any) -> bool:
    """The part of EventBridge/Lambda event filtering the template uses: nested objects, lists of allowed
    values, and ``{"prefix": ...}`` / ``{"suffix": ...}``."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(k in value and matches(v, value[k]) for k, v in pattern.items())
    if isinstance(pattern, list):
        for allowed in pattern:
            if isinstance(allowed, dict) and "suffix" in allowed:
                if isinstance(value, str) and value.endswith(allowed["suffix"]):
                    return True
            elif isinstance(allowed, dict) and "prefix" in allowed:
                if isinstance(value, str) and value.startswith(allowed["prefix"]):
                    return True
            elif value == allowed:
                return True
        return False
    return bool(pattern == value)


def one_time_schedules(template: Template, *, every: float = 1.0) -> Poller | None:
    """Fires the one-time (``at()``) schedules the functions create in the template's schedule groups, as
    EventBridge Scheduler does: at their time (a wall time in a spring-forward gap never fires; a repeated
    one fires once, the first time), with the target's Input, retried per its RetryPolicy and then sent to
    its dead-letter queue, and deleted afterwards when ActionAfterCompletion is DELETE."""
    from datetime import UTC, datetime

    from pms_connector.wakeups import parse_at

    groups = list(template.schedule_groups().values())
    if not groups:
        return None
    handlers: dict[str, tuple[str, Any, float]] = {}
    for lid, res in template.of_type("AWS::Serverless::Function").items():
        handlers[f"local-{lid}"] = (lid, None, _timeout(template, lid))
        name = res["Properties"].get("FunctionName")
        if name is not None:
            handlers[str(template.resolve(name))] = (lid, None, _timeout(template, lid))
    scheduler, sqs = boto3.client("scheduler"), boto3.client("sqs")
    failures: dict[str, int] = {}
    fired: list[dict[str, Any]] = []  # (for the runner's summary and tests) what ran, when it was due

    def invoke(target: dict[str, Any]) -> None:
        function = target["Arn"].rsplit(":function:", 1)[-1]
        if function not in handlers:
            raise RuntimeError(f"schedule target {target['Arn']} is not a function of this template")
        lid, handler, timeout = handlers[function]
        if handler is None:
            handler = template.load_handler(lid, instance=97)
            handlers[function] = (lid, handler, timeout)
        handler(json.loads(target.get("Input") or "{}"), _context(lid, timeout))

    def tick() -> None:
        now = datetime.now(UTC)
        for group in groups:
            for summary in scheduler.list_schedules(GroupName=group).get("Schedules", []):
                name = summary["Name"]
                detail = scheduler.get_schedule(Name=name, GroupName=group)
                expression = detail["ScheduleExpression"]
                if not expression.startswith("at("):
                    continue
                when = parse_at(expression, detail.get("ScheduleExpressionTimezone") or "UTC")
                if when is not None and when > now:
                    continue
                target: dict[str, Any] = dict(detail["Target"])
                key = f"{group}/{name}"
                if when is None:
                    log.warning("schedule %s is in a DST gap: EventBridge Scheduler skips it", key)
                else:
                    try:
                        invoke(target)
                        fired.append({"name": name, "due": when.timestamp(), "fired": time.time()})
                    except Exception:
                        failures[key] = failures.get(key, 0) + 1
                        attempts = target.get("RetryPolicy", {}).get("MaximumRetryAttempts", 185)
                        if failures[key] <= attempts:
                            log.exception("schedule %s failed (attempt %d); retrying", key, failures[key])
                            continue
                        dlq = target.get("DeadLetterConfig", {}).get("Arn")
                        if dlq:
                            url = sqs.get_queue_url(QueueName=dlq.rsplit(":", 1)[-1])["QueueUrl"]
                            sqs.send_message(QueueUrl=url, MessageBody=target.get("Input") or "{}")
                        log.error("schedule %s dead-lettered after %d attempts", key, failures[key])
                failures.pop(key, None)
                if detail.get("ActionAfterCompletion") == "DELETE" or when is None:
                    scheduler.delete_schedule(Name=name, GroupName=group)

    poller = Poller("one-time-schedules", every, tick)
    poller.fired = fired  # type: ignore[attr-defined]
    return poller


def _stream_records(table: str, region: str, *, after: int | None, limit: int = 100) -> list[dict[str, Any]]:
    """The next records of the table's stream (moto's one shard), as GetRecords returns them.

    Read from moto's shard in this process, under the lock that serialises moto's requests: polling
    DescribeStream, GetShardIterator and GetRecords over HTTP five times a second was a third of the
    runner's time in moto under load (moto serialises every stream record through the service model).
    """
    import copy

    from moto.core import DEFAULT_ACCOUNT_ID  # type: ignore[attr-defined]
    from moto.dynamodb.models import dynamodb_backends

    from pms_connector.local.runner import MOTO_LOCK

    with MOTO_LOCK:
        shard = dynamodb_backends[DEFAULT_ACCOUNT_ID][region].tables[table].stream_shard
        if shard is None:
            return []
        start = shard.starting_sequence_number if after is None else max(after + 1, shard.starting_sequence_number)
        return copy.deepcopy(shard.get(start, limit))


def _forget_consumed(table: str, region: str, last_seq: int) -> None:
    """Drop stream records the doorbell has read from moto's in-memory shard.

    moto keeps every stream record forever (and its own TransactWriteItems deep-copies them all to roll back),
    so without this a long-running local runner grows with every write. Runs in-process under the lock that
    serialises moto's requests.
    """
    from moto.core import DEFAULT_ACCOUNT_ID  # type: ignore[attr-defined]
    from moto.dynamodb.models import dynamodb_backends

    from pms_connector.local.runner import MOTO_LOCK

    with MOTO_LOCK:
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
