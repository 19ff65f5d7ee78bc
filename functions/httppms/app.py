"""HTTPPMS endpoint: POST /httppms and POST /httppms/{property} (pmslink and integrated systems)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from pms_connector import api
from pms_connector.httppms import handle_request
from pms_connector.observability import logger, metrics

app = APIGatewayHttpResolver()
api.register_httppms_errors(app)


@app.post("/httppms")
def httppms() -> Response[str]:
    return _serve(path_property=None)


@app.post("/httppms/<property_id>")
def httppms_for_property(property_id: str) -> Response[str]:
    return _serve(path_property=property_id)


def _serve(path_property: str | None) -> Response[str]:
    event = app.current_event
    answer = handle_request(
        api.decode_httppms_body(event),
        path_property=path_property,
        authorization=event.headers.get("authorization"),
        deps=api.httppms_dependencies(),
    )
    return api.httppms_response(200, answer, api.is_xml(event))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # An invocation that ends without a metric is not flushed: drop any dimension it left behind.
    metrics.clear_metrics()
    return app.resolve(event, context)
