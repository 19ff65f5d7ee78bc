"""PMS ingest API (Bearer ingest key): POST /pms/{property}/events, GET /pms/{property}/inbound,
GET /pms/{property}/rooms and /pms/{property}/rooms/{room}."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from pms_connector import api, ingest
from pms_connector.auth import check_ingest_key
from pms_connector.config import PropertyConfig
from pms_connector.errors import InvalidField
from pms_connector.observability import logger, metrics, trace_calls, tracer


def _authorized(request: api.Request) -> PropertyConfig:
    prop = api.directory().get(request.path_parameter("property"))
    check_ingest_key(prop, request.headers.get("authorization"))
    assert prop is not None
    logger.append_keys(property=prop.id)
    return prop


def post_events(request: api.Request) -> api.Response:
    prop = _authorized(request)
    api.require_json(request)
    result = ingest.ingest(api.store(), prop, request.body(ingest.MAX_BODY_BYTES))
    return api.json_response(202, {"accepted": len(result.sequence), "sequence": result.sequence})


def get_inbound(request: api.Request) -> api.Response:
    prop = _authorized(request)
    after = _int_param(request, "after", default=0, low=0, high=10**12)
    limit = _int_param(request, "limit", default=100, low=1, high=100)
    return api.json_response(200, ingest.inbound_page(api.store(), prop, after=after, limit=limit))


def get_rooms(request: api.Request) -> api.Response:
    from pms_connector.state import room_view

    prop = _authorized(request)
    rooms = sorted(api.store().rooms(prop.id), key=lambda r: r.room)
    return api.json_response(200, {"rooms": [room_view(r) for r in rooms]})


def get_room(request: api.Request) -> api.Response:
    from pms_connector.state import room_view

    prop = _authorized(request)
    name = request.path_parameter("room")
    room = api.store().room(prop.id, name)
    if room is None:
        return api.json_response(404, {"error": f"no state for room '{name[:32]}'"})
    return api.json_response(200, room_view(room))


def _int_param(request: api.Request, name: str, *, default: int, low: int, high: int) -> int:
    value = request.query(name)
    if value is None or value == "":
        return default
    # Length first: int() of more digits than sys.get_int_max_str_digits() raises a plain ValueError.
    if not value.isascii() or not value.isdigit() or len(value) > len(str(high)) or not low <= int(value) <= high:
        raise InvalidField(name, f"must be an integer from {low} to {high}")
    return int(value)


ROUTES = {
    "POST /pms/{property}/events": post_events,
    "GET /pms/{property}/inbound": get_inbound,
    "GET /pms/{property}/rooms": get_rooms,
    "GET /pms/{property}/rooms/{room}": get_room,
}


trace_calls(("botocore",))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # An invocation that ends without a metric is not flushed: drop any dimension it left behind.
    metrics.clear_metrics()
    return api.serve(event, ROUTES, api.INGEST_ERRORS)
