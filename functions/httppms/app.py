"""HTTPPMS endpoint: POST /httppms and POST /httppms/{property} (pmslink and integrated systems)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from pms_connector import api
from pms_connector.httppms import handle_request
from pms_connector.observability import logger, metrics, trace_calls, tracer


def httppms(request: api.Request) -> api.Response:
    path_property = request.path_parameter("property") or None
    answer = handle_request(
        api.decode_httppms_body(request),
        path_property=path_property,
        authorization=request.headers.get("authorization"),
        deps=api.httppms_dependencies(),
    )
    return api.httppms_response(200, answer, request.is_xml)


ROUTES = {"POST /httppms": httppms, "POST /httppms/{property}": httppms}


trace_calls(("botocore",))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # An invocation that ends without a metric is not flushed: drop any dimension it left behind.
    metrics.clear_metrics()
    return api.serve(event, ROUTES, api.HTTPPMS_ERRORS)
