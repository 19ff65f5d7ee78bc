"""What the two HTTP functions share: default dependencies, body decoding, responses, error mapping.

Errors become answers here and in errors.py only; routes never catch.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import Response

from pms_connector.errors import (
    CODE_MALFORMED,
    ConnectorError,
    MalformedRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    httppms_answer,
    ingest_answer,
)
from pms_connector.observability import logger

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

    from pms_connector.directory import ParameterStoreDirectory
    from pms_connector.httppms import Dependencies
    from pms_connector.store import ConnectorStore

HTTPPMS_MAX_BODY_BYTES = 262_144
JSON = "application/json"


def utc_now() -> datetime:
    return datetime.now(UTC)


@lru_cache(maxsize=1)
def directory() -> ParameterStoreDirectory:
    from pms_connector.directory import ParameterStoreDirectory
    from pms_connector.settings import get_settings

    settings = get_settings()
    return ParameterStoreDirectory(
        settings.config_parameter_prefix, settings.config_secret_prefix, settings.config_cache_seconds
    )


@lru_cache(maxsize=1)
def store() -> ConnectorStore:
    from pms_connector.settings import get_settings
    from pms_connector.store import ConnectorStore

    return ConnectorStore(get_settings().table_name)


@lru_cache(maxsize=1)
def httppms_dependencies() -> Dependencies:
    from pms_connector.bus import EventPublisher
    from pms_connector.httppms import Dependencies
    from pms_connector.settings import get_settings

    return Dependencies(directory(), store(), EventPublisher(get_settings().event_bus_name), utc_now)


def body_bytes(event: APIGatewayProxyEventV2, limit: int) -> bytes:
    """The raw request body, refused past ``limit`` bytes."""
    body = event.body or ""
    if event.is_base64_encoded:
        if len(body) > limit * 4 // 3 + 4:
            raise PayloadTooLarge(f"body larger than {limit} bytes")
        try:
            raw = base64.b64decode(body, validate=True)
        except binascii.Error:
            raise MalformedRequest("body is not valid base64") from None
    else:
        raw = body.encode("utf-8", errors="surrogatepass")
    if len(raw) > limit:
        raise PayloadTooLarge(f"body larger than {limit} bytes")
    return raw


def content_type(event: APIGatewayProxyEventV2) -> str:
    return (event.headers or {}).get("content-type", "") or ""


def is_xml(event: APIGatewayProxyEventV2) -> bool:
    ctype = content_type(event).split(";")[0].strip().lower()
    return ctype in ("application/xml", "text/xml") or ctype.endswith("+xml")


def decode_httppms_body(event: APIGatewayProxyEventV2) -> Any:
    """JSON by default; XML when the content type says so (parsed with entities, DTDs and network off)."""
    raw = body_bytes(event, HTTPPMS_MAX_BODY_BYTES)
    if is_xml(event):
        from pms_connector import xmlcodec  # lxml only when XML actually arrives

        try:
            return xmlcodec.parse_request(raw, max_bytes=HTTPPMS_MAX_BODY_BYTES)
        except xmlcodec.XmlError as exc:
            raise MalformedRequest(str(exc)) from None
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise MalformedRequest("the request body is not valid JSON") from None


def require_json(event: APIGatewayProxyEventV2) -> None:
    ctype = content_type(event).split(";")[0].strip().lower()
    if ctype and ctype != JSON and not ctype.endswith("+json"):
        raise UnsupportedMediaType(f"content type '{ctype[:60]}' is not supported; send application/json")


def httppms_response(status: int, body: dict[str, Any], as_xml: bool) -> Response[str]:
    if as_xml:
        from pms_connector import xmlcodec

        return Response(status_code=status, content_type="application/xml; charset=utf-8",
                        body=xmlcodec.dump_response(body).decode("utf-8"))
    return json_response(status, body)


def json_response(status: int, body: dict[str, Any]) -> Response[str]:
    from pms_connector.store import dumps

    return Response(status_code=status, content_type="application/json; charset=utf-8", body=dumps(body))


def register_httppms_errors(app: APIGatewayHttpResolver) -> None:
    """HTTPPMS errors: HTTP 200 with the code (401 for authentication), in the request's format."""

    @app.not_found
    def _no_route(exc: Exception) -> Response[str]:
        return json_response(404, {"code": CODE_MALFORMED, "description": "no such route; POST /httppms"})

    @app.exception_handler(ConnectorError)  # type: ignore[untyped-decorator]
    def _known(exc: ConnectorError) -> Response[str]:
        status, body = httppms_answer(exc)
        logger.info("httppms request refused", extra={"code": exc.code, "status": status})
        return httppms_response(status, body, is_xml(app.current_event))

    @app.exception_handler(Exception)  # type: ignore[untyped-decorator]
    def _unexpected(exc: Exception) -> Response[str]:
        # A bug or a misconfiguration (e.g. a missing IAM permission): link-level 500, pmslink retries.
        logger.exception("httppms request failed")
        return httppms_response(500, {"code": 100, "description": "internal error; retry later"},
                                is_xml(app.current_event))


def register_ingest_errors(app: APIGatewayHttpResolver) -> None:
    """Ingest API errors: 4xx/5xx with a JSON body."""

    @app.not_found
    def _no_route(exc: Exception) -> Response[str]:
        return json_response(404, {"error": "no such route"})

    @app.exception_handler(ConnectorError)  # type: ignore[untyped-decorator]
    def _known(exc: ConnectorError) -> Response[str]:
        status, body = ingest_answer(exc)
        logger.info("ingest request refused", extra={"status": status})
        return json_response(status, body)

    @app.exception_handler(Exception)  # type: ignore[untyped-decorator]
    def _unexpected(exc: Exception) -> Response[str]:
        logger.exception("ingest request failed")
        return json_response(500, {"error": "internal error; retry later", "retryable": True})
