"""Wake-up supervisor: arms each wake-up's two one-time schedules from the table's stream, and runs them.

Two kinds of invocation:
- the table's stream (wake-up items only, filtered in template.yaml): a wake-up set or changed gets its
  at-risk and result schedules created (or updated); a cancelled one gets them deleted. Failed records are
  reported back so only they are retried.
- EventBridge Scheduler, with ``{"wakeup": "at_risk" | "result", "property", "uid", "gen"}``: the check
  itself (pms_connector.supervisor.check). An error makes the Scheduler retry (its retry policy, then the
  dead-letter queue); the checks are idempotent.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from pms_connector import api
from pms_connector.observability import logger, metrics, trace_calls, tracer
from pms_connector.supervisor import WakeupScheduler, WakeupStore, check, sns_alert
from pms_connector.wakeups import wakeup_from_item

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch import BatchProcessor
    from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord


@cache
def _processor() -> BatchProcessor:
    # Loaded by the first stream batch only: Powertools' batch utility imports every event data class, and a
    # container started by a wake-up check (which has a deadline) should not pay for that.
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType

    return BatchProcessor(event_type=EventType.DynamoDBStreams)


def _store() -> WakeupStore:  # cheap: the boto3 client underneath is the package's, created once
    from pms_connector.settings import get_settings

    return WakeupStore(get_settings().table_name)


def _scheduler() -> WakeupScheduler:
    return WakeupScheduler(os.environ["WAKEUP_SCHEDULE_GROUP"], os.environ["WAKEUP_SCHEDULER_ROLE_ARN"],
                           os.environ.get("WAKEUP_DLQ_ARN") or None)


trace_calls(("botocore",))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    metrics.clear_metrics()
    if "wakeup" in event:
        logger.set_correlation_id(context.aws_request_id)  # a re-pushed command carries it to the UCM call
        return _run_check(event)
    from aws_lambda_powertools.utilities.batch import process_partial_response

    target_arn = context.invoked_function_arn

    def arm(record: DynamoDBRecord) -> None:
        _reconcile(record.raw_event, target_arn)

    return dict(process_partial_response(event=event, record_handler=arm, processor=_processor(), context=context))


def _reconcile(record: dict[str, Any], target_arn: str) -> None:
    change = record["dynamodb"]
    new, old = change.get("NewImage"), change.get("OldImage")
    if not new or not new["pk"]["S"].endswith("#wakeup"):
        return
    wakeup = wakeup_from_item(new)
    before = wakeup_from_item(old) if old else None
    if before is not None and (before.gen, before.status) == (wakeup.gen, wakeup.status):
        return  # the supervisor's own writes (alerted, result): nothing to arm
    logger.append_keys(property=wakeup.property_id)
    if wakeup.status == "cancelled":
        _scheduler().disarm(wakeup.property_id, wakeup.uid)
        logger.info("wake-up schedules deleted", extra={"uid": wakeup.uid})
        return
    prop = api.directory().get(wakeup.property_id)
    if prop is None:
        logger.warning("wake-up of an unknown property left unsupervised", extra={"uid": wakeup.uid})
        return
    replacing = before is not None and before.status == "set" and before.result is None
    _scheduler().arm(prop, wakeup, target_arn=target_arn, now=datetime.now(UTC), replacing=replacing)
    logger.info("wake-up schedules armed", extra={"uid": wakeup.uid, "gen": wakeup.gen})


def _run_check(event: dict[str, Any]) -> dict[str, Any]:
    from pms_connector.bus import EventPublisher
    from pms_connector.settings import get_settings

    pid, uid, kind = str(event["property"]), str(event["uid"]), event["wakeup"]
    logger.append_keys(property=pid, wakeup_uid=uid)
    prop = api.directory().get(pid)
    if prop is None:
        logger.warning("wake-up check for an unknown property", extra={"kind": kind})
        return {"outcome": "unknown property"}
    outcome = check(kind, prop, uid, int(event["gen"]), store=_store(),
                    publisher=EventPublisher(get_settings().event_bus_name), alert=sns_alert)
    logger.info("wake-up check done", extra={"kind": kind, "outcome": outcome})
    return {"outcome": outcome}
