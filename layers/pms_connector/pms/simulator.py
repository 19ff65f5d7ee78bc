"""A hotel PMS that serves the char pmslink HTTPPMS API, for tests and the local runner (PMS polling mode).

Plain HTTP on 127.0.0.1 (port 0 by default: the system picks one) in a daemon thread::

    with PmsSimulator(property_id="demo-hotel", auth="md5", user="user1", password="password1") as pms:
        pms.queue({"action": "WAKE", "room": "101", "mode": "S", "waketime": "2026-01-02T08:00:00"})
        ...  # HttppmsClient(pms.url, ...).get_request()

What it serves (choices where the spec says nothing are marked *):

* ``POST`` to any path, a JSON body (read as JSON whatever the Content-Type*; at most 1 MiB*, larger is
  HTTP 413). Checks, in order:

  1. an injected fault, if one is due (see below);
  2. the body must be a JSON object, else HTTP 200 ``{"code": 201, ...}``;
  3. authentication as the spec describes the mode: ``basic`` — ``Authorization: Basic base64(user:password)``;
     ``token`` — ``usertoken`` equals the token; ``md5`` — ``user`` matches and ``usertoken`` equals
     md5(user + YYYYMMDDHHNNSS of the body's ``datetime`` + password) (hex, any letter case*), with that
     ``datetime`` read as the PMS's local time (``zone``) within ``md5_window_seconds`` of now (both readings
     of a repeated DST hour count). A ``property`` other than the simulator's* is refused the same way.
     Refusals are HTTP 401 ``{"code": 204, "description": "authentication failed"}``, or ``{"code": 205,
     ...}`` for a correct token whose datetime is outside the window*;
  4. ``action`` must be a non-empty string (compared stripped and upper-cased), else HTTP 200 code 201.

* ``GET_REQUEST`` answers ``{"code": 0, "description": "OK", "ACTION_LIST": [...]}`` with at most 100 queued
  records, oldest first, or ``{"code": 0, "description": "OK"}`` when there are none. ``delivery``:

  - ``"remove"`` (the spec's behaviour): the records answered leave the queue when the answer is made, whether
    or not the client reads it (an answer lost on the way is lost with its records, as with a real PMS).
  - ``"confirm"``: the answer also carries ``"batch": "<id>"``, and every GET_REQUEST answers that same batch
    (same id, same records, even when records were queued since) until one carries ``"confirm": "<id>"``.
    That request removes the batch's records from the queue and is answered the next batch (cut from the
    oldest 100 remaining records, a new id), or no data and no ``batch`` when the queue is empty. Confirming
    the last confirmed batch again is harmless (the answer is the current/next batch); any other ``confirm``
    value answers HTTP 200 ``{"code": 208, "description": "unknown batch ..."}`` and changes nothing.
    Records of the outstanding batch still count as ``pending()``. (The same semantics as the connector's own
    ``delivery: confirm``.)

* Any other action (WAKE, CALL, POST, RS, MUR, DND, MSGTXT …) is appended to the received log, in arrival
  order, as the body without ``user``/``usertoken`` (``datetime`` and ``property`` are kept), and answered
  ``{"code": 0, "description": "OK"}``. The simulator does not validate the record's fields*.

* ``GET /state`` (loopback clients only, else 403): ``{"pending": [...], "received": [...]}``. Other
  ``GET`` paths are 404, other methods 405.

Faults (``fail_next``; ``set_random_faults``): a due fault is taken by the next request whose action matches
(any request when the rule has no ``action``; a body without a readable action matches only rules without
one), before authentication. Kinds:

* ``http_status`` (300-599) — that status with a JSON body ``{"code": c, "description": "simulated ..."}``
  (``c`` = the ``code`` given, else 204 for 401, 100 for 5xx, 200 otherwise);
* ``code`` alone — HTTP 200 with ``{"code": code, "description": "simulated fault"}``;
* ``reset`` — the connection is closed without an answer, as a TCP RST (SO_LINGER 0);
* ``delay_s`` — sleeps first; combined with one of the above, that fault follows the delay. A delay *alone*
  is a slow PMS: after the delay the request is processed normally (state changes) and answered, even when
  the client has given up meanwhile (the lost-answer case).

Every other faulted request changes no state: a faulted GET_REQUEST removes (or confirms) nothing, a faulted
WAKE is not received. ``requests()`` logs every POST in arrival order: ``{"action", "http_status", "code",
"fault"}`` (``fault`` None or the kind: "http", "code", "reset", "delay"; ``http_status`` None for a reset;
``code`` None when the answer had none) plus ``"faulted"`` (True when a fault was applied).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import secrets
import socket
import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pms_connector.auth import basic_matches

__all__ = ["MAX_BATCH", "MAX_BODY_BYTES", "PmsSimulator"]

logger = logging.getLogger(__name__)

MAX_BATCH = 100  # the spec's maximum per GET_REQUEST answer
MAX_BODY_BYTES = 1024 * 1024
CREDENTIALS = frozenset({"user", "usertoken"})
_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
_RANDOM_FAULTS: tuple[tuple[str, int], ...] = (("http", 500), ("code", 101), ("reset", 0))


@dataclass
class _Fault:
    count: int
    http_status: int | None = None
    code: int | None = None
    reset: bool = False
    delay_s: float = 0.0
    action: str | None = None

    @property
    def kind(self) -> str:
        if self.reset:
            return "reset"
        if self.http_status is not None:
            return "http"
        if self.code is not None:
            return "code"
        return "delay"


class _Refused(Exception):
    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


def _same(given: object, expected: str) -> bool:
    text = given if isinstance(given, str) else ""
    return hmac.compare_digest(text.encode("utf-8"), expected.encode("utf-8"))


class PmsSimulator:
    """A PMS's HTTPPMS server: a GET_REQUEST queue you fill, a log of what it received, injectable faults."""

    def __init__(
        self,
        *,
        property_id: str,
        auth: Literal["md5", "basic", "token"],
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        zone: str = "Europe/Madrid",
        md5_window_seconds: int = 300,
        delivery: Literal["remove", "confirm"] = "remove",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if auth in ("md5", "basic"):
            if not user or not password:
                raise ValueError(f"user and password are required when auth is '{auth}'")
        elif auth == "token":
            if not token:
                raise ValueError("token is required when auth is 'token'")
        else:
            raise ValueError("auth must be 'md5', 'basic' or 'token'")
        if delivery not in ("remove", "confirm"):
            raise ValueError("delivery must be 'remove' or 'confirm'")
        if md5_window_seconds < 0:
            raise ValueError("md5_window_seconds must be >= 0")
        self.property_id = property_id
        self.auth = auth
        self.delivery = delivery
        self._user, self._password, self._token = user, password, token
        self._zone = ZoneInfo(zone)
        self._window = md5_window_seconds
        self._host, self._port = host, port
        self._lock = threading.Lock()
        self._queue: list[dict[str, Any]] = []
        self._received: list[dict[str, Any]] = []
        self._requests: list[dict[str, Any]] = []
        self._faults: list[_Fault] = []
        self._random_rate = 0.0
        self._rng = random.Random()  # noqa: S311 - fault injection, not security
        self._batch: tuple[str, int] | None = None  # confirm mode: (id, number of queued records in it)
        self._last_confirmed: str | None = None
        self._batches = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._url: str | None = None
        self._used = False

    # ------------------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Serve in a daemon thread."""
        if self._used:
            raise RuntimeError("a PmsSimulator can be started once")
        self._used = True
        server_cls = _Server6 if ":" in self._host else _Server
        server = server_cls((self._host, self._port), _Handler, self)
        port = server.server_address[1]
        url_host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self._host, self._host)  # noqa: S104
        self._url = f"http://[{url_host}]:{port}/" if ":" in url_host else f"http://{url_host}:{port}/"
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name=f"pms-simulator-{port}", daemon=True)
        self._thread.start()
        logger.debug("PMS simulator listening on %s", self._url)

    def stop(self) -> None:
        """Stop serving, drop open connections and wake delayed requests. Idempotent."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None

    def __enter__(self) -> PmsSimulator:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>/``"""
        if self._url is None:
            raise RuntimeError("the simulator is not started")
        return self._url

    # ------------------------------------------------------------------------------------- test API

    def queue(self, *records: Mapping[str, Any]) -> None:
        """Add records (JSON objects) to the GET_REQUEST queue, in order."""
        copies: list[dict[str, Any]] = []
        for record in records:
            if not isinstance(record, Mapping):
                raise TypeError("a record must be a mapping")
            copies.append(json.loads(json.dumps(dict(record))))  # JSON-able, and our own copy
        with self._lock:
            self._queue.extend(copies)

    def pending(self) -> list[dict[str, Any]]:
        """Queued records not yet removed (remove mode) or confirmed (confirm mode), oldest first."""
        with self._lock:
            return copy.deepcopy(self._queue)

    def received(self) -> list[dict[str, Any]]:
        """Records posted to the PMS (not GET_REQUEST), in arrival order, without credentials."""
        with self._lock:
            return copy.deepcopy(self._received)

    def requests(self) -> list[dict[str, Any]]:
        """Every POST, in arrival order: {"action", "http_status", "code", "fault", "faulted"}."""
        with self._lock:
            return copy.deepcopy(self._requests)

    def state(self) -> dict[str, Any]:
        """{"pending": [...], "received": [...]} (what ``GET /state`` answers)."""
        with self._lock:
            return {"pending": copy.deepcopy(self._queue), "received": copy.deepcopy(self._received)}

    def fail_next(self, count: int, *, http_status: int | None = None, code: int | None = None,
                  reset: bool = False, delay_s: float = 0, action: str | None = None) -> None:
        """Make the next ``count`` requests (of ``action`` if given) fail; see the module's "Faults".

        ``http_status`` (with ``code`` for its body's code, optionally), ``code`` alone, or ``reset``; ``delay_s``
        alone makes the requests slow but processed. Rules queue up: a request takes the first that matches.
        """
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError("count must be an integer >= 0")
        if reset and (http_status is not None or code is not None):
            raise ValueError("reset cannot be combined with http_status or code")
        if http_status is not None and (isinstance(http_status, bool) or not isinstance(http_status, int)
                                        or not 300 <= http_status <= 599):
            raise ValueError("http_status must be 300..599 (use code for an HTTP 200 answer)")
        if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
            raise ValueError("code must be an integer")
        if isinstance(delay_s, bool) or not isinstance(delay_s, int | float) or not 0 <= delay_s <= 300:
            raise ValueError("delay_s must be a number of seconds in 0..300")
        if http_status is None and code is None and not reset and not delay_s:
            raise ValueError("give http_status, code, reset or delay_s")
        if action is not None and (not isinstance(action, str) or not action.strip()):
            raise ValueError("action must be a non-empty string")
        if count == 0:
            return
        with self._lock:
            self._faults.append(_Fault(count=count, http_status=http_status, code=code, reset=bool(reset),
                                       delay_s=float(delay_s), action=action.strip().upper() if action else None))

    def set_random_faults(self, rate: float, *, seed: int | None = None) -> None:
        """Fault each request with probability ``rate``: an even mix of HTTP 500, code 101 and a reset."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be within 0..1")
        with self._lock:
            self._random_rate = float(rate)
            self._rng = random.Random(seed)  # noqa: S311 - fault injection, not security

    def reset_faults(self) -> None:
        """Forget pending ``fail_next`` rules and switch random faults off."""
        with self._lock:
            self._faults.clear()
            self._random_rate = 0.0

    # ------------------------------------------------------------------------------------ internals

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _admit(self, action: str | None) -> tuple[dict[str, Any], _Fault | None]:
        """Log the request and pick its fault, if any."""
        entry: dict[str, Any] = {"action": action, "http_status": None, "code": None, "fault": None,
                                 "faulted": False}
        with self._lock:
            self._requests.append(entry)
            fault: _Fault | None = None
            for rule in self._faults:
                if rule.action is None or rule.action == action:
                    rule.count -= 1
                    if rule.count <= 0:
                        self._faults.remove(rule)
                    fault = rule
                    break
            if fault is None and self._random_rate and self._rng.random() < self._random_rate:
                kind, value = self._rng.choice(_RANDOM_FAULTS)
                fault = _Fault(count=1, http_status=value if kind == "http" else None,
                               code=value if kind == "code" else None, reset=kind == "reset")
            if fault is not None:
                entry["fault"], entry["faulted"] = fault.kind, True
        return entry, fault

    def _answered(self, entry: dict[str, Any], status: int | None, code: int | None) -> None:
        with self._lock:
            entry["http_status"], entry["code"] = status, code

    def _authenticate(self, body: Mapping[str, Any], authorization: str | None) -> None:
        """Raise _Refused unless the request carries this PMS's credentials."""
        if self.auth == "basic":
            assert self._user is not None and self._password is not None
            if not basic_matches(authorization, self._user, self._password):
                raise _Refused(204, "authentication failed")
        elif self.auth == "token":
            assert self._token is not None
            if not _same(body.get("usertoken"), self._token):
                raise _Refused(204, "authentication failed")
        else:
            self._check_md5(body)
        prop = body.get("property")
        if prop is not None and prop != self.property_id:
            raise _Refused(204, "authentication failed")

    def _check_md5(self, body: Mapping[str, Any]) -> None:
        assert self._user is not None and self._password is not None
        stamp_source = body.get("datetime")
        try:
            if not isinstance(stamp_source, str) or len(stamp_source) != 19:
                raise ValueError
            local = datetime.strptime(stamp_source, _DATETIME_FORMAT)  # naive: the PMS's local time
        except ValueError:
            raise _Refused(204, "authentication failed") from None
        stamp = local.strftime("%Y%m%d%H%M%S")
        expected = hashlib.md5((self._user + stamp + self._password).encode("utf-8"),
                               usedforsecurity=False).hexdigest()
        token = body.get("usertoken")
        token_ok = _same(token.lower() if isinstance(token, str) else None, expected)
        if not (_same(body.get("user"), self._user) and token_ok):
            raise _Refused(204, "authentication failed")
        now = datetime.now(UTC)
        skew = min(abs((local.replace(tzinfo=self._zone, fold=fold) - now).total_seconds()) for fold in (0, 1))
        if skew > self._window:
            raise _Refused(205, f"datetime '{stamp_source}' is {int(skew)} s away from the PMS's local time "
                                f"(window {self._window} s)")

    def _process(self, body: Mapping[str, Any], action: str) -> dict[str, Any]:
        """Run one authenticated request with a valid action; the answer's JSON body."""
        if action == "GET_REQUEST":
            with self._lock:
                return self._get_request(body.get("confirm"))
        record = {key: copy.deepcopy(value) for key, value in body.items() if key not in CREDENTIALS}
        with self._lock:
            self._received.append(record)
        return {"code": 0, "description": "OK"}

    def _get_request(self, confirm: object) -> dict[str, Any]:
        """Called with the lock held."""
        if self.delivery == "remove":
            served = self._queue[:MAX_BATCH]
            del self._queue[:MAX_BATCH]
            return _served(served, None)
        if confirm is not None:
            if self._batch is not None and isinstance(confirm, str) and confirm == self._batch[0]:
                del self._queue[:self._batch[1]]
                self._last_confirmed, self._batch = confirm, None
            elif not (isinstance(confirm, str) and confirm == self._last_confirmed):
                shown = confirm[:40] if isinstance(confirm, str) else type(confirm).__name__
                return {"code": 208, "description": f"unknown batch '{shown}'"}
        if self._batch is None:
            size = min(MAX_BATCH, len(self._queue))
            if size == 0:
                return _served([], None)
            self._batches += 1
            self._batch = (f"b{self._batches}-{secrets.token_hex(4)}", size)
        batch_id, size = self._batch
        return _served(self._queue[:size], batch_id)


def _served(records: list[dict[str, Any]], batch_id: str | None) -> dict[str, Any]:
    answer: dict[str, Any] = {"code": 0, "description": "OK"}
    if records:
        answer["ACTION_LIST"] = copy.deepcopy(records)
        if batch_id is not None:
            answer["batch"] = batch_id
    return answer


# ------------------------------------------------------------------------------------------ HTTP server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], sim: PmsSimulator) -> None:
        self.sim = sim
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would call socket.getfqdn (a DNS lookup that can be slow): skip it.
        TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def finish_request(self, request: Any, client_address: Any) -> None:
        self.sim._track(request, add=True)
        try:
            with contextlib.suppress(OSError):
                request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().finish_request(request, client_address)
        finally:
            self.sim._track(request, add=False)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("PMS simulator: error on connection from %s", client_address, exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "PMS-simulator"
    sys_version = ""
    timeout = 20

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("PMS simulator %s: " + format, self.address_string(), *args)

    def _json(self, status: int, value: Any) -> None:
        body = json.dumps(value, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _reset(self) -> None:
        """Close the connection without answering, as a TCP RST."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

    def _is_loopback(self) -> bool:
        try:
            ip = ipaddress.ip_address(str(self.client_address[0]).split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return ip.ipv4_mapped.is_loopback
        return ip.is_loopback

    def do_GET(self) -> None:
        if urlsplit(self.path).path != "/state":
            self._json(404, {"error": "not found"})
        elif not self._is_loopback():
            self._json(403, {"error": "/state answers loopback clients only"})
        else:
            self._json(200, self.server.sim.state())

    def do_PUT(self) -> None:
        self._json(405, {"error": "method not allowed"})

    do_DELETE = do_PATCH = do_PUT

    def do_POST(self) -> None:
        sim = self.server.sim
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._json(411, {"code": 200, "description": "a Content-Length is required"})
            return
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self.close_connection = True
            self._json(413 if length > MAX_BODY_BYTES else 400,
                       {"code": 206, "description": f"a body of at most {MAX_BODY_BYTES} bytes is required"})
            return
        raw = self.rfile.read(length) if length else b""
        body: Any = None
        with contextlib.suppress(ValueError, RecursionError):
            body = json.loads(raw.decode("utf-8-sig"))
        action_value = body.get("action") if isinstance(body, dict) else None
        action = action_value.strip().upper() if isinstance(action_value, str) and action_value.strip() else None

        entry, fault = sim._admit(action)
        if fault is not None:
            logger.debug("PMS simulator: fault %s on %s", fault.kind, action)
            if fault.delay_s and sim._stopping.wait(fault.delay_s):
                self._reset()
                return
            if fault.reset:
                self._reset()
                return
            if fault.http_status is not None:
                status = fault.http_status
                code = fault.code if fault.code is not None else (
                    204 if status == 401 else 100 if status >= 500 else 200)
                try:
                    phrase = HTTPStatus(status).phrase
                except ValueError:
                    phrase = "Error"
                sim._answered(entry, status, code)
                self._json(status, {"code": code, "description": f"simulated HTTP {status} {phrase}"})
                return
            if fault.code is not None:
                sim._answered(entry, 200, fault.code)
                self._json(200, {"code": fault.code, "description": "simulated fault"})
                return
            # a delay alone: a slow PMS, the request is processed below
        if sim._stopping.is_set():
            self._reset()
            return
        if not isinstance(body, dict):
            sim._answered(entry, 200, 201)
            self._json(200, {"code": 201, "description": "malformed body: a JSON object is required"})
            return
        try:
            sim._authenticate(body, self.headers.get("Authorization"))
        except _Refused as refused:
            sim._answered(entry, 401, refused.code)
            self._json(401, {"code": refused.code, "description": refused.description})
            return
        if action is None:
            sim._answered(entry, 200, 201)
            self._json(200, {"code": 201, "description": "malformed body: 'action' is required"})
            return
        answer = sim._process(body, action)
        sim._answered(entry, 200, answer["code"])
        self._json(200, answer)
