"""PMS ingest API: POST /pms/{property}/events and GET /pms/{property}/inbound (Bearer ingest key)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from pms_connector import api, ingest
from pms_connector.auth import check_ingest_key
from pms_connector.config import PropertyConfig
from pms_connector.errors import InvalidField
from pms_connector.observability import logger, metrics

app = APIGatewayHttpResolver()
api.register_ingest_errors(app)


def _authorized(property_id: str) -> PropertyConfig:
    prop = api.directory().get(property_id)
    check_ingest_key(prop, app.current_event.headers.get("authorization"))
    assert prop is not None
    logger.append_keys(property=prop.id)
    metrics.add_dimension("property", prop.id)
    return prop


@app.post("/pms/<property_id>/events")
def post_events(property_id: str) -> Response[str]:
    prop = _authorized(property_id)
    api.require_json(app.current_event)
    raw = api.body_bytes(app.current_event, ingest.MAX_BODY_BYTES)
    result = ingest.ingest(api.store(), prop, raw)
    return api.json_response(202, {"accepted": len(result.sequence), "sequence": result.sequence})


@app.get("/pms/<property_id>/inbound")
def get_inbound(property_id: str) -> Response[str]:
    prop = _authorized(property_id)
    after = _int_param("after", default=0, low=0, high=10**12)
    limit = _int_param("limit", default=100, low=1, high=100)
    return api.json_response(200, ingest.inbound_page(api.store(), prop, after=after, limit=limit))


def _int_param(name: str, *, default: int, low: int, high: int) -> int:
    value = app.current_event.get_query_string_value(name)
    if value is None or value == "":
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise InvalidField(name, f"must be an integer from {low} to {high}")
    return int(value)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # An invocation that ends without a metric is not flushed: drop any dimension it left behind.
    metrics.clear_metrics()
    return app.resolve(event, context)
