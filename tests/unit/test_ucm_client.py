"""Unit tests for pms_connector.ucm.client: the UCM PMS API over HTTPS + Digest, answers and outcomes.

The UCM is an ``httpx.MockTransport`` speaking Digest (RFC 7616, qop=auth) as the guide's "connection"
authentication; the TLS settings are checked against a real HTTPS server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import ssl
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address
from typing import Any
from urllib.parse import unquote_to_bytes
from urllib.request import parse_http_list, parse_keqv_list

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pms_connector.config import UcmSettings
from pms_connector.ucm.client import (
    MAX_BODY_BYTES,
    UCM_CODES,
    UcmClient,
    UcmReply,
    classify,
    parse_response,
    ucm_token,
)
from pms_connector.ucm.commands import UcmCheckin, UcmCheckout, UcmCommand, UcmMov, UcmUpdate, UcmWakeup

API_USER, API_PASSWORD = "cdrapi", "cdrapi123"
REALM = "Grandstream/1.0.19.20"
GUIDE_TOKEN = "3FAF8662B93EF7B8B359C0DFD18696D3"  # MD5("admin1admin123"), the guide's figure 4

CHECKIN = UcmCheckin(address="1100", room="1100", firstname="José María", lastname="O'Brien-Ñúñez",
                     language="ES", datein="2026/01/01 14:00", dateout="2026/01/03 11:00", cos="4")
CHECKOUT = UcmCheckout(address="1100", room="1100")
ACTIONS = ["checkin", "update", "checkout", "mov", "wakeup"]
COMMANDS: dict[str, UcmCommand] = {
    "checkin": CHECKIN,
    "update": UcmUpdate(address="1100", room="1100", lastname="Doe"),
    "checkout": CHECKOUT,
    "mov": UcmMov(address="1046", room="1046", d_address="1100", d_room="1100"),
    "wakeup": UcmWakeup(address="1100", room="1100", w_action="1", w_mode="1", w_date="20260102", w_time="0630"),
}


def make_settings(**overrides: Any) -> UcmSettings:
    document: dict[str, Any] = {"base_url": "https://ucm.hotel.lan:8089", "api_user": API_USER,
                                "api_password": API_PASSWORD, "pms_user": "admin1", "pms_password": "admin123"}
    return UcmSettings.model_validate({**document, **overrides})


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


class DigestUcm:
    """A UCM behind Digest auth: checks the response hash, counts requests, answers with ``answer``."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response] | None = None,
                 password: str = API_PASSWORD) -> None:
        self.answer = answer or (lambda request: httpx.Response(200, text="[0] SUCCESS !"))
        self.password = password
        self.requests: list[httpx.Request] = []
        self.authorizations: list[str | None] = []  # as received (httpx re-sends the same Request object)
        self.nonces = (f"nonce{n}" for n in itertools.count(1))
        self.nonce = next(self.nonces)

    def rotate_nonce(self) -> None:
        self.nonce = next(self.nonces)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.authorizations.append(request.headers.get("authorization"))
        header = request.headers.get("authorization", "")
        if not header.startswith("Digest "):
            return self.challenge(stale=False)
        fields = parse_keqv_list(parse_http_list(header.removeprefix("Digest ")))
        if fields["nonce"] != self.nonce:
            return self.challenge(stale=True)
        ha1 = md5(f"{fields['username']}:{REALM}:{self.password}")
        ha2 = md5(f"GET:{fields['uri']}")
        expected = md5(f"{ha1}:{fields['nonce']}:{fields['nc']}:{fields['cnonce']}:{fields['qop']}:{ha2}")
        if (fields["username"] != API_USER or fields["uri"] != request.url.raw_path.decode()
                or fields["response"] != expected):
            return self.challenge(stale=False)
        return self.answer(request)

    def challenge(self, *, stale: bool) -> httpx.Response:
        value = f'Digest realm="{REALM}", qop="auth", nonce="{self.nonce}", opaque="5ccc", algorithm=MD5'
        return httpx.Response(401, headers={"WWW-Authenticate": value + (", stale=TRUE" if stale else "")},
                              text="401 Unauthorized")


def answering(body: str | bytes, status: int = 200) -> DigestUcm:
    content = body.encode() if isinstance(body, str) else body
    return DigestUcm(lambda request: httpx.Response(status, content=content))


def send(ucm: DigestUcm | Callable[[httpx.Request], httpx.Response], command: UcmCommand = CHECKIN,
         **settings: Any) -> UcmReply:
    with UcmClient(make_settings(**settings), transport=httpx.MockTransport(ucm)) as client:
        return client.send(command)


def query_of(request: httpx.Request) -> list[tuple[str, bytes]]:
    """The URL's query as (name, percent-decoded bytes) pairs, in order."""
    raw = request.url.query.decode("ascii")
    return [(name, unquote_to_bytes(value)) for name, value in (pair.split("=", 1) for pair in raw.split("&"))]


# --------------------------------------------------------------------------------------------- token


def test_token_is_the_guides_example() -> None:
    assert ucm_token(make_settings()) == GUIDE_TOKEN
    assert ucm_token(make_settings(token_case="lower")) == GUIDE_TOKEN.lower()


def test_token_of_non_ascii_credentials_is_md5_of_their_utf8() -> None:
    settings = make_settings(pms_user="recepción", pms_password="contraseña")
    assert ucm_token(settings) == md5("recepcióncontraseña").upper()


# ------------------------------------------------------------------------------------------ request


def test_the_request_is_a_get_of_pmsapi_with_token_format_and_the_encoded_xml() -> None:
    ucm = DigestUcm()
    assert send(ucm).outcome == "ok"
    request = ucm.requests[-1]
    assert request.method == "GET"
    assert (request.url.scheme, request.url.host, request.url.port, request.url.path) == (
        "https", "ucm.hotel.lan", 8089, "/pmsapi")
    assert query_of(request) == [("token", GUIDE_TOKEN.encode()), ("format", b"xml"), ("data", CHECKIN.to_xml())]
    raw = request.url.query
    assert raw.startswith(b"token=" + GUIDE_TOKEN.encode() + b"&format=xml&data=%3Cpms_data_request%3E%3Ccheckin%3E")
    assert b"<" not in raw and b" " not in raw and b"+" not in raw  # spaces as %20, never '+'
    assert request.url.params["data"] == CHECKIN.to_xml().decode()


@pytest.mark.parametrize("name", ["José Ñúñez", "O'Brien", "Zoë & Anaïs + Co", "王小明", "محمد عبد الله", "👩🏽‍💻"])
def test_names_reach_the_ucm_byte_exact(name: str) -> None:
    ucm = DigestUcm()
    command = UcmCheckin(address="1100", room="1100", firstname=name, lastname=name)
    send(ucm, command)
    data = dict(query_of(ucm.requests[-1]))["data"]
    assert data == command.to_xml()
    escaped = name.replace("&", "&amp;").encode("utf-8")
    assert b"<firstname>" + escaped + b"</firstname><lastname>" + escaped + b"</lastname>" in data


@pytest.mark.parametrize("action", ACTIONS)
def test_every_action_is_sent_as_its_xml(action: str) -> None:
    ucm = DigestUcm()
    assert send(ucm, COMMANDS[action]) == UcmReply(0, "SUCCESS !", "ok", 200)
    assert dict(query_of(ucm.requests[-1]))["data"] == COMMANDS[action].to_xml()


# ------------------------------------------------------------------------------------------- digest


def test_digest_nonce_is_reused_one_request_per_command_once_warm() -> None:
    ucm = DigestUcm()
    with UcmClient(make_settings(), transport=httpx.MockTransport(ucm)) as client:
        assert client.send(CHECKIN).outcome == "ok"
        assert len(ucm.requests) == 2  # challenge, then the authenticated request
        assert ucm.authorizations[0] is None
        for n in range(3):
            assert client.send(CHECKOUT).outcome == "ok"
            assert len(ucm.requests) == 3 + n  # one request each: sent with Authorization on the first try
    headers = [h for h in ucm.authorizations[1:] if h is not None]
    assert len(headers) == 4
    assert [parse_keqv_list(parse_http_list(h[7:]))["nc"] for h in headers] == [
        "00000001", "00000002", "00000003", "00000004"]


def test_a_stale_nonce_costs_one_more_request() -> None:
    ucm = DigestUcm()
    with UcmClient(make_settings(), transport=httpx.MockTransport(ucm)) as client:
        client.send(CHECKIN)
        ucm.rotate_nonce()  # the UCM forgot the nonce (reboot, expiry)
        assert client.send(CHECKOUT).outcome == "ok"
        assert len(ucm.requests) == 4
        assert client.send(CHECKOUT).outcome == "ok"
        assert len(ucm.requests) == 5


def test_a_closed_client_reopens_and_keeps_its_nonce() -> None:
    ucm = DigestUcm()
    client = UcmClient(make_settings(), transport=httpx.MockTransport(ucm))
    client.send(CHECKIN)
    client.close()
    client.close()
    assert client.send(CHECKOUT).outcome == "ok"
    assert len(ucm.requests) == 3
    client.close()


def test_wrong_api_credentials_hold_the_site_after_two_401s() -> None:
    ucm = DigestUcm(password="another-password")
    reply = send(ucm)
    assert reply == UcmReply(None, "HTTP 401", "hold", 401)
    assert len(ucm.requests) == 2  # unauthenticated, then one digest attempt: no loop


def test_a_401_without_a_digest_challenge_and_a_403_hold_the_site() -> None:
    assert send(lambda request: httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="x"'})).outcome == "hold"
    assert send(lambda request: httpx.Response(403, text="Forbidden")) == UcmReply(None, "HTTP 403", "hold", 403)


def test_a_malformed_digest_challenge_is_a_retry_not_a_crash() -> None:
    reply = send(lambda request: httpx.Response(401, headers={"WWW-Authenticate": 'Digest qop="auth"'}))
    assert (reply.code, reply.outcome) == (None, "retry")


def test_an_auth_int_only_challenge_holds_the_site() -> None:
    challenge = 'Digest realm="r", nonce="n", qop="auth-int"'
    reply = send(lambda request: httpx.Response(401, headers={"WWW-Authenticate": challenge}))
    assert (reply.code, reply.outcome) == (None, "hold")


# ---------------------------------------------------------------------------------------- outcomes

EXPECTED: dict[int, str | dict[str, str]] = {
    0: "ok",
    -100: "ok",
    19: {"checkin": "reconcile", "update": "park", "checkout": "park", "mov": "park", "wakeup": "park"},
    20: {"checkin": "park", "update": "reconcile", "checkout": "ok", "mov": "reconcile", "wakeup": "park"},
    24: "park",
    22: "retry",
    16: "hold",
    21: "hold",
    25: {"checkin": "shorten", "update": "shorten", "checkout": "park", "mov": "park", "wakeup": "park"},
    26: {"checkin": "shorten", "update": "shorten", "checkout": "park", "mov": "park", "wakeup": "park"},
    12: "park", 13: "park", 14: "park", 15: "park", 17: "park", 18: "park", 23: "park", -9: "park",
    1: "park", 99: "park", -1: "park",  # codes the guide does not list
}


def expected_outcome(code: int, action: str) -> str:
    outcome = EXPECTED[code]
    return outcome if isinstance(outcome, str) else outcome[action]


def test_every_code_of_the_guide_is_classified() -> None:
    assert set(UCM_CODES) <= set(EXPECTED)


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("code", list(EXPECTED))
def test_classify(code: int, action: str) -> None:
    assert classify(action, code) == expected_outcome(code, action)


def test_a_wake_up_cancel_on_a_room_not_checked_in_is_done() -> None:
    # Nothing to cancel on an empty room: the state is as wanted, no operator should be called for it.
    assert classify("wakeup", 20, cancel=True) == "ok"
    assert classify("wakeup", 20) == "park"  # a wake-up set on an empty room would never ring
    assert classify("wakeup", 18, cancel=True) == "park"


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("code", sorted(UCM_CODES))
def test_each_guide_answer_reaches_the_caller_classified(code: int, action: str) -> None:
    reply = send(answering(f"[{code}] {UCM_CODES[code]}"), COMMANDS[action])
    assert reply == UcmReply(code, UCM_CODES[code], expected_outcome(code, action), 200)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- answers


@pytest.mark.parametrize(("body", "code", "text"), [
    ("[0] SUCCESS !", 0, "SUCCESS !"),
    ("[0] SUCCESS !\r\n", 0, "SUCCESS !"),
    ("[0]SUCCESS!", 0, "SUCCESS!"),
    ("  [ -100 ]   Success, but language error, not set !  \n", -100, "Success, but language error, not set !"),
    ("\ufeff[19] Already checked in !", 19, "Already checked in !"),
    ("[20]\tNot checked in !", 20, "Not checked in !"),
    ("[22]", 22, ""),
    ("\n\n[24] Dest address already checked in !\nsecond line", 24, "Dest address already checked in !"),
    ("<response><code>0</code><description>SUCCESS !</description></response>", 0, "SUCCESS !"),
    ('<?xml version="1.0" encoding="UTF-8"?>\n<pms_data_response><checkin><result> 19 </result>'
     "<message>Already checked in !</message></checkin></pms_data_response>", 19, "Already checked in !"),
    ("<Response><Status>-100</Status></Response>", -100, ""),
    ('<response code="21" description="x"/>', 21, ""),
    ("<response>[16] Auth error !</response>", 16, "Auth error !"),
    ('<ns:response xmlns:ns="urn:x"><ns:code>25</ns:code></ns:response>', 25, ""),
    ('{"code": 0, "description": "SUCCESS !"}', 0, "SUCCESS !"),
    ('{"response": {"status": "22", "message": "Cleaning"}}', 22, "Cleaning"),
])
def test_answers_in_every_plausible_shape_are_read(body: str, code: int, text: str) -> None:
    assert parse_response(body) == (code, text)
    assert parse_response(body.encode("utf-8")) == (code, text)


@pytest.mark.parametrize("body", [
    "", "   \r\n", "SUCCESS", "OK", "<html><body><h1>502 Bad Gateway</h1></body></html>", "<response><code>zero</code>",
    "<response><code>0", '{"code": true}', '{"code": null}', "[" * 10_000, "{" * 10_000, "[x] SUCCESS !",
    "see note [0] below", "\x00\x01\x02", "[12345678901] too big",
])
def test_answers_without_a_code_give_none(body: str) -> None:
    assert parse_response(body) == (None, "")


def test_xml_answers_are_parsed_without_entities_or_dtds() -> None:
    xxe = ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           "<response><code>0</code><description>&x;</description></response>")
    assert parse_response(xxe) == (None, "")
    laughs = ('<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
              "<r><code>0</code><d>&b;&b;&b;</d></r>")
    assert parse_response(laughs) == (None, "")


def test_descriptions_are_short_single_line_text() -> None:
    code, text = parse_response("[0] " + "x" * 500 + "\x1b[31m")
    assert code == 0
    assert len(text) <= 120
    assert "\x1b" not in text


@pytest.mark.parametrize("body", ["SUCCESS", "", "<html>busy</html>", "\xff\xfe garbage"])
def test_an_unreadable_200_answer_is_retried(body: str) -> None:
    reply = send(answering(body.encode("latin-1")))
    assert (reply.code, reply.outcome, reply.http_status) == (None, "retry", 200)


def test_the_ucms_text_never_carries_the_guest_names() -> None:
    echo = answering("[25] First name 'JOSÉ MARÍA' or last name too long !".encode())
    reply = send(echo)
    assert reply == UcmReply(25, "First name or last name too long !", "shorten", 200)
    reply = send(answering(b"[99] rejected o'brien-\xc3\x91\xc3\xba\xc3\xb1ez"))
    assert reply == UcmReply(99, "UCM code 99", "park", 200)


def test_only_the_first_64_kib_of_an_answer_are_read() -> None:
    produced = 0

    def endless() -> Iterator[bytes]:
        nonlocal produced
        yield b"[0] SUCCESS !\n"
        for _ in range(10_000):  # 10 MiB if read to the end
            produced += 1
            yield b"x" * 1024

    reply = send(DigestUcm(lambda request: httpx.Response(200, content=endless())))
    assert (reply.code, reply.outcome) == (0, "ok")
    assert produced <= MAX_BODY_BYTES // 1024 + 1


@pytest.mark.parametrize(("status", "outcome"), [
    (500, "retry"), (502, "retry"), (503, "retry"), (504, "retry"), (408, "retry"), (429, "retry"),
    (400, "park"), (404, "park"), (405, "park"), (414, "park"),
    (301, "hold"), (302, "hold"),
])
def test_http_errors_map_to_outcomes(status: int, outcome: str) -> None:
    ucm = answering("[0] SUCCESS !", status=status)  # an HTTP error is not a success, whatever its body
    assert send(ucm) == UcmReply(None, f"HTTP {status}", outcome, status)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ network errors


@pytest.mark.parametrize("error", [
    httpx.ReadTimeout("timed out"), httpx.ConnectTimeout("timed out"), httpx.WriteTimeout("x"), httpx.PoolTimeout("x"),
])
def test_timeouts_are_retried(error: httpx.TimeoutException) -> None:
    def raising(request: httpx.Request) -> httpx.Response:
        raise error

    reply = send(raising)
    assert reply == UcmReply(None, f"timeout ({type(error).__name__})", "retry", None)


@pytest.mark.parametrize("error", [
    httpx.ConnectError("[Errno 111] Connection refused"), httpx.ReadError("[Errno 104] Connection reset by peer"),
    httpx.RemoteProtocolError("Server disconnected without sending a response."),
])
def test_connection_failures_are_retried(error: httpx.TransportError) -> None:
    def raising(request: httpx.Request) -> httpx.Response:
        raise error

    reply = send(raising)
    assert reply == UcmReply(None, f"connection failed ({type(error).__name__})", "retry", None)


def test_a_reset_after_a_warm_nonce_is_retried_and_the_next_command_goes_through() -> None:
    ucm = DigestUcm()
    failing = {"now": False}

    def flaky(request: httpx.Request) -> httpx.Response:
        if failing["now"]:
            raise httpx.ReadError("[Errno 104] Connection reset by peer")
        return ucm(request)

    with UcmClient(make_settings(), transport=httpx.MockTransport(flaky)) as client:
        assert client.send(CHECKIN).outcome == "ok"
        failing["now"] = True
        assert client.send(CHECKOUT).outcome == "retry"
        failing["now"] = False
        assert client.send(CHECKOUT).outcome == "ok"


def test_timeouts_come_from_the_settings_capped_by_the_time_left() -> None:
    seen: list[dict[str, float]] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200, text="[0] SUCCESS !")

    with UcmClient(make_settings(connect_timeout_seconds=2, read_timeout_seconds=9),
                   transport=httpx.MockTransport(record)) as client:
        client.send(CHECKOUT)
        client.send(CHECKOUT, timeout_s=5)
        client.send(CHECKOUT, timeout_s=1.5)
        assert client.send(CHECKOUT, timeout_s=0) == UcmReply(None, "no time left to send", "retry", None, sent=False)
    assert seen == [
        {"connect": 2, "read": 9, "write": 2, "pool": 2},
        {"connect": 2, "read": 5, "write": 2, "pool": 2},
        {"connect": 1.5, "read": 1.5, "write": 1.5, "pool": 1.5},
    ]


# ------------------------------------------------------------------------------------------ logging


def test_one_log_line_per_command_without_guest_data_or_secrets(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    ucm = answering("[19] Already checked in !")
    send(ucm)
    lines = [r for r in caplog.records if r.getMessage() == "ucm command"]
    assert len(lines) == 1
    record = lines[0].__dict__
    assert (record["action"], record["code"], record["outcome"]) == ("checkin", 19, "reconcile")
    assert isinstance(record["ms"], int)
    # httpx's own request log line stays, without the query (token, guest names, XML).
    assert "HTTP Request: GET https://ucm.hotel.lan:8089/pmsapi \"HTTP/1.1 200 OK\"" in caplog.text
    logged = caplog.text + repr([r.__dict__ for r in caplog.records])
    query = ucm.requests[-1].url.query.decode()
    for secret in ("José", "María", "O'Brien", "Ñúñez", GUIDE_TOKEN, GUIDE_TOKEN.lower(), "admin123",
                   API_PASSWORD, "pms_data_request", query[:40], "%3C"):
        assert secret not in logged


def test_errors_are_logged_once_too(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    send(refused, COMMANDS["wakeup"])
    (record,) = [r for r in caplog.records if r.getMessage() == "ucm command"]
    assert (record.__dict__["action"], record.__dict__["code"], record.__dict__["outcome"]) == (
        "wakeup", None, "retry")


# -------------------------------------------------------------------------------------------- probe


def probe(ucm: DigestUcm | Callable[[httpx.Request], httpx.Response], **settings: Any) -> UcmReply:
    with UcmClient(make_settings(**settings), transport=httpx.MockTransport(ucm)) as client:
        return client.probe()


def test_probe_sends_one_authenticated_request_without_an_action() -> None:
    ucm = answering("[-9] Action error !")
    with UcmClient(make_settings(), transport=httpx.MockTransport(ucm)) as client:
        assert client.probe() == UcmReply(-9, "Action error !", "ok", 200)
        assert client.probe(timeout_s=0) == UcmReply(None, "no time left to send", "retry", None, sent=False)
    assert query_of(ucm.requests[-1]) == [("token", GUIDE_TOKEN.encode()), ("format", b"xml"),
                                          ("data", b"<pms_data_request></pms_data_request>")]
    assert ucm.requests[-1].url.path == "/pmsapi"
    assert len(ucm.requests) == 2  # the Digest challenge, then the request


@pytest.mark.parametrize(("body", "status", "expected"), [
    ("[-9] Action error !", 200, (-9, "ok")),  # past the token check: the credentials are right
    ("[14] Format error !", 200, (14, "ok")),
    ("[16] Auth error !", 200, (16, "hold")),  # PMS token refused
    ("[21] PMSAPI not enable !", 200, (21, "hold")),
    ("", 403, (None, "hold")),
    ("", 503, (None, "retry")),
    ("no code here", 200, (None, "retry")),
])
def test_probe_outcomes_say_whether_the_site_settings_work(body: str, status: int,
                                                           expected: tuple[int | None, str]) -> None:
    reply = probe(answering(body, status))
    assert (reply.code, reply.outcome) == expected


def test_probe_with_a_wrong_api_password_holds_and_logs_one_line_without_secrets(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    ucm = DigestUcm(password="another-password")

    assert probe(ucm) == UcmReply(None, "HTTP 401", "hold", 401)

    (record,) = [r for r in caplog.records if r.getMessage() == "ucm probe"]
    assert (record.__dict__["action"], record.__dict__["outcome"], record.__dict__["http_status"]) == (
        "probe", "hold", 401)
    logged = caplog.text + repr([r.__dict__ for r in caplog.records])
    for secret in (GUIDE_TOKEN, GUIDE_TOKEN.lower(), "admin123", API_PASSWORD, "pms_data_request", "%3C"):
        assert secret not in logged


# ---------------------------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def tls_pki() -> dict[str, bytes]:
    """A CA and a certificate for 127.0.0.1 it signed (as a site's own CA would)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Hotel test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(hours=1))
          .not_valid_after(now + timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ucm")])).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return {
        "ca": ca.public_bytes(pem),
        "chain": leaf.public_bytes(pem),
        "key": key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    }


@pytest.fixture(scope="module")
def https_ucm(tls_pki: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real HTTPS server on 127.0.0.1 answering the guide's success (no Digest: TLS is what is tested)."""
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(tls_pki["chain"])
    (folder / "key.pem").write_bytes(tls_pki["key"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"[0] SUCCESS !"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_tls_is_verified_by_default_and_an_untrusted_certificate_holds_the_site(https_ucm: str) -> None:
    with UcmClient(make_settings(base_url=https_ucm)) as client:
        reply = client.send(CHECKOUT)
    assert (reply.code, reply.outcome, reply.http_status) == (None, "hold", None)
    assert "certificate" in reply.text


def test_the_configured_ca_is_trusted(https_ucm: str, tls_pki: dict[str, bytes]) -> None:
    with UcmClient(make_settings(base_url=https_ucm, ca_pem=tls_pki["ca"].decode())) as client:
        assert client.send(CHECKOUT) == UcmReply(0, "SUCCESS !", "ok", 200)
        assert client.send(CHECKOUT).outcome == "ok"


def test_the_configured_ca_still_checks_the_host_name(https_ucm: str, tls_pki: dict[str, bytes]) -> None:
    wrong_host = https_ucm.replace("127.0.0.1", "localhost")  # the certificate names 127.0.0.1 only
    with UcmClient(make_settings(base_url=wrong_host, ca_pem=tls_pki["ca"].decode())) as client:
        assert client.send(CHECKOUT).outcome == "hold"


def test_verification_disabled_works_and_is_logged_once_per_client(https_ucm: str,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with UcmClient(make_settings(base_url=https_ucm, verify_tls=False)) as client:
        assert client.send(CHECKOUT).outcome == "ok"
        client.close()
        assert client.send(CHECKOUT).outcome == "ok"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [(r.getMessage(), r.__dict__["ucm"]) for r in warnings] == [
        ("TLS verification disabled by configuration", "127.0.0.1")]


def test_an_invalid_ca_pem_holds_the_site_without_a_request() -> None:
    ucm = DigestUcm()
    pem = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
    reply = send(ucm, ca_pem=pem)
    assert (reply.code, reply.outcome) == (None, "hold")
    assert ucm.requests == []


def test_one_http_client_per_ucm_client(monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[dict[str, Any]] = []
    real = httpx.Client

    def spy(**kwargs: Any) -> httpx.Client:
        created.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(httpx, "Client", spy)
    with UcmClient(make_settings(), transport=httpx.MockTransport(DigestUcm())) as client:
        for _ in range(3):
            client.send(CHECKOUT)
    assert len(created) == 1
    assert isinstance(created[0]["verify"], ssl.SSLContext)
    assert created[0]["verify"].verify_mode == ssl.CERT_REQUIRED
    assert created[0]["follow_redirects"] is False
    assert isinstance(created[0]["auth"], httpx.DigestAuth)


# ------------------------------------------------------------------------------------------ property


@given(st.text(max_size=300) | st.binary(max_size=300)
       | st.builds(lambda code, text: f"[{code}] {text}", st.integers(), st.text(max_size=50))
       | st.builds(lambda code, tag: f"<r><{tag}>{code}</{tag}></r>", st.integers(),
                   st.sampled_from(["code", "status", "result", "x"])))
def test_the_answer_parser_never_raises(body: str | bytes) -> None:
    code, text = parse_response(body)
    assert code is None or isinstance(code, int)
    assert isinstance(text, str)
    assert len(text) <= 120
    if code is None:
        assert text == ""


@given(st.integers(-(10**9) + 1, 10**9 - 1), st.sampled_from(ACTIONS))
def test_classify_is_total(code: int, action: str) -> None:
    assert classify(action, code) in ("ok", "reconcile", "retry", "hold", "park", "shorten")

