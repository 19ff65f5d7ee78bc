"""UCM dispatcher (in the VPC, reaches the sites over VPN): rung by outbox writes on the table's stream.

The stream record is only a doorbell: the handler dispatches each property named in the batch, reading
the outbox itself, so duplicated or lost records never reorder or lose a command (the sweeper catches up).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from pms_connector import api, sites
from pms_connector.observability import logger, metrics, trace_calls, tracer

trace_calls(("botocore", "httpx"))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    metrics.clear_metrics()
    property_ids = [
        record["dynamodb"]["Keys"]["pk"]["S"].rsplit("#", 1)[0]
        for record in event.get("Records", [])
        if record.get("dynamodb", {}).get("Keys", {}).get("pk", {}).get("S", "").endswith("#outbox")
    ]
    results = sites.dispatch_properties(property_ids, store=sites.outbox_store(), directory=api.directory(),
                                        owner=context.aws_request_id,
                                        remaining_ms=context.get_remaining_time_in_millis)
    logger.info("doorbell handled", extra={"properties": len(results),
                                           "sent": sum(r.sent for r in results.values())})
    return {"batchItemFailures": []}  # nothing to redeliver: the outbox, not the stream, is the truth
