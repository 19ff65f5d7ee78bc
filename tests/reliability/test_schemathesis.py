"""Schemathesis against the OpenAPI document, every route, through the real handlers in-process.

The document is the one the code generates (``pms_connector.openapi.document()``, committed as
docs/openapi.json and served by the local runner at /openapi.json). Requests go through a small WSGI app
around the local runner's ``LocalApi``: the same route matching and API Gateway (payload 2.0) events as
``pms-connector local``, the handlers loaded unchanged from their CodeUri, on moto.

A share of the generated cases carries valid credentials so the deep paths are reached, not only the 401:
the ingest key for the ingest routes; for HTTPPMS an MD5 token signed for the property's current time
(demo-hotel) or the fixed token (demo-resort, which keeps the generated ``datetime``). XML cases send the
generated text as it is, or a generated JSON request turned into XML and signed.

Every answer must be: no 5xx; a documented status, content type, headers and schema (schemathesis' own
checks); a body naming the problem for every refusal (JSON ``error`` for ingest; HTTPPMS ``code`` and
``description``, in XML when the request was XML); the document and the handler agreeing on what is valid
(an accepted body validates against the documented request schema; schemathesis' negative data is
refused).

Quick (default run): 15 examples per operation and generation mode, derandomized. Full
(``PMS_RELIABILITY_FULL=1``, ``make reliability``): 300. Cases per operation are printed at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest

schemathesis = pytest.importorskip("schemathesis", minversion="4")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from jsonschema import Draft202012Validator, ValidationError  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import CHECKS, load_all_checks  # noqa: E402

from pms_connector.auth import md5_stamp, md5_token  # noqa: E402
from pms_connector.openapi import document  # noqa: E402
from tests.conftest import Deployment, local_stamp, session_scan  # noqa: E402
from tests.helpers import (  # noqa: E402
    DEMO_INGEST_KEY,
    DEMO_PASSWORD,
    DEMO_USER,
    RESORT_INGEST_KEY,
    RESORT_TOKEN,
    httppms_event,
    ingest_event,
)

FULL = os.environ.get("PMS_RELIABILITY_FULL", "") not in ("", "0")  # as tests/reliability/conftest.py
EXAMPLES = 300 if FULL else 15  # per operation and generation mode
DOC = document()
OPERATIONS = [(method.upper(), path) for path, item in DOC["paths"].items() for method in item
              if method != "parameters"]
XML_TYPES = ("application/xml", "text/xml")
INGEST_KEYS = {"demo-hotel": DEMO_INGEST_KEY, "demo-resort": RESORT_INGEST_KEY}
HTTPPMS_CODES = {0, *range(100, 126), *range(200, 226)}

load_all_checks()
_BUILT_IN = {check.__name__: check for check in CHECKS.get_all()}
# The document's conformance checks. negative_data_rejection expects a 4xx, which is right for the ingest API
# but not for HTTPPMS (a refused request is HTTP 200 with code 200-225): HTTPPMS gets its own check below.
CONFORMANCE = [_BUILT_IN[name] for name in ("not_a_server_error", "status_code_conformance",
                                            "content_type_conformance", "response_headers_conformance",
                                            "response_schema_conformance")]
NEGATIVE = _BUILT_IN["negative_data_rejection"]


# --- the app: HTTP in, the local runner's event translation, the handlers --------------------------------


def wsgi_app(deployment: Deployment) -> Callable[..., Iterable[bytes]]:
    """The template's routes as a WSGI app, exactly as ``pms-connector local`` serves them."""
    from pms_connector.local.runner import LocalApi

    api = LocalApi(deployment.template, containers=1)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items()
                   if key.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        # The raw request target, percent-encoding kept, as the runner's HTTP server reads it.
        path = urlsplit(environ.get("RAW_URI") or environ.get("PATH_INFO", "/")).path
        query = environ.get("QUERY_STRING")
        target = f"{path}?{query}" if query else path
        status, answer_headers, raw = api.handle(environ["REQUEST_METHOD"], target, headers, body)
        start_response(f"{status} -", list(answer_headers.items()))
        return [raw]

    return app


# --- credentials for a share of the cases ----------------------------------------------------------------


@dataclass
class Sent:
    """What one case actually sent, after credentials were put in."""

    authenticated: bool = False
    body: Any = None  # the JSON value sent (None for XML or no body)
    xml: bytes | None = None


def sign_httppms(body: dict[str, Any], pid: str) -> dict[str, Any]:
    """The body with this property's valid credentials: MD5 now for demo-hotel, the fixed token for
    demo-resort (which keeps the generated datetime, so datetimes are fuzzed behind authentication too)."""
    signed = {**body, "property": pid}
    if pid == "demo-hotel":
        signed.update(datetime=local_stamp("Europe/Madrid"), user=DEMO_USER)
        signed["usertoken"] = md5_token(DEMO_USER, md5_stamp(signed["datetime"]), DEMO_PASSWORD)
    else:
        signed["usertoken"] = RESORT_TOKEN
    return signed


def to_xml(body: dict[str, Any]) -> bytes | None:
    """A JSON request as an XML request (None when it has no XML form, e.g. a key that is no XML name)."""
    from pms_connector import xmlcodec

    try:
        return xmlcodec.dump_response(body, root="request")
    except xmlcodec.XmlError:
        return None


def authenticate(case: Any, pid: str, json_body: Any) -> Sent:
    """Put valid credentials for ``pid`` into the case; returns what will be sent."""
    if case.path.startswith("/pms/"):
        case.path_parameters = {**(case.path_parameters or {}), "property": pid}
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {INGEST_KEYS[pid]}"}
        if case.method == "POST":
            case.body = own_records(case.body, pid)
        return Sent(authenticated=True, body=case.body if case.method == "POST" else None)
    if "{property}" in case.path:
        case.path_parameters = {**(case.path_parameters or {}), "property": pid}
    if case.media_type in XML_TYPES:
        if not isinstance(json_body, dict):
            return Sent(xml=raw_text(case.body))
        xml = to_xml(sign_httppms(json_body, pid))
        return Sent(authenticated=True, xml=xml) if xml is not None else Sent(xml=raw_text(case.body))
    if isinstance(case.body, dict):
        case.body = sign_httppms(case.body, pid)
        return Sent(authenticated=True, body=case.body)
    return Sent(body=case.body)


def own_records(body: Any, pid: str) -> Any:
    """Records naming another property are refused whole: name the URL's property where one is named."""
    def fix(record: Any) -> Any:
        return {**record, "property": pid} if isinstance(record, dict) and "property" in record else record

    return [fix(r) for r in body] if isinstance(body, list) else fix(body)


def raw_text(body: Any) -> bytes:
    return body.encode("utf-8", "surrogatepass") if isinstance(body, str) else json.dumps(body).encode()


# --- what every answer must look like ----------------------------------------------------------------------


def request_validator(method: str, path: str, media_type: str = "application/json") -> Draft202012Validator | None:
    content = (DOC["paths"][path][method.lower()].get("requestBody") or {}).get("content", {})
    if media_type not in content:
        return None
    return Draft202012Validator({**content[media_type]["schema"], "components": DOC["components"]})


def clear_answer(method: str, path: str, status: int, content_type: str, raw: bytes, sent: Sent) -> int | None:
    """Check the body of one answer names what happened; returns the HTTPPMS code (None for ingest)."""
    assert status < 500, f"{method} {path}: {status} {raw[:300]!r}"
    text = raw.decode("utf-8")  # an answer is always UTF-8
    assert "Traceback" not in text and 'File "' not in text, text[:300]
    if path.startswith("/pms/"):
        assert content_type.startswith("application/json"), content_type
        body = json.loads(text)
        assert isinstance(body, dict)
        if status >= 400:
            assert isinstance(body.get("error"), str) and body["error"].strip(), text[:300]
        return None
    if sent.xml is not None:
        assert content_type.startswith("application/xml"), (content_type, text[:200])
        from lxml import etree

        doc = etree.fromstring(raw, etree.XMLParser(resolve_entities=False, no_network=True))
        assert doc.tag == "response"
        code, description = int(doc.findtext("code")), doc.findtext("description") or ""
    else:
        assert content_type.startswith("application/json"), content_type
        body = json.loads(text)
        code, description = body["code"], body["description"]
    assert code in HTTPPMS_CODES, code
    assert status == 200 or (status, code) == (401, 204), (status, code)  # a processed request is HTTP 200
    if code:
        assert description.strip(), text[:300]
    return int(code)


def schema_problems(validator: Draft202012Validator, instance: Any) -> list[ValidationError]:
    """The leaf errors of an instance; in a oneOf of requests or records, those of the branch its action picks."""
    def leaves(error: ValidationError) -> list[ValidationError]:
        if not error.context:
            return [error]
        branches: dict[Any, list[ValidationError]] = defaultdict(list)
        for sub in error.context:
            branches[sub.relative_schema_path[0]].append(sub)
        picked = [b for b in branches.values() if not any(list(e.absolute_path)[-1:] == ["action"] for e in b)]
        return [leaf for sub in (picked or list(branches.values()))[0] for leaf in leaves(sub)]

    return [leaf for error in validator.iter_errors(instance) for leaf in leaves(error)]


# Field spellings the models accept for one field (records.py AliasChoices): the first one present is validated.
SPELLINGS = [("status", "roomstatus"), ("acontact", "allow_contact"), ("idcard", "identity_card"),
             ("price", "Price"), ("amount", "Amount")]


def known_disagreement(problems: list[ValidationError], body: Any) -> str | None:
    """The name of a known disagreement all these problems belong to (each has an xfail test), or None."""
    if problems and all(p.validator == "type" and isinstance(p.instance, bool) for p in problems):
        # test_the_document_and_the_handler_agree_on_booleans_in_integer_fields
        return "boolean as integer"
    if problems and all(_second_spelling(p, body) for p in problems):
        # test_hostile_input.py::test_both_spellings_of_a_field_are_validated
        return "second spelling unvalidated"
    return None


def _second_spelling(problem: ValidationError, body: Any) -> bool:
    *where, name = list(problem.absolute_path) or [None]
    container = body
    for step in where:
        try:
            container = container[step]
        except (KeyError, IndexError, TypeError):
            return False
    pair = next((p for p in SPELLINGS if name in p), None)
    return pair is not None and isinstance(container, dict) and all(k in container for k in pair)


def document_agrees(method: str, path: str, status: int, code: int | None, sent: Sent, tally: Tally) -> str | None:
    """Whether the handler and the document agree: a body the handler accepted validates against the
    documented request schema. Returns a failure description, or None."""
    if not sent.authenticated or sent.body is None:
        return None
    accepted = status == 202 if path.startswith("/pms/") else code == 0
    validator = request_validator(method, path)
    if not accepted or validator is None:
        return None
    problems = schema_problems(validator, sent.body)
    if not problems:
        return None
    known = known_disagreement(problems, sent.body)
    if known:
        tally.cases[f"known: {known}"] += 1
        return None
    listed = "; ".join(f"at '{'/'.join(str(p) for p in e.absolute_path)}': {e.message[:160]}" for e in problems[:4])
    return f"{method} {path} accepted a body the document calls invalid: {listed}; body {repr(sent.body)[:600]}"


# --- the run --------------------------------------------------------------------------------------------


@dataclass
class Tally:
    cases: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)
    slowest: float = 0.0


@pytest.fixture(scope="module")
def tallies(request: pytest.FixtureRequest) -> Iterator[dict[str, Tally]]:
    runs: dict[str, Tally] = defaultdict(Tally)
    yield runs
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not runs:
        return
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        report(reporter, runs)


def report(reporter: Any, runs: dict[str, Tally]) -> None:
    reporter.write_line("")
    reporter.write_line(f"schemathesis ({'full' if FULL else 'quick'}: {EXAMPLES} examples per operation and mode):")
    for label, tally in runs.items():
        total = sum(v for k, v in tally.cases.items() if k in ("positive", "negative"))
        parts = ", ".join(f"{k} {v}" for k, v in sorted(tally.cases.items()))
        answers = ", ".join(f"{k} x{v}" for k, v in tally.answers.most_common(8))
        reporter.write_line(f"  {label}: {total} cases ({parts}); slowest {tally.slowest * 1000:.0f} ms; "
                            f"answers {answers}")


@pytest.fixture
def quarantined_leak_scan(deployment: Deployment) -> Iterator[None]:
    """Generated data stays out of the session's leak scan, and the real secrets stay out of the logs.

    The session scan learns every value a request carries under a guest-data or credential key and searches
    every later log line for it. Fuzzed values are arbitrary ('0000', 'BOOKING', a schema example) and
    would match ordinary log text, so while this test runs the scan's new values and lines are set aside;
    the lines logged meanwhile are searched here for every secret and guest value known before the run (the
    properties' passwords, tokens and keys among them) and then dropped.
    """
    from tests.leakscan import LeakScan

    scan = session_scan()
    if scan is None:
        yield
        return
    known, first_line = dict(scan.values), len(scan.lines)
    try:
        yield
    finally:
        fuzz_lines = scan.lines[first_line:]
        del scan.lines[first_line:]
        scan.values.clear()
        scan.values.update(known)
    leaks = LeakScan(values=dict(known), lines=fuzz_lines).leaks()
    assert not leaks, [str(leak) for leak in leaks[:5]]


def negated_locations(case: Any) -> set[str]:
    """Where schemathesis made a negative case invalid: 'body', 'header', 'path', 'query'."""
    data = case.meta.phase.data
    found = {str(m.parameter_location.value) for m in getattr(data, "mutations", ())}
    if data.parameter_location is not None:
        found.add(str(data.parameter_location.value))
    return found


@dataclass
class Fuzzer:
    """Sends generated cases of one operation and checks each answer; failures are collected, not raised, so
    one run reports every distinct problem."""

    method: str
    path: str
    app: Callable[..., Iterable[bytes]]
    tally: Tally
    failures: list[str] = field(default_factory=list)

    @property
    def is_httppms(self) -> bool:
        return not self.path.startswith("/pms/")

    def send(self, case: Any, pid: str | None, json_case: Any) -> None:
        mode = case.meta.generation.mode
        if pid:
            sent = authenticate(case, pid, getattr(json_case, "body", None))
        elif case.media_type in XML_TYPES:
            sent = Sent(xml=raw_text(case.body))
        else:
            sent = Sent(body=getattr(case, "body", None))
        started = time.monotonic()
        response = case.call(app=self.app, data=sent.xml) if sent.xml is not None else case.call(app=self.app)
        self.tally.slowest = max(self.tally.slowest, time.monotonic() - started)
        self.tally.cases[mode.value] += 1
        self.tally.cases["authenticated"] += sent.authenticated
        self.tally.cases["xml"] += sent.xml is not None

        content_type = (response.headers.get("content-type") or [""])[0]
        try:
            code = clear_answer(self.method, self.path, response.status_code, content_type, response.content, sent)
        except (AssertionError, ValueError, KeyError, TypeError) as exc:
            self.failures.append(f"{self.method} {response.request.url}: unclear answer {response.status_code} "
                                 f"{response.content[:300]!r}: {exc!r}"[:1500])
            return
        self.tally.answers[f"{response.status_code}" + (f"/{code}" if code is not None else "")] += 1

        checks = list(CONFORMANCE)
        # The ingest API refuses negative data with a 4xx. Where valid credentials were put in, a negated
        # header or path parameter may have been replaced, so the check is only asked of the other cases.
        if not self.is_httppms and not (sent.authenticated and negated_locations(case) & {"header", "path"}):
            checks.append(NEGATIVE)
        try:
            case.validate_response(response, checks=checks, transport_kwargs={"app": self.app})
        except (AssertionError, BaseExceptionGroup) as exc:  # schemathesis' failures, with a curl to reproduce
            self.failures.append(f"{self.method} {self.path}: {str(exc)[:1500]}")
        disagreement = document_agrees(self.method, self.path, response.status_code, code, sent, self.tally)
        if disagreement:
            self.failures.append(disagreement)


def seed(deployment: Deployment) -> None:
    """Some state for the read routes to find: room 101 (the document's example room) occupied, records
    queued for GET_REQUEST, a charge in the inbound log."""
    booking = {"datetime": "2026-01-01T10:00:00", "action": "BOOKING", "booking_uid": "seed-1", "status": "checkin",
               "room": "101", "arrival": "2026-01-01T10:00:00", "departure": "2036-01-02T10:00:00"}
    dnd = {"datetime": "2026-01-01T10:00:00", "action": "DND", "room": "102", "active": True}
    for pid, key in INGEST_KEYS.items():
        response = deployment.invoke("IngestFunction", ingest_event(pid, [booking, dnd], key=key))
        assert response["statusCode"] == 202, response["body"]
    charge = {"action": "POST", "room": "101", "post_type": "M", "article": "WA", "units": 1, "amount": 2.5}
    answer = deployment.invoke("HttppmsFunction", httppms_event(sign_httppms(charge, "demo-hotel")))
    assert json.loads(answer["body"])["code"] == 0, answer["body"]


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_operation_survives_schemathesis(
    deployment: Deployment, quarantined_leak_scan: None, tallies: dict[str, Tally], method: str, path: str
) -> None:
    seed(deployment)
    operation = schemathesis.openapi.from_dict(json.loads(json.dumps(DOC)))[path][method]
    fuzzer = Fuzzer(method, path, wsgi_app(deployment), tallies[f"{method} {path}"])
    media_types = [body.media_type for body in operation.body] or [None]

    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        cases = st.one_of(*[operation.as_strategy(generation_mode=mode, media_type=m) for m in media_types])
        # XML requests with credentials: a generated JSON request, signed, written as XML.
        json_cases = (operation.as_strategy(generation_mode=mode, media_type="application/json")
                      if fuzzer.is_httppms else st.none())
        # Two cases in three carry valid credentials (of one of two properties); the rest go as generated.
        credentials = st.sampled_from(["demo-hotel", "demo-resort", None])

        @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None, print_blob=False,
                  suppress_health_check=list(HealthCheck))
        @given(case=cases, pid=credentials, json_case=json_cases)
        def run(case: Any, pid: str | None, json_case: Any) -> None:
            fuzzer.send(case, pid, json_case)

        run()

    assert not fuzzer.failures, "\n\n".join(dict.fromkeys(fuzzer.failures))
    assert fuzzer.tally.cases["authenticated"], "no case carried valid credentials: only the 401 path was tested"
    assert any(not answer.startswith("401") for answer in fuzzer.tally.answers), fuzzer.tally.answers


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("POST", "/httppms", {"action": "CALL", "room": "101", "call_type": "O", "number": "600111222",
                           "duration": True}),
     ("POST", "/httppms", {"action": "CALL", "room": "101", "call_type": "O", "number": "600111222", "duration": 1,
                           "units": False}),
     ("POST", "/pms/{property}/events", {"datetime": "2026-01-01T10:00:00", "action": "BOOKING", "booking_uid": "b",
                                         "status": "expected", "arrival": "2026-01-01T10:00:00",
                                         "departure": "2026-01-02T10:00:00", "pax": True})],
    ids=["CALL duration", "CALL units", "BOOKING pax"],
)
def test_the_document_and_the_handler_agree_on_booleans_in_integer_fields(
    deployment: Deployment, method: str, path: str, body: dict[str, Any]
) -> None:
    if path == "/httppms":
        sent = sign_httppms(body, "demo-hotel")
        answer = json.loads(deployment.invoke("HttppmsFunction", httppms_event(sent))["body"])
        accepted = answer["code"] == 0
    else:
        sent = body
        accepted = deployment.invoke("IngestFunction", ingest_event("demo-hotel", body))["statusCode"] == 202
    validator = request_validator(method, path)
    assert validator is not None
    assert accepted == validator.is_valid(sent), f"handler accepted: {accepted}; document: {not accepted}"
