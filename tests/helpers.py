"""Builders for API Gateway events and signed HTTPPMS requests used across the test suites."""

from __future__ import annotations

import base64
import json
from typing import Any

from pms_connector.auth import md5_stamp, md5_token
from tests.conftest import local_stamp

DEMO_USER, DEMO_PASSWORD = "pmslink", "demo-password"
DEMO_INGEST_KEY = "demo-ingest-key-0123456789abcdef"
RESORT_TOKEN = "demo-token-12345-12345"
RESORT_INGEST_KEY = "demo-resort-ingest-key-abcdef0123"


def signed(request: dict[str, Any], *, user: str = DEMO_USER, password: str = DEMO_PASSWORD,
           tz: str = "Europe/Madrid") -> dict[str, Any]:
    """The request with a fresh datetime and its MD5 usertoken, as pmslink sends it."""
    out = dict(request)
    out["datetime"] = local_stamp(tz)
    out["user"] = user
    out["usertoken"] = md5_token(user, md5_stamp(out["datetime"]), password)
    return out


def http_event(method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None,
               query: dict[str, str] | None = None, route: str | None = None,
               path_parameters: dict[str, str] | None = None, raw_body: str | None = None) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event."""
    text = raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
    hdrs = {"content-type": "application/json", **(headers or {})}
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {route or path}",
        "rawPath": path,
        "rawQueryString": "&".join(f"{k}={v}" for k, v in (query or {}).items()),
        "headers": hdrs,
        "requestContext": {
            "accountId": "123456789012", "apiId": "local", "domainName": "localhost",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                     "userAgent": "pytest"},
            "requestId": "test-request", "routeKey": f"{method} {route or path}", "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000", "timeEpoch": 0,
        },
        "isBase64Encoded": False,
    }
    if text is not None:
        event["body"] = text
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = path_parameters
    return event


def httppms_event(body: Any, *, property_in_path: str | None = None, headers: dict[str, str] | None = None,
                  raw_body: str | None = None) -> dict[str, Any]:
    if property_in_path:
        return http_event("POST", f"/httppms/{property_in_path}", body=body, headers=headers,
                          route="/httppms/{property}", path_parameters={"property": property_in_path},
                          raw_body=raw_body)
    return http_event("POST", "/httppms", body=body, headers=headers, raw_body=raw_body)


def ingest_event(pid: str, body: Any, *, key: str = DEMO_INGEST_KEY, raw_body: str | None = None,
                 headers: dict[str, str] | None = None) -> dict[str, Any]:
    return http_event("POST", f"/pms/{pid}/events", body=body, route="/pms/{property}/events",
                      path_parameters={"property": pid}, raw_body=raw_body,
                      headers={"authorization": f"Bearer {key}", **(headers or {})})


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def answer(response: dict[str, Any]) -> dict[str, Any]:
    return json.loads(response["body"])
