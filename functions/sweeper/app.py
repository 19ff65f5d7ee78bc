"""Sweeper (EventBridge rate rule): retries due UCM commands and reports the outbox backlog.

Properties with work are found with one query of the sparse due-marker partition, so idle properties cost
no AWS call at all.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from pms_connector import api, sites
from pms_connector.observability import logger, metrics


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    metrics.clear_metrics()
    store = sites.outbox_store()
    now = int(time.time())
    due = store.due_properties(now)
    metrics.add_metric(name="PropertiesDue", unit="Count", value=len(due))
    oldest = max((now - next_due for _, next_due in due), default=0)
    metrics.add_metric(name="OutboxOldestDueAgeSeconds", unit="Seconds", value=oldest)
    results = sites.dispatch_properties([pid for pid, _ in due], store=store, directory=api.directory(),
                                        owner=context.aws_request_id,
                                        remaining_ms=context.get_remaining_time_in_millis)
    summary = {"due": len(due), "dispatched": len(results), "sent": sum(r.sent for r in results.values()),
               "parked": sum(r.parked for r in results.values()), "held": sum(r.held for r in results.values())}
    logger.info("sweep done", extra=summary)
    return summary
