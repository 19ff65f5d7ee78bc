"""A Grandstream UCM6xxx PMS API ("old" HTTPS API) simulator, for tests and the local runner.

It serves, over HTTPS with a CA generated at start:

* ``GET /pmsapi?token=..&format=xml&data=<url-encoded XML>`` behind HTTP Digest authentication
  (RFC 7616, MD5, ``qop="auth"``), answering ``text/plain`` bodies such as ``[0] SUCCESS !`` exactly as
  the Grandstream "UCM6xxx Series PMS API Guide" lists them;
* admin endpoints without authentication, loopback clients only: ``GET /state``, ``GET /log``,
  ``POST /faults`` (JSON arguments of :meth:`UcmSimulator.fail_next`) and ``POST /reset-faults``.

Choices where the guide says nothing (documented here so tests and the client agree):

* Order of checks: Digest, token (16), PMSAPI enabled (21), ``format`` (14), XML (12; also a root element
  other than ``pms_data_request``), one action element (-9 none or several; 13 unknown), then per action:
  missing/invalid fields (15), address unknown (18), room given but not the address's room (17), names too
  long (25 first name, 26 last name; Unicode characters counted, limit 32), then state checks.
* Required fields: ``address`` for every action, ``d_address`` for ``mov``, ``w_action`` (0 or 1) for
  ``wakeup`` and ``w_time`` (HHMM) when setting one. ``w_date`` (YYYYMMDD) is optional, ``w_mode`` 1 or 2
  (default 1), ``cos`` 1..4 when given; anything else malformed is 15. Unknown extra fields are ignored.
  Empty elements count as absent.
* ``mov`` state checks: source occupied (20), destination exists (23), destination room matches (17),
  destination free (24), destination not cleaning (22).
* ``wakeup`` with ``w_action`` 0 removes the matching wake-ups (by the ``w_date``/``w_time`` given, all of
  the address's when neither is given) and answers 0 even when nothing matched (a retried cancel is safe).
* An unsupported ``language`` answers -100 and leaves the language unset (check-in) or unchanged (update);
  the rest of the command is applied. Languages are compared case-insensitively.
* Token: ``MD5(pms_user + pms_password)`` in hex, ``token_case`` "upper" (default, as in the guide),
  "lower" or "any". ``format`` must be ``xml`` (case-insensitive).
* Digest nonces stay valid for an hour; an expired or unknown nonce gets a new challenge with
  ``stale=true``; an exact replay (same nonce, nc and cnonce) is refused.

The call log (:meth:`UcmSimulator.log`) holds every call that passed Digest authentication, in arrival
order, faulted ones included: ``code`` is the answered PMS code, the injected one for a code fault, and
``None`` for calls answered with an HTTP status, a reset or no answer at all.
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
import re
import secrets
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import TCPServer
from types import TracebackType
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit
from urllib.request import parse_http_list, parse_keqv_list

from pms_connector.ucm.client import UCM_CODES
from pms_connector.xmlcodec import XmlError, parse_request

__all__ = ["CA_COMMON_NAME", "DESCRIPTIONS", "GUEST_FIELDS", "SUPPORTED_LANGUAGES", "UcmSimulator"]

logger = logging.getLogger(__name__)

CA_COMMON_NAME = "pms-connector UCM simulator CA"
REALM = "Grandstream"

# Table 2 of the guide (the description text after the "[code] " prefix).
DESCRIPTIONS: dict[int, str] = {**UCM_CODES, 0: "SUCCESS !"}  # the guide's prose writes "[0] SUCCESS !"

GUEST_FIELDS = ("account", "firstname", "lastname", "language", "vipcode", "datein", "dateout", "cos", "credit",
                "cidnumber")
SUPPORTED_LANGUAGES = frozenset({"EN", "ES", "FR", "DE", "IT", "PT", "ZH", "AR", "RU"})
ACTIONS = ("checkin", "checkout", "update", "mov", "wakeup")
ROOM_STATUSES = ("ok", "cleaning")
NAME_LIMIT = 32

_DIGITS8 = re.compile(r"[0-9]{8}")
_HHMM = re.compile(r"([01][0-9]|2[0-3])[0-5][0-9]")
_MAX_ADMIN_BODY = 65_536
_HANDSHAKE_TIMEOUT_S = 5.0
_RANDOM_FAULT_KINDS = ("code", "http", "reset", "delay")


def response_text(code: int) -> str:
    """The body the UCM answers for a PMS code, e.g. ``[0] SUCCESS !``."""
    return f"[{code}] {DESCRIPTIONS[code]}"


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


# ------------------------------------------------------------------------------------------------ TLS


def _generate_tls(extra_host: str) -> tuple[str, bytes, bytes]:
    """A fresh CA and a server certificate signed by it: (CA PEM, server cert PEM, server key PEM)."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME)])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    names: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
        x509.DNSName("localhost"),
    ]
    if extra_host and extra_host not in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "::", ""):  # noqa: S104
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(extra_host)))
        except ValueError:
            names.append(x509.DNSName(extra_host))

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=True, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return ca_pem, cert_pem, key_pem


def _server_ssl_context(cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # load_cert_chain only reads files: write them to a private directory, load, delete.
    with tempfile.TemporaryDirectory(prefix="ucm-sim-key-") as tmp:
        cert_file, key_file = Path(tmp) / "server.pem", Path(tmp) / "server-key.pem"
        cert_file.write_bytes(cert_pem)
        key_file.touch(mode=0o600)
        key_file.write_bytes(key_pem)
        context.load_cert_chain(str(cert_file), str(key_file))
    return context


# --------------------------------------------------------------------------------------------- Digest


class _Digest:
    """Server side of HTTP Digest (RFC 7616) with MD5 and qop="auth"."""

    nonce_lifetime_s = 3600.0
    max_nonces = 1000
    max_seen = 20_000

    def __init__(self, user: str, password: str) -> None:
        self._user = user
        self._ha1 = _md5(f"{user}:{REALM}:{password}")
        self._opaque = secrets.token_hex(16)
        self._nonces: OrderedDict[str, float] = OrderedDict()
        self._seen: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._lock = threading.Lock()

    def challenge(self, *, stale: bool = False) -> str:
        nonce = secrets.token_hex(16)
        now = time.monotonic()
        with self._lock:
            while self._nonces and (len(self._nonces) >= self.max_nonces
                                    or now - next(iter(self._nonces.values())) > self.nonce_lifetime_s):
                self._nonces.popitem(last=False)
            self._nonces[nonce] = now
        value = f'Digest realm="{REALM}", qop="auth", nonce="{nonce}", opaque="{self._opaque}", algorithm=MD5'
        return value + (", stale=true" if stale else "")

    def check(self, header: str | None, method: str, uri: str) -> tuple[bool, bool]:
        """(authenticated, stale): stale when the credentials are right but the nonce is not ours/expired."""
        if not header:
            return False, False
        scheme, _, rest = header.strip().partition(" ")
        if scheme.lower() != "digest":
            return False, False
        try:
            params = parse_keqv_list(parse_http_list(rest))
        except ValueError:
            return False, False
        params = {k.strip().lower(): v for k, v in params.items()}
        username, nonce, response = params.get("username"), params.get("nonce"), params.get("response")
        nc, cnonce, qop = params.get("nc", ""), params.get("cnonce", ""), params.get("qop")
        if (username != self._user or params.get("realm") != REALM or params.get("uri") != uri
                or not nonce or not response or qop != "auth" or not nc or not cnonce
                or params.get("algorithm", "MD5").upper() != "MD5" or params.get("opaque") != self._opaque):
            return False, False
        ha2 = _md5(f"{method}:{uri}")
        expected = _md5(f"{self._ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
        if not hmac.compare_digest(expected, response.lower()):
            return False, False
        with self._lock:
            issued = self._nonces.get(nonce)
            if issued is None or time.monotonic() - issued > self.nonce_lifetime_s:
                return False, True
            key = (nonce, nc, cnonce)
            if key in self._seen:
                return False, False
            self._seen[key] = None
            while len(self._seen) > self.max_seen:
                self._seen.popitem(last=False)
        return True, False


# --------------------------------------------------------------------------------------------- calls


@dataclass
class _Call:
    """One /pmsapi request, parsed (no state read)."""

    token: str | None
    fmt: str | None
    data_error: int | None  # 12 / -9 / 13 / 15 found while reading the data, else None
    action: str | None
    fields: dict[str, str]


@dataclass
class _Fault:
    count: int
    code: int | None = None
    http_status: int | None = None
    delay_s: float = 0.0
    reset: bool = False
    timeout: bool = False
    action: str | None = None


@dataclass
class _Room:
    room: str
    guest: dict[str, str | None] | None = None
    status: str = "ok"
    wakeups: list[dict[str, str | None]] = field(default_factory=list)


def _parse_query(query: str) -> dict[str, bytes]:
    """First value of each parameter, percent-decoded to bytes ('+' is a space)."""
    raw = query.encode("latin-1", errors="replace")  # http.server decodes the request line as latin-1
    out: dict[str, bytes] = {}
    for part in raw.split(b"&"):
        if not part:
            continue
        name, _, value = part.partition(b"=")
        key = unquote_to_bytes(name.replace(b"+", b" ")).decode("utf-8", errors="replace")
        out.setdefault(key, unquote_to_bytes(value.replace(b"+", b" ")))
    return out


_ROOT_PARSER: Any = None


def _root_and_actions(data: str) -> tuple[str, list[str]]:
    """Root element name and its child element names (called only on data xmlcodec has vetted)."""
    global _ROOT_PARSER  # noqa: PLW0603
    from lxml import etree

    if _ROOT_PARSER is None:
        _ROOT_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                                       dtd_validation=False, remove_comments=True, remove_pis=True,
                                       encoding="utf-8")
    root = etree.fromstring(data.encode("utf-8"), _ROOT_PARSER)
    children = [str(etree.QName(child).localname) for child in root if isinstance(child.tag, str)]
    return str(etree.QName(root).localname), children


def _read_call(query: str) -> _Call:
    params = _parse_query(query)
    token = params["token"].decode("utf-8", errors="replace") if "token" in params else None
    fmt = params["format"].decode("utf-8", errors="replace") if "format" in params else None
    call = _Call(token=token, fmt=fmt, data_error=None, action=None, fields={})
    raw = params.get("data")
    if raw is None or not raw.strip():
        call.data_error = 12
        return call
    try:
        data = raw.decode("utf-8")
    except UnicodeDecodeError:
        call.data_error = 12
        return call
    repeated = False
    parsed: dict[str, object] = {}
    try:
        parsed = parse_request(data, max_bytes=65_536)
    except XmlError as exc:
        if "is repeated" not in str(exc):  # a repeated field is a shape problem, not malformed XML
            call.data_error = 12
            return call
        repeated = True
    try:
        root, actions = _root_and_actions(data)
    except Exception:  # xmlcodec accepted it, so this should not happen; treat as malformed anyway
        call.data_error = 12
        return call
    if root != "pms_data_request":
        call.data_error = 12
        return call
    if len(actions) != 1:
        call.data_error = -9
        return call
    call.action = actions[0]
    if call.action not in ACTIONS:
        call.data_error = 13
        return call
    value = parsed.get(call.action)
    if repeated or not isinstance(value, dict | str) or (isinstance(value, str) and value):
        call.data_error = 15  # a repeated field, a list, or text where fields were expected
        if isinstance(value, dict):
            call.fields = {k: v for k, v in value.items() if isinstance(v, str)}
        return call
    fields = value if isinstance(value, dict) else {}
    call.fields = {k: v for k, v in fields.items() if isinstance(v, str)}
    if len(call.fields) != len(fields):
        call.data_error = 15  # a field with child elements
    return call


# ------------------------------------------------------------------------------------------ simulator


class UcmSimulator:
    """A Grandstream UCM's PMS API over HTTPS, with state you can inspect and faults you can inject."""

    timeout_hang_s = 30.0
    random_delay_s = 0.2

    def __init__(self, *, api_user: str, api_password: str, pms_user: str, pms_password: str,
                 addresses: Iterable[str] | Mapping[str, str], host: str = "127.0.0.1", port: int = 0,
                 cert_dir: str | Path | None = None, token_case: str = "upper") -> None:  # noqa: S107
        if token_case not in ("upper", "lower", "any"):
            raise ValueError('token_case must be "upper", "lower" or "any"')
        self._digest = _Digest(api_user, api_password)
        token = _md5(pms_user + pms_password)
        self._token = token.upper() if token_case == "upper" else token  # noqa: S105 - a mode, not a secret
        self._token_any_case = token_case == "any"  # noqa: S105
        room_of = dict(addresses) if isinstance(addresses, Mapping) else {str(a): str(a) for a in addresses}
        self._rooms: dict[str, _Room] = {str(a): _Room(room=str(r)) for a, r in room_of.items()}
        self._host, self._port = host, port
        self._cert_dir = Path(cert_dir) if cert_dir is not None else None
        self._temp_dir: Path | None = None
        self._lock = threading.Lock()
        self._log: list[dict[str, Any]] = []
        self._faults: list[_Fault] = []
        self._random_rate = 0.0
        self._rng = random.Random()  # noqa: S311 - fault injection, not security
        self._enabled = True
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[ssl.SSLSocket] = set()
        self._url: str | None = None
        self._ca_pem: str | None = None
        self._ca_path: Path | None = None
        self._used = False

    # ---------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Generate the certificates and serve HTTPS in a daemon thread."""
        if self._used:
            raise RuntimeError("a UcmSimulator can be started once")
        self._used = True
        ca_pem, cert_pem, key_pem = _generate_tls(self._host)
        if self._cert_dir is None:
            self._temp_dir = Path(tempfile.mkdtemp(prefix="ucm-sim-"))
            cert_dir = self._temp_dir
        else:
            cert_dir = self._cert_dir
            cert_dir.mkdir(parents=True, exist_ok=True)
        ca_path = cert_dir / "ca.pem"
        ca_path.write_text(ca_pem, encoding="ascii")
        server_cls = _Server6 if ":" in self._host else _Server
        server = server_cls((self._host, self._port), _Handler, self, _server_ssl_context(cert_pem, key_pem))
        port = server.server_address[1]
        url_host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self._host, self._host)  # noqa: S104
        self._url = f"https://[{url_host}]:{port}" if ":" in url_host else f"https://{url_host}:{port}"
        self._ca_pem, self._ca_path, self._server = ca_pem, ca_path, server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"ucm-simulator-{port}", daemon=True)
        self._thread.start()
        logger.debug("UCM simulator listening on %s", self._url)

    def stop(self) -> None:
        """Stop serving, drop open connections and wake hanging faults. Idempotent, returns quickly."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                # Shut the TCP socket down underneath TLS so blocked reads in handler threads return.
                socket.socket.shutdown(conn, socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None
        logger.debug("UCM simulator stopped")

    def __enter__(self) -> UcmSimulator:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the simulator is not started")
        return self._url

    @property
    def ca_pem(self) -> str:
        if self._ca_pem is None:
            raise RuntimeError("the simulator is not started")
        return self._ca_pem

    @property
    def ca_path(self) -> Path:
        if self._ca_path is None:
            raise RuntimeError("the simulator is not started")
        return self._ca_path

    # ------------------------------------------------------------------------------- inspection

    def state(self) -> dict[str, Any]:
        """Rooms and wake-ups, a deep copy (JSON-able)."""
        with self._lock:
            rooms = {
                address: {"room": r.room, "checked_in": r.guest is not None,
                          "guest": dict(r.guest) if r.guest is not None else None, "status": r.status}
                for address, r in self._rooms.items()
            }
            wakeups = {address: [dict(w) for w in r.wakeups] for address, r in self._rooms.items()}
        return {"rooms": rooms, "wakeups": wakeups}

    def log(self) -> list[dict[str, Any]]:
        """Every call that passed Digest auth, in arrival order: {"action", "address", "fields", "code"}."""
        with self._lock:
            return copy.deepcopy(self._log)

    # --------------------------------------------------------------------------------- controls

    def fail_next(self, count: int, *, code: int | None = None, http_status: int | None = None,
                  delay_s: float = 0.0, reset: bool = False, timeout: bool = False,
                  action: str | None = None) -> None:
        """Make the next ``count`` calls (of ``action`` if given) fail instead of executing.

        Exactly one of ``code`` (answer that PMS code), ``http_status`` (answer that HTTP status),
        ``reset`` (close the connection without an answer) or ``timeout`` (answer nothing until
        ``timeout_hang_s`` or stop) may be given; ``delay_s`` sleeps first. A delay alone executes the call
        after sleeping. Rules queue up: each call takes the first rule that matches it.
        """
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError("count must be an integer >= 0")
        if sum((code is not None, http_status is not None, bool(reset), bool(timeout))) > 1:
            raise ValueError("give at most one of code, http_status, reset, timeout")
        if code is not None and code not in DESCRIPTIONS:
            raise ValueError(f"code must be one of the guide's codes {sorted(DESCRIPTIONS)}")
        if http_status is not None and not (200 <= http_status <= 599):
            raise ValueError("http_status must be 200..599")
        if isinstance(delay_s, bool) or not isinstance(delay_s, int | float) or not 0 <= delay_s <= 300:
            raise ValueError("delay_s must be a number of seconds in 0..300")
        if code is None and http_status is None and not reset and not timeout and not delay_s:
            raise ValueError("give code, http_status, delay_s, reset or timeout")
        if action is not None and action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}")
        if count == 0:
            return
        with self._lock:
            self._faults.append(_Fault(count=count, code=code, http_status=http_status, delay_s=float(delay_s),
                                       reset=bool(reset), timeout=bool(timeout), action=action))

    def set_random_faults(self, rate: float, *, seed: int | None = None) -> None:
        """Fault each call with probability ``rate``: an even mix of [22], HTTP 500, reset and a short delay."""
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

    def set_room_status(self, address: str, status: str) -> None:
        """"cleaning" makes check-in and mov-to answer [22]; "ok" clears it."""
        if status not in ROOM_STATUSES:
            raise ValueError(f"status must be one of {ROOM_STATUSES}")
        with self._lock:
            if address not in self._rooms:
                raise ValueError(f"unknown address {address!r}")
            self._rooms[address].status = status

    def set_pmsapi_enabled(self, enabled: bool) -> None:
        """False makes every call answer [21] (after Digest and token)."""
        with self._lock:
            self._enabled = bool(enabled)

    # ------------------------------------------------------------------------------- internals

    def _track(self, conn: ssl.SSLSocket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _admit(self, call: _Call) -> tuple[dict[str, Any], _Fault | None]:
        """Log the call and pick its fault, if any."""
        entry: dict[str, Any] = {"action": call.action, "address": call.fields.get("address") or None,
                                 "fields": dict(call.fields), "code": None}
        with self._lock:
            self._log.append(entry)
            for rule in self._faults:
                if rule.action is None or rule.action == call.action:
                    rule.count -= 1
                    if rule.count <= 0:
                        self._faults.remove(rule)
                    return entry, rule
            if self._random_rate and self._rng.random() < self._random_rate:
                kind = self._rng.choice(_RANDOM_FAULT_KINDS)
                if kind == "code":
                    return entry, _Fault(count=1, code=22)
                if kind == "http":
                    return entry, _Fault(count=1, http_status=500)
                if kind == "reset":
                    return entry, _Fault(count=1, reset=True)
                return entry, _Fault(count=1, delay_s=self.random_delay_s)
        return entry, None

    def _answer_code(self, entry: dict[str, Any], code: int) -> None:
        with self._lock:
            entry["code"] = code

    def _execute(self, call: _Call, entry: dict[str, Any]) -> int:
        with self._lock:
            code = self._run(call)
            entry["code"] = code
        logger.debug("UCM simulator %s %s -> %s", call.action, call.fields.get("address"), code)
        return code

    def _token_ok(self, token: str | None) -> bool:
        if not token:
            return False
        if self._token_any_case:
            return hmac.compare_digest(token.lower().encode(), self._token.lower().encode())
        return hmac.compare_digest(token.encode("utf-8", errors="replace"), self._token.encode())

    # All _run* methods are called with the lock held.

    def _run(self, call: _Call) -> int:
        if not self._token_ok(call.token):
            return 16
        if not self._enabled:
            return 21
        if (call.fmt or "").lower() != "xml":
            return 14
        if call.data_error is not None:
            return call.data_error
        f = {k: v for k, v in call.fields.items() if v != ""}
        if not f.get("address"):
            return 15
        handler = {"checkin": self._run_checkin, "checkout": self._run_checkout, "update": self._run_update,
                   "mov": self._run_mov, "wakeup": self._run_wakeup}[str(call.action)]
        return handler(f)

    def _address_error(self, address: str, room: str | None) -> int | None:
        known = self._rooms.get(address)
        if known is None:
            return 18
        if room is not None and room != known.room:
            return 17
        return None

    @staticmethod
    def _guest_input_error(f: dict[str, str]) -> int | None:
        cos = f.get("cos")
        if cos is not None and cos not in ("1", "2", "3", "4"):
            return 15
        return None

    @staticmethod
    def _name_error(f: dict[str, str]) -> int | None:
        if len(f.get("firstname", "")) > NAME_LIMIT:
            return 25
        if len(f.get("lastname", "")) > NAME_LIMIT:
            return 26
        return None

    @staticmethod
    def _language_ok(f: dict[str, str]) -> bool:
        language = f.get("language")
        return language is None or language.upper() in SUPPORTED_LANGUAGES

    def _run_checkin(self, f: dict[str, str]) -> int:
        error = (self._guest_input_error(f) or self._address_error(f["address"], f.get("room"))
                 or self._name_error(f))
        if error:
            return error
        room = self._rooms[f["address"]]
        if room.guest is not None:
            return 19
        if room.status != "ok":
            return 22
        room.guest = {name: f.get(name) for name in GUEST_FIELDS}
        if not self._language_ok(f):
            room.guest["language"] = None
            return -100
        return 0

    def _run_checkout(self, f: dict[str, str]) -> int:
        error = self._address_error(f["address"], f.get("room"))
        if error:
            return error
        room = self._rooms[f["address"]]
        if room.guest is None:
            return 20
        room.guest = None
        room.wakeups = []
        return 0

    def _run_update(self, f: dict[str, str]) -> int:
        error = (self._guest_input_error(f) or self._address_error(f["address"], f.get("room"))
                 or self._name_error(f))
        if error:
            return error
        room = self._rooms[f["address"]]
        if room.guest is None:
            return 20
        language_ok = self._language_ok(f)
        for name in GUEST_FIELDS:
            if name in f and (name != "language" or language_ok):
                room.guest[name] = f[name]
        return 0 if language_ok else -100

    def _run_mov(self, f: dict[str, str]) -> int:
        if not f.get("d_address"):
            return 15
        error = self._address_error(f["address"], f.get("room"))
        if error:
            return error
        source = self._rooms[f["address"]]
        if source.guest is None:
            return 20
        dest = self._rooms.get(f["d_address"])
        if dest is None:
            return 23
        if "d_room" in f and f["d_room"] != dest.room:
            return 17
        if dest.guest is not None:
            return 24
        if dest.status != "ok":
            return 22
        dest.guest, source.guest = source.guest, None
        dest.wakeups, source.wakeups = source.wakeups, []
        return 0

    def _run_wakeup(self, f: dict[str, str]) -> int:
        w_action, w_mode = f.get("w_action"), f.get("w_mode", "1")
        w_date, w_time = f.get("w_date"), f.get("w_time")
        if (w_action not in ("0", "1") or w_mode not in ("1", "2")
                or (w_date is not None and not _DIGITS8.fullmatch(w_date))
                or (w_time is not None and not _HHMM.fullmatch(w_time))
                or (w_action == "1" and w_time is None)):
            return 15
        error = self._address_error(f["address"], f.get("room"))
        if error:
            return error
        room = self._rooms[f["address"]]
        if room.guest is None:
            return 20
        if w_action == "1":
            new = {"w_date": w_date, "w_time": w_time, "w_mode": w_mode}
            for i, old in enumerate(room.wakeups):
                if old["w_date"] == w_date and old["w_time"] == w_time:
                    room.wakeups[i] = new
                    break
            else:
                room.wakeups.append(new)
            return 0
        room.wakeups = [w for w in room.wakeups
                        if not ((w_date is None or w["w_date"] == w_date)
                                and (w_time is None or w["w_time"] == w_time))]
        return 0


# ------------------------------------------------------------------------------------------ HTTP server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], sim: UcmSimulator,
                 context: ssl.SSLContext) -> None:
        self.sim = sim
        self.ssl_context = context
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would call socket.getfqdn (a DNS lookup that can be slow): skip it.
        TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Runs in the connection's own thread: the TLS handshake cannot block the accept loop.
        try:
            request.settimeout(_HANDSHAKE_TIMEOUT_S)
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle delay between header/body
            conn = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ValueError) as exc:
            logger.debug("UCM simulator: TLS handshake with %s failed: %s", client_address, exc)
            return
        self.sim._track(conn, add=True)
        try:
            _Handler(conn, client_address, self)
        except Exception as exc:
            logger.debug("UCM simulator: connection from %s ended: %r", client_address, exc)
        finally:
            self.sim._track(conn, add=False)
            with contextlib.suppress(OSError):
                conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("UCM simulator: error on connection from %s", client_address, exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "UCM6xxx-simulator"
    sys_version = ""
    timeout = 20

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("UCM simulator %s: " + format, self.address_string(), *args)

    # ------------------------------------------------------------------------------- helpers

    def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8",
              headers: Iterable[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        body = json.dumps(value, ensure_ascii=False).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8")

    def _drop(self, *, reset: bool) -> None:
        """Close the connection without answering; with reset, as a TCP RST."""
        self.close_connection = True  # the socket is closed once the handler returns (see _Server)
        if reset:
            with contextlib.suppress(OSError):
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def _is_loopback(self) -> bool:
        try:
            ip = ipaddress.ip_address(str(self.client_address[0]).split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return ip.ipv4_mapped.is_loopback
        return ip.is_loopback

    # ------------------------------------------------------------------------------- routes

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if path == "/pmsapi":
            self._pmsapi(query)
        elif path in ("/state", "/log"):
            if not self._is_loopback():
                self._json(403, {"error": "admin endpoints answer loopback clients only"})
            else:
                sim = self.server.sim
                self._json(200, sim.state() if path == "/state" else sim.log())
        else:
            self._send(404, b"404 Not Found")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path not in ("/faults", "/reset-faults"):
            self._send(405 if path == "/pmsapi" else 404, b"Not Found" if path != "/pmsapi" else b"GET only")
            return
        if not self._is_loopback():
            self._json(403, {"error": "admin endpoints answer loopback clients only"})
            return
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_ADMIN_BODY:
            self.close_connection = True
            self._json(400, {"error": "a Content-Length of at most 65536 bytes is required"})
            return
        raw = self.rfile.read(length) if length else b""
        sim = self.server.sim
        if path == "/reset-faults":
            sim.reset_faults()
            self._json(200, {"ok": True})
            return
        try:
            args = json.loads(raw or b"{}")
            if not isinstance(args, dict):
                raise TypeError("a JSON object is required")
            unknown = set(args) - {"count", "code", "http_status", "delay_s", "reset", "timeout", "action"}
            if unknown:
                raise ValueError(f"unknown keys {sorted(unknown)}")
            sim.fail_next(args.get("count", 1), code=args.get("code"), http_status=args.get("http_status"),
                          delay_s=args.get("delay_s") or 0.0, reset=bool(args.get("reset")),
                          timeout=bool(args.get("timeout")), action=args.get("action"))
        except (ValueError, TypeError) as exc:
            self._json(400, {"error": str(exc)})
            return
        self._json(200, {"ok": True})

    def do_PUT(self) -> None:
        self._send(405, b"Method Not Allowed")

    do_DELETE = do_PATCH = do_PUT

    def _pmsapi(self, query: str) -> None:
        sim = self.server.sim
        authenticated, stale = sim._digest.check(self.headers.get("Authorization"), self.command, self.path)
        if not authenticated:
            self._send(401, b"401 Unauthorized", headers=[("WWW-Authenticate", sim._digest.challenge(stale=stale))])
            return
        call = _read_call(query)
        entry, fault = sim._admit(call)
        if fault is not None:
            logger.debug("UCM simulator: fault %s on %s", fault, call.action)
            if fault.delay_s and sim._stopping.wait(fault.delay_s):
                self._drop(reset=False)
                return
            if fault.timeout:
                sim._stopping.wait(sim.timeout_hang_s)
                self._drop(reset=False)
                return
            if fault.reset:
                self._drop(reset=True)
                return
            if fault.http_status is not None:
                try:
                    phrase = HTTPStatus(fault.http_status).phrase
                except ValueError:
                    phrase = "Error"
                self._send(fault.http_status, f"{fault.http_status} {phrase}".encode())
                return
            if fault.code is not None:
                sim._answer_code(entry, fault.code)
                self._send(200, response_text(fault.code).encode("utf-8"))
                return
        if sim._stopping.is_set():
            self._drop(reset=False)
            return
        code = sim._execute(call, entry)
        self._send(200, response_text(code).encode("utf-8"))
