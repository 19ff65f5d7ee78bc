"""Sweeper (EventBridge rate rule): retries due UCM commands and reports the outbox backlog.

The backlog (due markers and parked markers) is read with two queries whatever the number of properties,
so an idle property costs no AWS call at all; only properties with due commands are dispatched.
"""

from __future__ import annotations

import time
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
    store = sites.outbox_store()
    now = int(time.time())
    due = sites.report_backlog(store, now)
    results = sites.dispatch_properties(due, store=store, directory=api.directory(),
                                        owner=context.aws_request_id,
                                        remaining_ms=context.get_remaining_time_in_millis)
    summary = {"due": len(due), "dispatched": len(results), "sent": sum(r.sent for r in results.values()),
               "parked": sum(r.parked for r in results.values()), "held": sum(r.held for r in results.values())}
    logger.info("sweep done", extra=summary)
    return summary
