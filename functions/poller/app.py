"""PMS poller (EventBridge Scheduler rate rule, one for all properties): for each property in polling mode
(``pms_server``), forwards WAKE E/F, CALL and POST records to its PMS in order and polls GET_REQUEST, round
after round until the invocation's time runs short (pms_connector.polling). Properties run side by side."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from pms_connector import api
from pms_connector.observability import logger, metrics, trace_calls, tracer

if TYPE_CHECKING:
    from pms_connector.polling import PollReport, PollStore

MAX_PARALLEL = 16


def _store() -> PollStore:
    # Loaded only when some property polls: most deployments have none, and this rule runs every minute
    # (the polling machinery, the state store and httpx stay out of their cold start).
    from pms_connector.polling import PollStore
    from pms_connector.settings import get_settings

    trace_calls(("httpx",))
    return PollStore(get_settings().table_name)


trace_calls(("botocore",))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    metrics.clear_metrics()
    logger.set_correlation_id(context.aws_request_id)  # records polled this round carry it to their commands
    directory = api.directory()
    ids = directory.polling_ids()
    if not ids:
        return {"properties": 0}

    store = _store()
    from pms_connector.pms.client import HttppmsClient
    from pms_connector.polling import poll_property

    def run(pid: str) -> tuple[str, PollReport | None]:
        prop = directory.get(pid)
        if prop is None or prop.pms_server is None:
            return pid, None
        server = prop.pms_server
        try:
            with HttppmsClient(server.url, auth=server.auth, user=server.user,
                               password=server.password.get_secret_value() if server.password else None,
                               token=server.token.get_secret_value() if server.token else None,
                               property_id=prop.id, zone=prop.zone, timeout_s=server.timeout_seconds) as client:
                return pid, poll_property(prop, client, store, owner=context.aws_request_id,
                                          remaining_ms=context.get_remaining_time_in_millis)
        except Exception:  # one property's trouble never stops the others; the next minute tries again
            logger.exception("polling failed", extra={"property": pid})
            return pid, None

    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(ids))) as pool:
        reports = dict(pool.map(run, ids))
    summary = {pid: {"ingested": r.ingested, "forwarded": r.forwarded, "buffered": r.buffered, "busy": r.busy}
               for pid, r in reports.items() if r is not None}
    logger.info("poll done", extra={"properties": len(ids), "summary": summary})
    return {"properties": len(ids), "reports": summary}
