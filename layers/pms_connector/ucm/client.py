"""HTTPS client of a site's Grandstream UCM PMS API (the "old" HTTPS API of the guide).

``GET {base_url}/pmsapi?token=…&format=xml&data=<pms_data_request>…`` over HTTP Digest. ``send`` never
raises for what the UCM or the network does: every answer, HTTP error, timeout or refused connection
becomes a ``UcmReply`` whose ``outcome`` tells the dispatcher what to do next:

* ``ok`` — done (0, -100; 20 on checkout: the guest is already out);
* ``reconcile`` — the UCM's state differs: 19 on checkin (send update), 20 on update/mov (send checkin);
* ``retry`` — try again later: 22 (cleaning/repairing), timeouts, connection errors, HTTP 5xx/408/429, an
  answer without a readable code;
* ``hold`` — the site is misconfigured (16, 21, HTTP 401/403, redirects, invalid TLS settings): hold the
  site's outbox and alarm;
* ``park`` — this command cannot succeed as it is (address problems, malformed request, unknown codes,
  other HTTP 4xx): park it and alarm;
* ``shorten`` — 25/26 on checkin/update: resend ``with_short_names(command, limit)``.

``probe`` checks a site's settings without a command: one request whose ``<pms_data_request>`` holds no
action, so it names no room and can read or change nothing (``property check-ucm``).

Nothing this module logs holds a guest name, the XML, the token, a password or the URL's query.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import ssl
import time
import urllib.parse
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Literal, Protocol

import httpx
from lxml import etree

from pms_connector import xmlcodec
from pms_connector.config import UcmSettings
from pms_connector.observability import logger
from pms_connector.ucm.commands import UcmCommand

__all__ = [
    "MAX_BODY_BYTES",
    "UCM_CODES",
    "Outcome",
    "UcmClient",
    "UcmReply",
    "UcmSender",
    "classify",
    "parse_response",
    "tls_context",
    "ucm_token",
]

Outcome = Literal["ok", "reconcile", "retry", "hold", "park", "shorten"]

MAX_BODY_BYTES = 65_536  # an answer is "[0] SUCCESS !"; anything past this is not read
_MAX_TEXT = 120
_PROBE_ACTION = "probe"  # the action logged for probe(): no command of the guide has this name
_PROBE_XML = b"<pms_data_request></pms_data_request>"  # no action: the UCM checks the token, then answers -9

# The guide's table 2.
UCM_CODES: dict[int, str] = {
    26: "First name or last name too long !",
    25: "First name or last name too long !",
    24: "Dest address already checked in !",
    23: "Dest address not exist !",
    22: "Cleaning or repairing, cannot check in or be mov to !",
    21: "PMSAPI not enable !",
    20: "Not checked in !",
    19: "Already checked in !",
    18: "Address error !",
    17: "Address and room not match !",
    16: "Auth error !",
    15: "In data error !",
    14: "Format error !",
    13: "No support action !",
    12: "XML data error !",
    0: "Success !",
    -100: "Success, but language error, not set !",
    -9: "Action error !",
}


@dataclass(frozen=True)
class UcmReply:
    """What came of one command: the UCM's code (None without a readable answer) and what to do next."""

    code: int | None
    text: str  # short description; never the request's guest names
    outcome: Outcome
    http_status: int | None
    sent: bool = True  # False when nothing reached the network (no time left, local TLS settings invalid)


class UcmSender(Protocol):
    """What the dispatcher needs of a UCM client (a fake in tests)."""

    def send(self, command: UcmCommand, *, timeout_s: float | None = None) -> UcmReply: ...


def classify(action: str, code: int, *, cancel: bool = False) -> Outcome:
    """The outcome of a UCM code for a command action (DESIGN.md, "UCM PMS API"). ``cancel``: a wake-up
    cancel (``w_action`` 0)."""
    if code in (0, -100):
        return "ok"
    if code == 19:  # already checked in
        return "reconcile" if action == "checkin" else "park"
    if code == 20:  # not checked in
        if action == "checkout" or cancel:  # nothing to take away from an empty room: as wanted
            return "ok"
        return "reconcile" if action in ("update", "mov") else "park"
    if code == 22:
        return "retry"
    if code in (16, 21):
        return "hold"
    if code in (25, 26):  # only checkin and update carry names that can be shortened
        return "shorten" if action in ("checkin", "update") else "park"
    return "park"  # 12-15, 17, 18, 23, 24, -9 and any code the guide does not list


def ucm_token(settings: UcmSettings) -> str:
    """The PMS token of the URL: MD5(pms_user + pms_password), hex, upper case unless token_case is lower."""
    secret = settings.pms_user + settings.pms_password.get_secret_value()
    digest = hashlib.md5(secret.encode("utf-8"), usedforsecurity=False).hexdigest()
    lower = settings.token_case == "lower"  # noqa: S105 (a letter case, not a password)
    return digest if lower else digest.upper()


def tls_context(settings: UcmSettings) -> ssl.SSLContext:
    """The TLS trust of a site: its ``ca_pem`` only (a site CA or a self-signed certificate), else the
    system's trust store; no verification at all with ``verify_tls: false``. ``ssl.SSLError`` when
    ``ca_pem`` is not a valid PEM certificate."""
    if not settings.verify_tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if settings.ca_pem:
        return ssl.create_default_context(cadata=settings.ca_pem)
    return ssl.create_default_context()


# ------------------------------------------------------------------------------------------------ client


class _NoQueryInHttpxLogs(logging.Filter):
    """httpx logs each request's full URL at INFO; a /pmsapi query holds the token and the guest's data."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(arg, httpx.URL) for arg in record.args):
            record.args = tuple(
                arg.copy_with(query=None) if isinstance(arg, httpx.URL) else arg for arg in record.args
            )
        return True


_httpx_logger = logging.getLogger("httpx")
if not any(isinstance(f, _NoQueryInHttpxLogs) for f in _httpx_logger.filters):
    _httpx_logger.addFilter(_NoQueryInHttpxLogs())


class UcmClient:
    """One site's UCM: one HTTP connection pool and one Digest state, created on first use and reused.

    Reusing the ``DigestAuth`` object keeps the last challenge, so after the first command each command is
    one HTTP request (a stale nonce costs one more). Not thread-safe: one dispatcher, one client.
    """

    def __init__(self, settings: UcmSettings, *, transport: httpx.BaseTransport | None = None) -> None:
        self._settings = settings
        self._transport = transport
        self._token = ucm_token(settings)
        self._auth = httpx.DigestAuth(settings.api_user, settings.api_password.get_secret_value())
        self._host = httpx.URL(settings.base_url).host
        self._http: httpx.Client | None = None
        self._warned_insecure = False

    def __enter__(self) -> UcmClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool (a later send opens a new one, keeping the Digest state)."""
        if self._http is not None:
            self._http.close()
            self._http = None

    def send(self, command: UcmCommand, *, timeout_s: float | None = None) -> UcmReply:
        """Send one command and classify the answer; never raises for HTTP, network or UCM errors.

        ``timeout_s`` caps each of the connect, write, read and pool timeouts (httpx's timeouts apply per
        phase: with a Digest round trip the wall time can reach a few times ``timeout_s``). A
        ``timeout_s`` of zero or less sends nothing and answers ``retry``.
        """
        started = time.monotonic()
        reply = self._exchange(command.action, command.to_xml(), timeout_s, command)
        self._log("ucm command", command.action, reply, started)
        return reply

    def probe(self, *, timeout_s: float | None = None) -> UcmReply:
        """Check the site's settings (TLS, Digest login, PMS token, PMS API enabled) without a command.

        Sends one ``/pmsapi`` request, authenticated like a command, whose ``<pms_data_request>`` holds no
        action: it names no room, so it reads and changes nothing. ``outcome`` is ``ok`` when the UCM
        answered with a code past its token check (-9 "Action error" for this request), ``hold`` when it
        refused the token (16) or its PMS API is off (21), and otherwise what ``send`` would answer:
        ``hold`` for HTTP 401/403, an untrusted certificate or an invalid ``ca_pem``, ``retry`` when the
        UCM could not be reached. Never raises for HTTP, network or UCM errors; ``timeout_s`` as in ``send``.
        """
        started = time.monotonic()
        reply = self._exchange(_PROBE_ACTION, _PROBE_XML, timeout_s, None)
        if reply.code is not None:
            reply = replace(reply, outcome="hold" if reply.code in (16, 21) else "ok")
        self._log("ucm probe", _PROBE_ACTION, reply, started)
        return reply

    # -- internals

    @staticmethod
    def _log(message: str, action: str, reply: UcmReply, started: float) -> None:
        logger.info(message, extra={
            "action": action,
            "code": reply.code,
            "outcome": reply.outcome,
            "http_status": reply.http_status,
            "ms": round((time.monotonic() - started) * 1000),
        })

    def _exchange(self, action: str, xml: bytes, timeout_s: float | None,
                  command: UcmCommand | None) -> UcmReply:
        if timeout_s is not None and timeout_s <= 0:
            return UcmReply(None, "no time left to send", "retry", None, sent=False)
        try:
            http = self._client()
        except ssl.SSLError:
            return UcmReply(None, "TLS settings invalid (ca_pem)", "hold", None, sent=False)
        query = urllib.parse.urlencode(
            [("token", self._token), ("format", "xml"), ("data", xml.decode("utf-8"))],
            quote_via=urllib.parse.quote,  # %20 for spaces, never '+': unambiguous for any URL decoder
            safe="",
        )
        try:
            with http.stream("GET", "/pmsapi?" + query, timeout=self._timeout(timeout_s)) as response:
                status = response.status_code
                body = _read_bounded(response) if 200 <= status < 300 else b""
        except httpx.TimeoutException as exc:
            return UcmReply(None, f"timeout ({type(exc).__name__})", "retry", None)
        except httpx.HTTPError as exc:  # connection refused/reset, protocol errors, bad Digest challenge
            if _caused_by(exc, ssl.SSLCertVerificationError):  # every command will fail alike: the site's setting
                return UcmReply(None, "TLS certificate not trusted (ca_pem, verify_tls)", "hold", None)
            return UcmReply(None, f"connection failed ({type(exc).__name__})", "retry", None)
        except NotImplementedError:  # httpx's DigestAuth: a challenge offering only qop=auth-int
            return UcmReply(None, "digest challenge not supported (qop auth-int)", "hold", None)
        if not 200 <= status < 300:
            return UcmReply(None, f"HTTP {status}", _http_outcome(status), status)
        code, text = parse_response(body)
        if code is None:
            return UcmReply(None, f"unreadable answer ({len(body)} bytes)", "retry", status)
        cancel = getattr(command, "w_action", None) == "0"
        return UcmReply(code, _safe_text(code, text, command), classify(action, code, cancel=cancel), status)

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(
                base_url=self._settings.base_url,
                auth=self._auth,
                verify=self._verify(),
                timeout=self._timeout(None),
                transport=self._transport,
                follow_redirects=False,
                trust_env=False,  # the UCM is on the hotel LAN (VPN): no proxies or netrc from the environment
                headers={"Accept-Encoding": "identity", "User-Agent": "pms-connector"},
            )
        return self._http

    def _verify(self) -> ssl.SSLContext:
        if not self._settings.verify_tls and not self._warned_insecure:
            logger.warning("TLS verification disabled by configuration", extra={"ucm": self._host})
            self._warned_insecure = True
        return tls_context(self._settings)

    def _timeout(self, timeout_s: float | None) -> httpx.Timeout:
        settings = self._settings
        connect, read = settings.connect_timeout_seconds, settings.read_timeout_seconds
        if timeout_s is not None:
            connect, read = min(connect, timeout_s), min(read, timeout_s)
        # A request is a few hundred bytes: writing it and waiting for a pooled connection are as quick
        # as connecting.
        return httpx.Timeout(connect=connect, read=read, write=connect, pool=connect)


def _read_bounded(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= MAX_BODY_BYTES:
            break
    return b"".join(chunks)[:MAX_BODY_BYTES]


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _http_outcome(status: int) -> Outcome:
    if status in (401, 403):  # still refused after the Digest exchange: wrong API credentials
        return "hold"
    if status >= 500 or status in (408, 429):
        return "retry"
    if 300 <= status < 400:  # base_url points somewhere else (http vs https, port): the site's setting
        return "hold"
    return "park"


def _safe_text(code: int, text: str, command: UcmCommand | None) -> str:
    """The UCM's description, unless it is empty or echoes a guest name: then the guide's wording."""
    folded = text.casefold()
    names = [getattr(command, field, None) for field in ("firstname", "lastname")]
    if not text or any(isinstance(n, str) and n.strip() and n.strip().casefold() in folded for n in names):
        return UCM_CODES.get(code, f"UCM code {code}")
    return text


# ------------------------------------------------------------------------------------------ the answer

# "[0] SUCCESS !", "[ -100 ]Success, but ...": at the start of the body or of a line.
_BRACKET = re.compile(r"^[ \t]*\[[ \t]*(-?\d{1,9})[ \t]*\][ \t]*([^\r\n]*)", re.MULTILINE)
_INTEGER = re.compile(r"^\s*(-?\d{1,9})\s*$")
_CODE_NAMES = ("code", "status", "result")
_TEXT_NAMES = ("description", "desc", "message", "msg", "reason", "text", "info")
_DTD = re.compile(r"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
_XML_PARSER = xmlcodec.HARDENED_PARSER  # one hardened parser configuration for the whole package


def parse_response(body: bytes | str) -> tuple[int | None, str]:
    """The UCM's code and description from an answer body; ``(None, "")`` when there is none.

    Accepts the guide's ``[code] description`` text, an XML document with an element (or attribute) named
    code/status/result holding an integer, or a JSON object with such a key. Never raises.
    """
    if isinstance(body, bytes | bytearray | memoryview):
        text = bytes(body[:MAX_BODY_BYTES]).decode("utf-8", errors="replace")
    elif isinstance(body, str):
        text = body[:MAX_BODY_BYTES]
    else:
        return None, ""
    text = text.lstrip("\ufeff").strip()
    found: tuple[int, str] | None = None
    if text.startswith("<"):
        found = _from_xml(text)
    elif text.startswith("{"):
        found = _from_json(text)
    if found is None:
        found = _from_bracket(text)
    if found is None:
        return None, ""
    return found[0], _clean(found[1])


def _from_bracket(text: str) -> tuple[int, str] | None:
    match = _BRACKET.search(text)
    return (int(match[1]), match[2]) if match else None


def _from_xml(text: str) -> tuple[int, str] | None:
    if _DTD.search(text):
        return None  # a UCM never sends a DTD; do not even parse one
    try:
        root = etree.fromstring(text.encode("utf-8", errors="replace"), _XML_PARSER)
    except (etree.LxmlError, ValueError, TypeError):
        return None
    if root is None:
        return None
    code: int | None = None
    description = ""
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        name = etree.QName(element).localname.lower()
        if code is None:
            if name in _CODE_NAMES:
                code = _integer(element.text)
            for attribute, value in element.attrib.items():
                if code is None and etree.QName(attribute).localname.lower() in _CODE_NAMES:
                    code = _integer(value)
        if not description and name in _TEXT_NAMES and element.text and element.text.strip():
            description = element.text
    if code is not None:
        return code, description
    return _from_bracket("\n".join(t.strip() for t in root.itertext()))  # <response>[0] SUCCESS !</response>


def _from_json(text: str) -> tuple[int, str] | None:
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return None
    # The object itself, then the objects one level down ({"response": {"code": 0}}).
    candidates: list[Any] = [document]
    if isinstance(document, dict):
        candidates += [value for value in document.values() if isinstance(value, dict)]
    for candidate in candidates:
        if not isinstance(candidate, dict):
            continue
        keys = {str(key).lower(): value for key, value in candidate.items()}
        for name in _CODE_NAMES:
            code = _json_integer(keys.get(name))
            if code is not None:
                description = next((keys[n] for n in _TEXT_NAMES if isinstance(keys.get(n), str)), "")
                return code, description
    return None


def _integer(text: str | None) -> int | None:
    match = _INTEGER.match(text) if isinstance(text, str) else None
    return int(match[1]) if match else None


def _json_integer(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if -10**9 < value < 10**9 else None
    return _integer(value) if isinstance(value, str) else None


def _clean(text: str) -> str:
    text = " ".join(_CONTROL.sub(" ", text).split())
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"
