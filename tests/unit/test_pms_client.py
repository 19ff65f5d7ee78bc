"""Unit tests for pms_connector.pms.client: HTTPPMS signing per auth mode and the classification of answers.

The PMS is an ``httpx.MockTransport``; the real client against the real simulator is in
tests/integration/test_pms_simulator.py.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from pms_connector.pms.client import (
    MAX_RESPONSE_BYTES,
    HttppmsClient,
    PollResult,
    SendResult,
    classify_code,
)

MADRID = ZoneInfo("Europe/Madrid")
URL = "https://pms.example.test/httppms"
# The spec's MD5 example: md5("user1" + "20150101101112" + "password1").
SPEC_TOKEN = "61e7c7371170a948eaf63fa578840025"
SPEC_MOMENT = datetime(2015, 1, 1, 9, 11, 12, tzinfo=UTC)  # 10:11:12 in Madrid (CET, UTC+1)
WAKE = {"action": "WAKE", "room": "101", "mode": "E", "uid": "12345", "waketime": "2015-01-02T08:00:00"}


class FakePms:
    """A MockTransport handler answering a fixed response (or raising), keeping the requests it saw."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response]) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.answer(request)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]


def answering(status: int = 200, body: Any = None, *, raw: bytes | None = None,
              headers: dict[str, str] | None = None) -> FakePms:
    content = raw if raw is not None else json.dumps({"code": 0, "description": "OK"} if body is None
                                                     else body).encode()
    return FakePms(lambda request: httpx.Response(status, content=content, headers=headers))


def raising(exc: Exception) -> FakePms:
    def answer(request: httpx.Request) -> httpx.Response:
        raise exc
    return FakePms(answer)


def make_client(pms: FakePms, *, auth: str = "md5", clock: Callable[[], datetime] | None = None,
                **overrides: Any) -> HttppmsClient:
    kwargs: dict[str, Any] = {"auth": auth, "property_id": "myhotel", "zone": MADRID,
                              "transport": httpx.MockTransport(pms), "clock": clock or (lambda: SPEC_MOMENT)}
    if auth in ("md5", "basic"):
        kwargs.update(user="user1", password="password1")
    else:
        kwargs.update(token="12345-12345-12345-12345")
    url = overrides.pop("url", URL)
    kwargs.update(overrides)
    return HttppmsClient(url, **kwargs)


@pytest.fixture
def ok_pms() -> FakePms:
    return answering()


# ---------------------------------------------------------------------------------------------- signing


def test_md5_signature_is_the_spec_example(ok_pms: FakePms) -> None:
    assert hashlib.md5(b"user120150101101112password1").hexdigest() == SPEC_TOKEN  # the spec's own figure
    with make_client(ok_pms) as client:
        signed, headers = client.sign({"action": "GET_REQUEST"})
    assert signed == {"datetime": "2015-01-01T10:11:12", "user": "user1", "usertoken": SPEC_TOKEN,
                      "action": "GET_REQUEST", "property": "myhotel"}
    assert headers == {}


def test_md5_request_on_the_wire(ok_pms: FakePms) -> None:
    with make_client(ok_pms) as client:
        assert client.get_request().outcome == "ok"
    (request,) = ok_pms.requests
    assert request.method == "POST"
    assert str(request.url) == URL
    assert request.headers["Content-Type"].startswith("application/json")
    assert "Authorization" not in request.headers
    assert json.loads(request.content) == {"datetime": "2015-01-01T10:11:12", "user": "user1",
                                           "usertoken": SPEC_TOKEN, "action": "GET_REQUEST",
                                           "property": "myhotel"}


def test_md5_token_is_fresh_on_every_request_and_uses_local_time(ok_pms: FakePms) -> None:
    ticks = itertools.count()
    clock = lambda: datetime(2026, 7, 1, 6, 0, 0, tzinfo=UTC) + timedelta(seconds=next(ticks))  # noqa: E731
    with make_client(ok_pms, clock=clock) as client:
        client.get_request()
        client.send(WAKE)
        client.send(WAKE)  # the same record again: signed again
    bodies = ok_pms.bodies()
    assert [b["datetime"] for b in bodies] == ["2026-07-01T08:00:00", "2026-07-01T08:00:01",
                                               "2026-07-01T08:00:02"]  # CEST, UTC+2
    for body in bodies:
        stamp = body["datetime"].replace("-", "").replace("T", "").replace(":", "")
        assert body["usertoken"] == hashlib.md5(f"user1{stamp}password1".encode()).hexdigest()
    assert len({b["usertoken"] for b in bodies}) == 3


def test_record_credentials_datetime_and_property_are_replaced(ok_pms: FakePms) -> None:
    record = {**WAKE, "datetime": "2001-01-01T00:00:00", "user": "old", "usertoken": "stale", "property": "x"}
    with make_client(ok_pms) as client:
        assert client.send(record).outcome == "ok"
    (body,) = ok_pms.bodies()
    assert body == {**WAKE, "datetime": "2015-01-01T10:11:12", "user": "user1", "usertoken": SPEC_TOKEN,
                    "property": "myhotel"}
    assert record["usertoken"] == "stale"  # the caller's mapping is not changed


def test_token_mode_sends_the_agreed_token(ok_pms: FakePms) -> None:
    with make_client(ok_pms, auth="token") as client:
        client.send(WAKE)
    (request,) = ok_pms.requests
    assert "Authorization" not in request.headers
    assert json.loads(request.content) == {"datetime": "2015-01-01T10:11:12",
                                           "usertoken": "12345-12345-12345-12345", **WAKE,
                                           "property": "myhotel"}


def test_basic_mode_sends_an_authorization_header_and_no_body_credentials(ok_pms: FakePms) -> None:
    with make_client(ok_pms, auth="basic") as client:
        signed, headers = client.sign({"action": "GET_REQUEST", "user": "x", "usertoken": "y"})
        client.get_request()
    expected = "Basic " + base64.b64encode(b"user1:password1").decode()
    assert headers == {"Authorization": expected}
    assert signed == {"datetime": "2015-01-01T10:11:12", "action": "GET_REQUEST", "property": "myhotel"}
    (request,) = ok_pms.requests
    assert request.headers["Authorization"] == expected
    assert json.loads(request.content) == signed


@pytest.mark.parametrize(("overrides", "message"), [
    ({"auth": "md5", "user": "user1", "password": None}, "password"),
    ({"auth": "md5", "user": "", "password": "p"}, "user"),
    ({"auth": "basic", "user": None, "password": "p"}, "user"),
    ({"auth": "basic", "user": "a:b", "password": "p"}, "':'"),
    ({"auth": "token", "token": ""}, "token"),
    ({"auth": "token", "token": None}, "token"),
    ({"auth": "digest", "token": "t" * 8}, "auth"),
    ({"auth": "token", "token": "t" * 8, "property_id": ""}, "property_id"),
    ({"auth": "token", "token": "t" * 8, "timeout_s": 0}, "timeout_s"),
])
def test_construction_refuses_incomplete_settings(overrides: dict[str, Any], message: str) -> None:
    kwargs: dict[str, Any] = {"property_id": "myhotel", "zone": MADRID, **overrides}
    with pytest.raises(ValueError, match=message):
        HttppmsClient(URL, **kwargs)


@pytest.mark.parametrize("url", ["ftp://pms/", "pms.example.test/x", "https://user:pw@pms.example.test/"])
def test_construction_refuses_bad_urls(url: str) -> None:
    with pytest.raises(ValueError, match="url"):
        HttppmsClient(url, auth="token", token="t" * 8, property_id="h", zone=MADRID)


def test_naive_clock_is_refused(ok_pms: FakePms) -> None:
    with make_client(ok_pms, clock=lambda: datetime(2026, 1, 1)) as client, pytest.raises(ValueError, match="aware"):
        client.sign({"action": "GET_REQUEST"})


def test_send_needs_an_action(ok_pms: FakePms) -> None:
    with make_client(ok_pms) as client, pytest.raises(ValueError, match="action"):
        client.send({"room": "101"})
    assert ok_pms.requests == []


def test_repr_hides_credentials(ok_pms: FakePms) -> None:
    client = make_client(ok_pms)
    assert "password1" not in repr(client) and "user1" not in repr(client)


# ---------------------------------------------------------------------------------------- GET_REQUEST


def test_get_request_returns_the_action_list() -> None:
    records = [{"action": "WAKE", "room": "101"}, {"action": "DND", "room": "102", "active": True}]
    pms = answering(body={"code": 0, "description": "OK", "ACTION_LIST": records})
    with make_client(pms) as client:
        result = client.get_request()
    assert result == PollResult("ok", 0, "OK", 200, records=records, batch=None, skipped=0)


@pytest.mark.parametrize("body", [{"code": 0, "description": "OK"}, {"code": 0, "ACTION_LIST": []},
                                  {"code": 0, "ACTION_LIST": None}])
def test_get_request_without_data_is_an_empty_list(body: dict[str, Any]) -> None:
    with make_client(answering(body=body)) as client:
        result = client.get_request()
    assert (result.outcome, result.records, result.code) == ("ok", [], 0)


def test_get_request_carries_confirm_and_returns_the_batch() -> None:
    pms = answering(body={"code": 0, "description": "OK", "ACTION_LIST": [{"action": "RS"}], "batch": "b7-x"})
    with make_client(pms) as client:
        result = client.get_request(confirm="b6-y")
    assert (result.batch, result.records) == ("b7-x", [{"action": "RS"}])
    assert pms.bodies()[0]["confirm"] == "b6-y"
    assert pms.bodies()[0]["action"] == "GET_REQUEST"


def test_get_request_action_list_not_an_array_is_buffered() -> None:
    with make_client(answering(body={"code": 0, "ACTION_LIST": {"action": "WAKE"}})) as client:
        result = client.get_request()
    assert (result.outcome, result.records, result.http_status) == ("buffer", [], 200)
    assert "ACTION_LIST" in result.description


def test_get_request_skips_entries_that_are_not_objects() -> None:
    body = {"code": 0, "ACTION_LIST": [{"action": "MUR"}, "junk", 3, None, {"action": "RS"}]}
    with make_client(answering(body=body)) as client:
        result = client.get_request()
    assert (result.outcome, result.records, result.skipped) == ("ok", [{"action": "MUR"}, {"action": "RS"}], 3)


def test_get_request_error_codes_return_no_records() -> None:
    body = {"code": 101, "description": "busy", "ACTION_LIST": [{"action": "WAKE"}], "batch": "b1"}
    with make_client(answering(body=body)) as client:
        result = client.get_request()
    assert result == PollResult("buffer", 101, "busy", 200)


# ------------------------------------------------------------------------------------- classification


@pytest.mark.parametrize(("code", "outcome"), [
    (0, "ok"), (100, "buffer"), (101, "buffer"), (125, "buffer"), (150, "buffer"), (199, "buffer"),
    (200, "rejected"), (201, "rejected"), (225, "rejected"), (1, "rejected"), (99, "rejected"),
    (300, "rejected"), (-1, "rejected"),
])
def test_codes(code: int, outcome: str) -> None:
    assert classify_code(code) == outcome
    with make_client(answering(body={"code": code, "description": "from the PMS"})) as client:
        sent, polled = client.send(WAKE), client.get_request()
    assert sent == SendResult(outcome, code, "from the PMS", 200)  # type: ignore[arg-type]
    assert (polled.outcome, polled.code) == (outcome, code)


@pytest.mark.parametrize(("status", "outcome"), [
    (400, "buffer"), (401, "buffer"), (500, "buffer"),  # the spec's link connection control
    (502, "buffer"), (503, "buffer"), (504, "buffer"), (599, "buffer"),  # other 5xx
    (408, "buffer"), (429, "buffer"),  # transient by definition
    (301, "buffer"), (302, "buffer"), (307, "buffer"),  # redirects are not followed: the URL is to fix
    (403, "rejected"), (404, "rejected"), (405, "rejected"), (413, "rejected"), (422, "rejected"),
])
def test_http_statuses(status: int, outcome: str) -> None:
    pms = answering(status, {"code": 204, "description": "authentication failed"},
                    headers={"Location": "https://elsewhere.test/"})
    with make_client(pms) as client:
        sent, polled = client.send(WAKE), client.get_request()
    assert sent == SendResult(outcome, 204, f"HTTP {status}: authentication failed", status)  # type: ignore[arg-type]
    assert (polled.outcome, polled.http_status, polled.records) == (outcome, status, [])
    assert len(pms.requests) == 2  # no redirect followed


def test_http_error_without_a_readable_body() -> None:
    with make_client(answering(500, raw=b"<html>Internal Server Error</html>")) as client:
        assert client.send(WAKE) == SendResult("buffer", None, "HTTP 500", 500)


def test_other_2xx_statuses_are_read_like_200() -> None:
    with make_client(answering(201, {"code": 0, "description": "created"})) as client:
        assert client.send(WAKE) == SendResult("ok", 0, "created", 201)
    with make_client(answering(204, raw=b"")) as client:
        assert client.send(WAKE) == SendResult("buffer", None, "HTTP 204: empty answer", 204)


@pytest.mark.parametrize(("raw", "problem"), [
    (b"", "empty answer"),
    (b"   \n", "empty answer"),
    (b"OK", "not valid JSON"),
    (b"<response><code>0</code></response>", "not valid JSON"),
    (b'{"code": 0', "not valid JSON"),
    (b"\xff{}", "not valid UTF-8"),
    (b"\xff\xfe{}", "not valid JSON"),  # a BOM says UTF-16, as RFC 8259 lets readers detect: one CJK character
    (b'{"code": 0, "description": NaN}', "NaN is not a JSON number"),
    (b'{"code": 0, "ACTION_LIST": [{"note": "\\ud800"}]}', "lone UTF-16 surrogate"),
    (b"[1, 2]", "not a JSON object"),
    (b'"OK"', "not a JSON object"),
    (b"null", "not a JSON object"),
    (b'{"description": "OK"}', "no 'code'"),
    (b'{"code": "0", "description": "OK"}', "not an integer"),
    (b'{"code": 0.0}', "not an integer"),
    (b'{"code": true}', "not an integer"),
    (b'{"code": null}', "not an integer"),
    (b"[" * 100_000 + b"]" * 100_000, "not"),  # nesting deeper than the JSON parser goes
])
def test_unreadable_200_answers_are_buffered(raw: bytes, problem: str) -> None:
    with make_client(answering(raw=raw)) as client:
        sent, polled = client.send(WAKE), client.get_request()
    assert (sent.outcome, sent.code, sent.http_status) == ("buffer", None, 200)
    assert problem in sent.description and sent.description.startswith("HTTP 200: ")
    assert (polled.outcome, polled.records) == ("buffer", [])


def test_utf8_bom_is_accepted() -> None:
    with make_client(answering(raw=b'\xef\xbb\xbf{"code": 0, "description": "OK"}')) as client:
        assert client.send(WAKE).outcome == "ok"


def test_description_defaults_and_is_cleaned() -> None:
    with make_client(answering(body={"code": 0})) as client:
        assert client.send(WAKE).description == "OK"
    with make_client(answering(body={"code": 203})) as client:
        assert client.send(WAKE).description == "code 203"
    with make_client(answering(body={"code": 202, "description": "bad\r\nfield\x00" + "x" * 500})) as client:
        description = client.send(WAKE).description
    assert description.startswith("bad field ") and len(description) == 200


def test_answers_larger_than_the_limit_are_not_read() -> None:
    records = [{"action": "MSGTXT", "text": "x" * 1000}] * (MAX_RESPONSE_BYTES // 1000 + 10)
    big = json.dumps({"code": 0, "ACTION_LIST": records}).encode()
    assert len(big) > MAX_RESPONSE_BYTES
    with make_client(answering(raw=big)) as client:
        result = client.get_request()
    assert (result.outcome, result.records, result.http_status) == ("buffer", [], 200)
    assert f"larger than {MAX_RESPONSE_BYTES} bytes" in result.description


def test_answers_larger_than_the_limit_without_content_length_are_not_read() -> None:
    chunk = b" " * 65_536
    produced: list[int] = []

    def stream() -> Iterator[bytes]:
        for index in range(MAX_RESPONSE_BYTES // len(chunk) + 50):
            produced.append(index)
            yield chunk

    pms = FakePms(lambda request: httpx.Response(200, content=stream()))
    with make_client(pms) as client:
        result = client.send(WAKE)
    assert result.outcome == "buffer" and "larger than" in result.description
    assert len(produced) <= MAX_RESPONSE_BYTES // len(chunk) + 1  # stopped reading at the limit


def test_an_answer_just_under_the_limit_is_read() -> None:
    prefix = b'{"code": 0, "description": "OK", "pad": "'
    raw = prefix + b"x" * (MAX_RESPONSE_BYTES - len(prefix) - 2) + b'"}'
    assert len(raw) == MAX_RESPONSE_BYTES
    with make_client(answering(raw=raw)) as client:
        assert client.send(WAKE).outcome == "ok"


@pytest.mark.parametrize(("exc", "description"), [
    (httpx.ConnectError("refused"), "connection failed (ConnectError)"),
    (httpx.ReadError("reset by peer"), "connection failed (ReadError)"),
    (httpx.RemoteProtocolError("Server disconnected without sending a response."),
     "connection failed (RemoteProtocolError)"),
    (httpx.ConnectTimeout("slow"), "timeout (ConnectTimeout)"),
    (httpx.ReadTimeout("slow"), "timeout (ReadTimeout)"),
    (httpx.WriteTimeout("slow"), "timeout (WriteTimeout)"),
    (httpx.PoolTimeout("busy"), "timeout (PoolTimeout)"),
])
def test_link_errors_are_buffered(exc: Exception, description: str) -> None:
    with make_client(raising(exc)) as client:
        sent, polled = client.send(WAKE), client.get_request()
    assert sent == SendResult("buffer", None, description, None)
    assert polled == PollResult("buffer", None, description, None)


def test_a_closed_client_opens_a_new_pool(ok_pms: FakePms) -> None:
    client = make_client(ok_pms)
    assert client.send(WAKE).outcome == "ok"
    client.close()
    client.close()  # idempotent
    assert client.send(WAKE).outcome == "ok"
    client.close()
    assert len(ok_pms.requests) == 2


# ---------------------------------------------------------------------------------------------- logging


def test_logs_carry_no_credentials_or_record_contents(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    records = [{"action": "MSGTXT", "room": "101", "text": "Welcome Mr Secretname"}]
    with make_client(answering(body={"code": 0, "ACTION_LIST": records})) as client:
        client.get_request()
        client.send({**WAKE, "uid": "guest-uid-987"})
    with make_client(answering(), auth="token") as client:
        client.send(WAKE)
    with make_client(answering(), auth="basic") as client:
        client.send(WAKE)
    lines = [r.__dict__ for r in caplog.records if r.getMessage() == "httppms request"]
    assert [(line["action"], line["outcome"], line["code"], line["http_status"]) for line in lines] == [
        ("GET_REQUEST", "ok", 0, 200), ("WAKE", "ok", 0, 200), ("WAKE", "ok", 0, 200), ("WAKE", "ok", 0, 200)]
    assert lines[0]["records"] == 1 and all(isinstance(line["ms"], int) for line in lines)
    logged = caplog.text + repr([r.__dict__ for r in caplog.records])
    basic = base64.b64encode(b"user1:password1").decode()
    for secret in ("password1", SPEC_TOKEN, "12345-12345-12345-12345", basic, "Secretname", "guest-uid-987",
                   "2015-01-02T08:00:00"):
        assert secret not in logged


def test_httpx_request_log_has_no_query(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    pms = answering()
    with make_client(pms, url="https://pms.example.test/httppms?key=s3cr3t-key") as client:
        client.send(WAKE)
    assert str(pms.requests[0].url).endswith("?key=s3cr3t-key")  # the query is sent …
    assert "pms.example.test/httppms" in caplog.text
    assert "s3cr3t-key" not in caplog.text  # … but not logged
