"""What the two HTTP functions share: the request/response shapes, default dependencies, and the one place
where errors become HTTP answers (with errors.py).

API Gateway has already matched the route when a function runs: the event's ``routeKey`` (e.g.
``POST /pms/{property}/events``) picks the handler from a dict. A full router (Powertools' resolver) would
only repeat that match, and costs about 90 ms of cold-start import, a third of the budget.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from pms_connector.errors import (
    CODE_MALFORMED,
    ConnectorError,
    InvalidField,
    MalformedRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    httppms_answer,
    ingest_answer,
)
from pms_connector.observability import logger

if TYPE_CHECKING:
    from pms_connector.directory import ParameterStoreDirectory
    from pms_connector.httppms import Dependencies
    from pms_connector.state import StateStore

HTTPPMS_MAX_BODY_BYTES = 262_144
JSON = "application/json"


@dataclass(frozen=True)
class Request:
    """An API Gateway HTTP API (payload 2.0) request."""

    event: Mapping[str, Any]
    headers: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        raw = self.event.get("headers") or {}
        object.__setattr__(self, "headers", {str(k).lower(): str(v) for k, v in raw.items()})

    @property
    def route_key(self) -> str:
        return str(self.event.get("routeKey", ""))

    def path_parameter(self, name: str) -> str:
        return str((self.event.get("pathParameters") or {}).get(name, ""))

    def query(self, name: str) -> str | None:
        value = (self.event.get("queryStringParameters") or {}).get(name)
        return None if value is None else str(value)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    @property
    def is_xml(self) -> bool:
        ctype = self.content_type
        return ctype in ("application/xml", "text/xml") or ctype.endswith("+xml")

    def body(self, limit: int) -> bytes:
        """The raw body, refused past ``limit`` bytes."""
        body = self.event.get("body") or ""
        if self.event.get("isBase64Encoded"):
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


@dataclass(frozen=True)
class Response:
    status: int
    body: str
    content_type: str = "application/json; charset=utf-8"

    def to_proxy(self) -> dict[str, Any]:
        return {"statusCode": self.status, "headers": {"Content-Type": self.content_type}, "body": self.body,
                "isBase64Encoded": False}


Route = Callable[[Request], Response]


@dataclass(frozen=True)
class ErrorAnswers:
    """How one API answers its errors."""

    known: Callable[[ConnectorError, Request], Response]
    not_found: Callable[[Request], Response]
    unexpected: Callable[[Request], Response]


def serve(event: Mapping[str, Any], routes: Mapping[str, Route], answers: ErrorAnswers) -> dict[str, Any]:
    """Run the route API Gateway matched; every error becomes the API's answer here, and only here."""
    request = Request(event)
    route = routes.get(request.route_key)
    if route is None:
        return answers.not_found(request).to_proxy()
    try:
        return route(request).to_proxy()
    except ConnectorError as exc:
        logger.info("request refused", extra={"code": exc.code, "error": type(exc).__name__})
        return answers.known(exc, request).to_proxy()
    except Exception:
        # A bug or a misconfiguration (e.g. a missing IAM permission): logged with its trace, answered 500.
        logger.exception("request failed")
        return answers.unexpected(request).to_proxy()


# --- answers -----------------------------------------------------------------------------------------


def json_response(status: int, body: Mapping[str, Any]) -> Response:
    from pms_connector.store import dumps

    return Response(status, dumps(body))


def httppms_response(status: int, body: Mapping[str, Any], as_xml: bool) -> Response:
    """HTTPPMS answers in the request's format: XML when it came as XML, JSON otherwise."""
    if as_xml:
        from pms_connector import xmlcodec

        return Response(status, xmlcodec.dump_response(body).decode("utf-8"), "application/xml; charset=utf-8")
    return json_response(status, body)


HTTPPMS_ERRORS = ErrorAnswers(
    known=lambda exc, req: httppms_response(*httppms_answer(exc), req.is_xml),
    not_found=lambda req: json_response(404, {"code": CODE_MALFORMED, "description": "no such route; POST /httppms"}),
    # Link-level 500: pmslink buffers the request and sends it again.
    unexpected=lambda req: httppms_response(500, {"code": 100, "description": "internal error; retry later"},
                                            req.is_xml),
)

INGEST_ERRORS = ErrorAnswers(
    known=lambda exc, _req: json_response(*ingest_answer(exc)),
    not_found=lambda _req: json_response(404, {"error": "no such route"}),
    unexpected=lambda _req: json_response(500, {"error": "internal error; retry later", "retryable": True}),
)


# --- bodies --------------------------------------------------------------------------------------------


def decode_httppms_body(request: Request) -> Any:
    """JSON by default; XML when the content type says so (parsed with entities, DTDs and network off)."""
    raw = request.body(HTTPPMS_MAX_BODY_BYTES)
    if request.is_xml:
        from pms_connector import xmlcodec  # lxml only when XML actually arrives

        try:
            return xmlcodec.parse_request(raw, max_bytes=HTTPPMS_MAX_BODY_BYTES)
        except xmlcodec.XmlError as exc:
            raise MalformedRequest(str(exc)) from None
    from pms_connector import wire

    try:
        return wire.loads(raw)
    except wire.WireError as exc:
        if exc.path:  # one value JSON cannot carry (NaN, 1e999, a lone surrogate...): code 202 naming it
            raise InvalidField(wire.field_name(exc.path), exc.reason) from None
        raise MalformedRequest(f"the request body is {exc}") from None


def require_json(request: Request) -> None:
    ctype = request.content_type
    if ctype and ctype != JSON and not ctype.endswith("+json"):
        raise UnsupportedMediaType(f"content type '{ctype[:60]}' is not supported; send application/json")


# --- default dependencies, one per container -------------------------------------------------------------


def utc_now() -> datetime:
    return datetime.now(UTC)


@lru_cache(maxsize=1)
def directory() -> ParameterStoreDirectory:
    from pms_connector.directory import ParameterStoreDirectory
    from pms_connector.settings import get_settings

    settings = get_settings()
    return ParameterStoreDirectory(
        settings.config_parameter_prefix, settings.config_secret_prefix, settings.config_cache_seconds,
        secret_cache_seconds=settings.config_secret_cache_seconds,
    )


@lru_cache(maxsize=1)
def store() -> StateStore:
    from pms_connector.settings import get_settings
    from pms_connector.state import StateStore

    return StateStore(get_settings().table_name)


@lru_cache(maxsize=1)
def httppms_dependencies() -> Dependencies:
    from pms_connector.bus import EventPublisher
    from pms_connector.httppms import Dependencies
    from pms_connector.settings import get_settings
    from pms_connector.store import ConnectorStore

    # Not store(): a StateStore loads room/booking state and the UCM planner, which GET_REQUEST never needs.
    return Dependencies(directory(), ConnectorStore(get_settings().table_name),
                        EventPublisher(get_settings().event_bus_name), utc_now)
