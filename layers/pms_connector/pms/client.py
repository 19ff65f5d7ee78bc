"""HTTPPMS client for PMS polling mode: the connector as the client of a PMS that serves the HTTPPMS API.

Every request is a JSON ``POST`` to the PMS's URL, signed afresh (``sign``): the property's local time in
``datetime`` (YYYY-MM-DDTHH:MM:SS), ``property``, and the credentials of the auth mode:

* ``md5`` — ``user`` and ``usertoken`` = md5(user + YYYYMMDDHHNNSS of that ``datetime`` + password), so
  every request carries a new token (a resent record is signed again and passes the PMS's time window);
* ``token`` — the agreed ``usertoken``;
* ``basic`` — an ``Authorization: Basic`` header (RFC 7617), nothing in the body.

The body's own ``datetime``, ``property``, ``user`` and ``usertoken`` are always replaced: the spec's MD5
token is computed over the request's ``datetime``, which must be the time of sending.

``get_request()`` polls the PMS's queue (``ACTION_LIST``); ``send(record)`` posts one WAKE / CALL / POST …
record. Neither raises for anything the PMS or the network does: each outcome is classified
(the spec's "Confirmations and replies" and "Link connection control"):

* ``ok`` — HTTP 2xx with ``code`` 0;
* ``buffer`` — keep the record and resend it later, in order: connection errors and timeouts; HTTP 400,
  401, 408, 429, 500 and every other 5xx; redirects (3xx, never followed: the URL is a setting to fix);
  codes 100-199 (the spec's "1xx error that requires a retry"); a 2xx whose body is unreadable: not JSON,
  not an object, no integer ``code``, or larger than ``MAX_RESPONSE_BYTES`` (5 MiB; not read past that);
* ``rejected`` — resending will not help: every other HTTP 4xx, codes 200-299 (the spec's "2xx error not
  recoverable on retry") and any other non-zero code (the spec's own example answers code 1 for a closed
  account).

A GET_REQUEST answered ``ok`` whose ``ACTION_LIST`` is not an array is ``buffer`` (nothing is returned);
array entries that are not JSON objects are left out and counted in ``skipped``.

Log lines carry the action, outcome, code, HTTP status, record count and milliseconds only: never
credentials, the URL's query or a record's contents.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal
from zoneinfo import ZoneInfo

import httpx

from pms_connector.auth import local_now, md5_stamp, md5_token
from pms_connector.observability import logger

__all__ = [
    "MAX_RESPONSE_BYTES",
    "AuthMode",
    "HttppmsClient",
    "Outcome",
    "PollResult",
    "SendResult",
    "classify_code",
]

Outcome = Literal["ok", "buffer", "rejected"]
AuthMode = Literal["md5", "basic", "token"]

MAX_RESPONSE_BYTES = 5 * 1024 * 1024
GET_REQUEST = "GET_REQUEST"
_SIGNED_FIELDS = frozenset({"datetime", "property", "user", "usertoken"})
_BUFFER_STATUSES = frozenset({400, 401, 408, 429, 500})  # + every 5xx and 3xx
_MAX_DESCRIPTION = 200
_MAX_BATCH_ID = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


@dataclass(frozen=True)
class SendResult:
    """What came of one request: the PMS's code (None without a readable one) and what to do next."""

    outcome: Outcome
    code: int | None
    description: str  # short; the PMS's own description or what went wrong, never credentials
    http_status: int | None  # None when no HTTP answer arrived


@dataclass(frozen=True)
class PollResult(SendResult):
    """A GET_REQUEST's answer: the records of ``ACTION_LIST`` (empty unless ``outcome`` is ok)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    batch: str | None = None  # the answer's "batch" id (PMSs with confirmed delivery), else None
    skipped: int = 0  # ACTION_LIST entries that were not JSON objects


def classify_code(code: int) -> Outcome:
    """The outcome of an HTTPPMS result code carried by an HTTP 2xx answer."""
    if code == 0:
        return "ok"
    if 100 <= code <= 199:
        return "buffer"
    return "rejected"


def _http_outcome(status: int) -> Outcome:
    if status in _BUFFER_STATUSES or status >= 500 or status < 400:
        return "buffer"
    return "rejected"


class _NoQueryInHttpxLogs(logging.Filter):
    """httpx logs each request's URL at INFO: drop the query (a PMS URL may carry a key there)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(arg, httpx.URL) for arg in record.args):
            record.args = tuple(
                arg.copy_with(query=None) if isinstance(arg, httpx.URL) else arg for arg in record.args
            )
        return True


_httpx_logger = logging.getLogger("httpx")
if not any(isinstance(f, _NoQueryInHttpxLogs) for f in _httpx_logger.filters):
    _httpx_logger.addFilter(_NoQueryInHttpxLogs())


class HttppmsClient:
    """One PMS's HTTPPMS API: one connection pool, created on first use and reused; thread-safe."""

    def __init__(
        self,
        url: str,
        *,
        auth: AuthMode,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        property_id: str,
        zone: ZoneInfo,
        timeout_s: float = 10,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], datetime] | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError("url must be an http:// or https:// URL with a host")
        if parsed.userinfo:
            raise ValueError("url must not carry credentials; use user/password/token")
        if auth in ("md5", "basic"):
            if not user or not password:
                raise ValueError(f"user and password are required when auth is '{auth}'")
            if auth == "basic" and ":" in user:
                raise ValueError("a basic auth user cannot contain ':' (RFC 7617)")
        elif auth == "token":
            if not token:
                raise ValueError("token is required when auth is 'token'")
        else:
            raise ValueError("auth must be 'md5', 'basic' or 'token'")
        if not property_id:
            raise ValueError("property_id is required")
        if not timeout_s > 0:
            raise ValueError("timeout_s must be > 0")
        self._url = url
        self._auth: AuthMode = auth
        self._user = user
        self._password = password
        self._token = token
        self._property_id = property_id
        self._zone = zone
        self._timeout_s = float(timeout_s)
        self._transport = transport
        self._clock = clock
        self._verify = verify
        self._basic: str | None = None
        if auth == "basic":
            assert user is not None and password is not None
            self._basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        self._http: httpx.Client | None = None
        self._http_lock = threading.Lock()

    def __enter__(self) -> HttppmsClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool (a later request opens a new one)."""
        with self._http_lock:
            http, self._http = self._http, None
        if http is not None:
            http.close()

    def __repr__(self) -> str:  # never the credentials
        return f"HttppmsClient(property_id={self._property_id!r}, auth={self._auth!r})"

    # ------------------------------------------------------------------------------------------ API

    def sign(self, body: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """The body as it is sent now (datetime, property, credentials) and the extra HTTP headers."""
        moment = self._clock() if self._clock is not None else datetime.now(UTC)
        if moment.tzinfo is None:
            raise ValueError("clock must return an aware datetime")
        stamp = local_now(self._zone, moment)
        signed: dict[str, Any] = {"datetime": stamp}
        headers: dict[str, str] = {}
        if self._auth == "md5":
            assert self._user is not None and self._password is not None
            signed["user"] = self._user
            signed["usertoken"] = md5_token(self._user, md5_stamp(stamp), self._password)
        elif self._auth == "token":
            assert self._token is not None
            signed["usertoken"] = self._token
        else:
            assert self._basic is not None
            headers["Authorization"] = self._basic
        signed.update((key, value) for key, value in body.items() if key not in _SIGNED_FIELDS)
        signed["property"] = self._property_id
        return signed, headers

    def get_request(self, *, confirm: str | None = None) -> PollResult:
        """Poll the PMS's queue. ``confirm`` confirms a batch (PMSs that deliver in confirmed batches)."""
        body: dict[str, Any] = {"action": GET_REQUEST}
        if confirm is not None:
            body["confirm"] = confirm
        started = time.monotonic()
        result, document = self._exchange(body)
        poll = _poll_result(result, document)
        _log(GET_REQUEST, poll, started, records=len(poll.records))
        return poll

    def send(self, record: Mapping[str, Any]) -> SendResult:
        """Post one record (WAKE, CALL, POST, RS, MUR, DND, MSGTXT …), signed; classify the answer.

        Raises ValueError for a record without an ``action`` and TypeError for one that is not JSON-able
        (the caller's data, never the PMS's behaviour).
        """
        action = record.get("action")
        if not isinstance(action, str) or not action.strip():
            raise ValueError("record needs an 'action'")
        started = time.monotonic()
        result, _ = self._exchange(record)
        _log(action.strip()[:40], result, started)
        return result

    # ------------------------------------------------------------------------------------ internals

    def _client(self) -> httpx.Client:
        with self._http_lock:
            if self._http is None:
                self._http = self._new_http()
            return self._http

    def _new_http(self) -> httpx.Client:
        return httpx.Client(
            timeout=httpx.Timeout(self._timeout_s),
            transport=self._transport,
            # Plain http never uses TLS: skip building a context from the trust store (slow).
            verify=self._verify if httpx.URL(self._url).scheme == "https" else False,
            follow_redirects=False,
            trust_env=False,  # no proxies or netrc credentials from the environment
            headers={"Accept": "application/json", "Accept-Encoding": "identity", "User-Agent": "pms-connector"},
        )

    def _exchange(self, body: Mapping[str, Any]) -> tuple[SendResult, dict[str, Any] | None]:
        signed, headers = self.sign(body)
        content = json.dumps(signed, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers["Content-Type"] = "application/json; charset=utf-8"
        try:
            with self._client().stream("POST", self._url, content=content, headers=headers) as response:
                status = response.status_code
                raw = _read_bounded(response)
        except httpx.TimeoutException as exc:
            return SendResult("buffer", None, f"timeout ({type(exc).__name__})", None), None
        except httpx.HTTPError as exc:  # refused, reset, closed without an answer, TLS, protocol errors
            return SendResult("buffer", None, f"connection failed ({type(exc).__name__})", None), None
        return _interpret(status, raw)


def _read_bounded(response: httpx.Response) -> bytes | None:
    """The body, or None when it is larger than MAX_RESPONSE_BYTES (not read past that)."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _interpret(status: int, raw: bytes | None) -> tuple[SendResult, dict[str, Any] | None]:
    """Classify an HTTP answer; the parsed document comes back too when the outcome is ok."""
    document, problem = _parse(raw)
    code = _code(document) if document is not None else None
    text = _description(document)
    if not 200 <= status < 300:
        described = f"HTTP {status}: {text}" if text else f"HTTP {status}"
        return SendResult(_http_outcome(status), code if isinstance(code, int) else None, described, status), None
    if problem is not None:
        return SendResult("buffer", None, f"HTTP {status}: {problem}", status), None
    assert document is not None
    if code is None:
        return SendResult("buffer", None, f"HTTP {status}: answer has no 'code'", status), None
    if isinstance(code, str):
        return SendResult("buffer", None, f"HTTP {status}: answer's 'code' is not an integer", status), None
    outcome = classify_code(code)
    description = text or ("OK" if code == 0 else f"code {code}")
    return SendResult(outcome, code, description, status), document if outcome == "ok" else None


def _parse(raw: bytes | None) -> tuple[dict[str, Any] | None, str | None]:
    if raw is None:
        return None, f"answer larger than {MAX_RESPONSE_BYTES} bytes, not read"
    if not raw.strip():
        return None, "empty answer"
    from pms_connector import wire

    try:  # strictly: NaN, 1e999 or a lone surrogate in a polled record could not be stored or sent on
        document = wire.loads(raw)
    except wire.WireError as exc:
        return None, f"answer: {exc}"
    if not isinstance(document, dict):
        return None, "answer is not a JSON object"
    return document, None


def _code(document: Mapping[str, Any]) -> int | str | None:
    """The integer code, None when absent, or the string "invalid" when present but not an integer."""
    if "code" not in document:
        return None
    value = document["code"]
    if isinstance(value, bool) or not isinstance(value, int):
        return "invalid"
    return value


def _description(document: Mapping[str, Any] | None) -> str:
    value = document.get("description") if document is not None else None
    if not isinstance(value, str):
        return ""
    return _CONTROL.sub(" ", value).strip()[:_MAX_DESCRIPTION]


def _poll_result(result: SendResult, document: dict[str, Any] | None) -> PollResult:
    base = (result.code, result.description, result.http_status)
    if result.outcome != "ok" or document is None:
        return PollResult(result.outcome, *base)
    items = document.get("ACTION_LIST")
    if items is None:
        items = []
    if not isinstance(items, list):
        status = result.http_status
        return PollResult("buffer", result.code, f"HTTP {status}: ACTION_LIST is not an array", status)
    records = [item for item in items if isinstance(item, dict)]
    batch = document.get("batch")
    if not isinstance(batch, str) or not batch or len(batch) > _MAX_BATCH_ID:
        batch = None
    return PollResult("ok", *base, records=records, batch=batch, skipped=len(items) - len(records))


def _log(action: str, result: SendResult, started: float, **extra: int) -> None:
    logger.info("httppms request", extra={
        "action": action,
        "outcome": result.outcome,
        "code": result.code,
        "http_status": result.http_status,
        "ms": round((time.monotonic() - started) * 1000),
        **extra,
    })
