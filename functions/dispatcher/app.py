"""UCM dispatcher (in the VPC, reaches the sites over VPN): rung by outbox writes on the table's stream.

The stream record is only a doorbell: the handler dispatches each property named in the batch, reading
the outbox itself, so duplicated or lost records never reorder or lose a command (the sweeper catches up).

Invoked directly with ``{"check_ucm": "<property id>"}`` (``pms-connector property check-ucm ID --stack S``),
it checks that property's UCM from here, inside the VPC where the site's VPN and Permitted-IP list admit it,
and answers the check (operator.UcmCheck: each step with ok/failed, reason and time; no secret, no guest data).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from pms_connector import api, sites
from pms_connector.observability import logger, metrics, trace_calls, tracer

trace_calls(("botocore", "httpx"))

CHECK_MARGIN_MS = 3000  # a check stops this long before the function's timeout, so its answer still gets out


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    metrics.clear_metrics()
    if "check_ucm" in event:  # an operator's probe: neither a stream batch nor anything to dispatch
        return _check_ucm(event["check_ucm"], context)
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


def _check_ucm(property_id: object, context: LambdaContext) -> dict[str, Any]:
    from pms_connector.operator import probe_property  # only a probe pays for the operator module

    check = probe_property(property_id, checked_from=f"the dispatcher function {context.function_name}",
                           seconds_left=(context.get_remaining_time_in_millis() - CHECK_MARGIN_MS) / 1000)
    logger.info("ucm check", extra={"property": check.property_id, "exit_code": check.exit_code,
                                    "failed": next((s.name for s in check.steps if s.ok is False), None)})
    return check.to_json()
