"""The project's exceptions and the one place they become HTTPPMS codes and HTTP answers.

HTTPPMS answers every processed request with HTTP 200 and ``{"code", "description"}``: 0 success, 100-125
an error worth retrying, 200-225 an error retrying will not fix. Other HTTP statuses are link-level
(pmslink buffers and retries on 400/401/500). The ingest API is a plain REST API with 4xx/5xx statuses.
"""

from __future__ import annotations

from typing import Any

# HTTPPMS result codes. README.md lists them; keep both in step.
OK = 0
CODE_STORAGE_BUSY = 100  # DynamoDB throttled or unavailable
CODE_DELIVERY_CONFLICT = 101  # another poller moved the queue at the same moment
CODE_BUS_UNAVAILABLE = 102  # stored, but not yet published to the event bus
CODE_CONFIG_UNAVAILABLE = 103  # property configuration could not be read
CODE_MALFORMED = 200  # body is not a JSON object / XML document
CODE_UNKNOWN_ACTION = 201
CODE_INVALID_FIELD = 202
CODE_AUTH_FAILED = 204
CODE_DATETIME_WINDOW = 205
CODE_TOO_LARGE = 206
CODE_CHECKOUT_DECLINED = 207
CODE_UNKNOWN_BATCH = 208
CODE_PROPERTY_MISMATCH = 209


class ConnectorError(Exception):
    """Base of every error the connector answers on purpose."""

    code: int = CODE_MALFORMED
    http_status: int = 400  # ingest API status

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class RetryableError(ConnectorError):
    """A dependency failed; the same request may succeed later (HTTPPMS 1xx, HTTP 503)."""

    code = CODE_STORAGE_BUSY
    http_status = 503


class StorageBusy(RetryableError):
    code = CODE_STORAGE_BUSY


class DeliveryConflict(RetryableError):
    code = CODE_DELIVERY_CONFLICT


class BusUnavailable(RetryableError):
    code = CODE_BUS_UNAVAILABLE


class ConfigUnavailable(RetryableError):
    code = CODE_CONFIG_UNAVAILABLE


class RequestError(ConnectorError):
    """The request itself is wrong (HTTPPMS 2xx, HTTP 400)."""


class MalformedRequest(RequestError):
    code = CODE_MALFORMED


class UnknownAction(RequestError):
    code = CODE_UNKNOWN_ACTION


class InvalidField(RequestError):
    code = CODE_INVALID_FIELD

    def __init__(self, field: str, reason: str, *, action: str | None = None) -> None:
        prefix = f"{action}: " if action else ""
        super().__init__(f"{prefix}invalid field '{field}': {reason}")
        self.field = field
        self.reason = reason


class AuthenticationFailed(RequestError):
    """Bad or missing credentials, or an unknown property: one answer for all (no enumeration)."""

    code = CODE_AUTH_FAILED
    http_status = 401

    def __init__(self, description: str = "authentication failed") -> None:
        super().__init__(description)


class DatetimeOutsideWindow(RequestError):
    code = CODE_DATETIME_WINDOW


class PayloadTooLarge(RequestError):
    code = CODE_TOO_LARGE
    http_status = 413


class UnsupportedMediaType(RequestError):
    code = CODE_MALFORMED
    http_status = 415


class UnknownBatch(RequestError):
    code = CODE_UNKNOWN_BATCH


class PropertyMismatch(RequestError):
    code = CODE_PROPERTY_MISMATCH


class InvalidRecords(RequestError):
    """An ingest body with one or more invalid records: every problem is listed."""

    def __init__(self, issues: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(issues)} invalid field(s)")
        self.issues = issues


class ConfigError(ValueError):
    """A property configuration that does not validate; the message names the property and the field."""


def httppms_answer(exc: ConnectorError) -> tuple[int, dict[str, Any]]:
    """HTTP status and HTTPPMS body for an error: 401 for authentication, 200 with the code otherwise."""
    status = 401 if isinstance(exc, AuthenticationFailed) else 200
    return status, {"code": exc.code, "description": exc.description}


def ingest_answer(exc: ConnectorError) -> tuple[int, dict[str, Any]]:
    """HTTP status and JSON body of the ingest API for an error."""
    body: dict[str, Any] = {"error": exc.description}
    if isinstance(exc, InvalidRecords):
        body["issues"] = exc.issues
    if isinstance(exc, RetryableError):
        body["retryable"] = True
    return exc.http_status, body
