"""The OpenAPI document: committed and up to date, valid, exactly the template's routes, and in agreement with the
handlers (its examples are accepted, its schemas accept and refuse what they do, the answers match their schemas).

The handler checks run the Lambda handlers in-process on moto, as tests/integration does.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import TypeAdapter

from pms_connector import openapi, records
from pms_connector.local.template import Template
from tests.conftest import ROOT, TEMPLATE, Deployment
from tests.helpers import RESORT_INGEST_KEY, RESORT_TOKEN, answer, http_event, httppms_event, ingest_event
from tests.spec_examples import records_from_pms, requests_to_pms

DOCUMENT = ROOT / openapi.DOCUMENT_PATH
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
INGEST, HTTPPMS = "IngestFunction", "HttppmsFunction"
# The handler checks use the token-auth property without a UCM: the spec's examples authenticate with its token
# (their 2015 MD5 tokens are long expired) and its 2015 wake-ups are relayed, not refused as past.
PID = "demo-resort"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return openapi.document()


def operation(doc: dict[str, Any], route: str) -> dict[str, Any]:
    method, path = route.split(" ", 1)
    result: dict[str, Any] = doc["paths"][path][method.lower()]
    return result


def schema_errors(doc: dict[str, Any], schema: dict[str, Any], instance: Any) -> list[str]:
    """Why ``instance`` does not match ``schema`` (whose $refs point into the document's components)."""
    validator = Draft202012Validator({**schema, "components": doc["components"]})
    return [f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message[:200]}"
            for e in validator.iter_errors(instance)]


def request_schema(doc: dict[str, Any], route: str) -> dict[str, Any]:
    result: dict[str, Any] = operation(doc, route)["requestBody"]["content"]["application/json"]["schema"]
    return result


def check_answer(doc: dict[str, Any], route: str, response: dict[str, Any]) -> None:
    """The handler's answer has a documented status and content type, and a JSON body matches its schema."""
    status = str(response["statusCode"])
    documented = operation(doc, route)["responses"]
    assert status in documented, f"{route} answered {status}, which is not documented: {response['body'][:300]}"
    content_type = response["headers"]["Content-Type"].split(";")[0].strip()
    media = documented[status]["content"]
    assert content_type in media, f"{route} {status} answered {content_type}, documented {list(media)}"
    if content_type == "application/json":
        problems = schema_errors(doc, media[content_type]["schema"], json.loads(response["body"]))
        assert not problems, f"{route} {status} answer does not match its schema: {problems}"


# --- the committed file -----------------------------------------------------------------------------------


def test_the_committed_document_is_the_one_the_code_generates() -> None:
    problems = openapi.check(DOCUMENT)
    assert not problems, "\n".join(problems)


def test_check_fails_with_a_diff_and_the_command_when_the_file_differs(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "openapi.json"
    assert openapi.main(["--write", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == DOCUMENT.read_text(encoding="utf-8")
    assert openapi.main(["--check", str(target)]) == 0

    target.write_text(target.read_text(encoding="utf-8").replace('"postEvents"', '"pushEvents"'), encoding="utf-8")

    assert openapi.main(["--check", str(target)]) == 1
    err = capsys.readouterr().err
    assert "python -m pms_connector.openapi --write docs/openapi.json" in err
    changed = [line.replace(" ", "") for line in err.splitlines()]
    assert '-"operationId":"pushEvents",' in changed
    assert '+"operationId":"postEvents",' in changed


def test_the_file_is_stable_json_with_indent_2_and_a_trailing_newline() -> None:
    text = DOCUMENT.read_text(encoding="utf-8")
    assert text.endswith("}\n")
    assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"
    assert openapi.render(openapi.document()) == openapi.render(openapi.document())


# --- a valid OpenAPI 3.1 document ---------------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    validator = pytest.importorskip("openapi_spec_validator", reason="structural checks below still run")
    assert doc["openapi"].startswith("3.1.")
    validator.validate(doc)


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def test_every_ref_resolves(doc: dict[str, Any]) -> None:
    found = set(refs(doc))
    assert found
    for ref in found:
        assert ref.startswith("#/"), ref
        node: Any = doc
        for part in ref[2:].split("/"):
            assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
            node = node[part]


def test_every_schema_is_a_valid_json_schema(doc: dict[str, Any]) -> None:
    for name, schema in doc["components"]["schemas"].items():
        try:
            Draft202012Validator.check_schema(schema)
        except Exception as exc:
            pytest.fail(f"components/schemas/{name}: {exc}")


def test_every_operation_declares_its_path_parameters_responses_and_security(doc: dict[str, Any]) -> None:
    operation_ids = []
    schemes = doc["components"]["securitySchemes"]
    for path, item in doc["paths"].items():
        in_path = set(re.findall(r"\{(\w+)\}", path))
        for method, op in item.items():
            if method not in METHODS:
                continue
            params = [*item.get("parameters", []), *op.get("parameters", [])]
            declared = {p["name"] for p in params if p["in"] == "path"}
            assert declared == in_path, f"{method} {path}: path parameters {declared} != {in_path}"
            assert all(p["required"] for p in params if p["in"] == "path")
            assert op["responses"], f"{method} {path} has no responses"
            for status, response in op["responses"].items():
                assert re.fullmatch(r"[1-5][0-9]{2}", status) and response["description"], (method, path, status)
                for media in response.get("content", {}).values():
                    assert "schema" in media
            assert op["security"] and all(set(s) <= set(schemes) for s in op["security"])
            operation_ids.append(op["operationId"])
    assert len(operation_ids) == len(set(operation_ids))


# --- exactly the template's routes ----------------------------------------------------------------------


def documented_routes(doc: dict[str, Any]) -> set[str]:
    return {f"{method.upper()} {path}" for path, item in doc["paths"].items() for method in item if method in METHODS}


def test_every_template_route_is_documented_and_nothing_else(doc: dict[str, Any]) -> None:
    template_routes = {f"{r.method} {r.path}" for r in Template(TEMPLATE).routes()}
    assert documented_routes(doc) == template_routes


def test_the_handlers_serve_exactly_the_documented_routes(doc: dict[str, Any]) -> None:
    template = Template(TEMPLATE)
    served: set[str] = set()
    for function in {r.function for r in template.routes()}:
        served |= set(sys.modules[template.load_handler(function).__module__].ROUTES)
    assert served == documented_routes(doc)


def test_every_httppms_code_of_errors_py_is_documented(doc: dict[str, Any]) -> None:
    documented = [c["const"] for c in doc["components"]["schemas"]["HttppmsCode"]["oneOf"]]
    assert documented == openapi.httppms_codes()
    assert {0, 100, 101, 102, 103, 200, 201, 202, 204, 205, 206, 207, 208} <= set(documented)


# --- examples: the spec's, valid against the document, accepted by the handlers -------------------------------


def test_the_request_examples_are_the_specs_own() -> None:
    spec_records = {e.body["action"]: e.body for e in records_from_pms()}
    spec_requests = {records.normalize_action(e.body["action"]): e.body for e in requests_to_pms()}
    assert spec_records == openapi.PMS_RECORD_EXAMPLES
    assert spec_requests == openapi.REQUEST_EXAMPLES


def examples(doc: dict[str, Any], route: str) -> dict[str, Any]:
    media = operation(doc, route)["requestBody"]["content"]["application/json"]
    return {name: example["value"] for name, example in media["examples"].items()}


def for_property(body: Any, pid: str) -> Any:
    """A record (or records) as posted for the test property."""
    if isinstance(body, list):
        return [for_property(b, pid) for b in body]
    return {**body, "property": pid}


def test_every_request_body_has_examples_valid_against_its_schema(doc: dict[str, Any]) -> None:
    for route in documented_routes(doc):
        if "requestBody" not in operation(doc, route):
            continue
        found = examples(doc, route)
        assert found, f"{route} has no example"
        for name, body in found.items():
            assert not schema_errors(doc, request_schema(doc, route), body), (route, name)


def test_every_response_example_matches_its_schema(doc: dict[str, Any]) -> None:
    for route in documented_routes(doc):
        for status, response in operation(doc, route)["responses"].items():
            for kind, media in response.get("content", {}).items():
                found = [media["example"]] if "example" in media else []
                found += [e["value"] for e in media.get("examples", {}).values()]
                for example in found:
                    assert not schema_errors(doc, media["schema"], example), (route, status, kind, example)


def test_the_ingest_examples_are_accepted_by_the_handler(deployment: Deployment, doc: dict[str, Any]) -> None:
    route = "POST /pms/{property}/events"
    assert set(examples(doc, route)) >= set(records.PMS_RECORDS)
    for name, body in examples(doc, route).items():
        response = deployment.invoke(INGEST, ingest_event(PID, for_property(body, PID), key=RESORT_INGEST_KEY))
        assert response["statusCode"] == 202, (name, response["body"])
        check_answer(doc, route, response)


@pytest.mark.parametrize("route", ["POST /httppms", "POST /httppms/{property}"])
def test_the_httppms_examples_are_accepted_by_the_handler(deployment: Deployment, doc: dict[str, Any],
                                                          route: str) -> None:
    assert set(examples(doc, route)) == set(records.INBOUND_REQUESTS)
    in_path = PID if route.endswith("{property}") else None
    for name, body in examples(doc, route).items():
        request = {**body, "property": PID, "usertoken": RESORT_TOKEN}
        response = deployment.invoke(HTTPPMS, httppms_event(request, property_in_path=in_path))
        assert (response["statusCode"], answer(response)["code"]) == (200, 0), (name, response["body"])
        check_answer(doc, route, response)


def test_the_xml_example_is_accepted_and_answered_in_xml(deployment: Deployment, doc: dict[str, Any]) -> None:
    media = operation(doc, "POST /httppms")["requestBody"]["content"]["application/xml"]
    xml = media["example"].replace("<property>myhotel</property>", f"<property>{PID}</property>")
    xml = re.sub(r"<usertoken>[^<]*</usertoken>", f"<usertoken>{RESORT_TOKEN}</usertoken>", xml)

    event = httppms_event(None, raw_body=xml, headers={"content-type": "application/xml"})
    response = deployment.invoke(HTTPPMS, event)

    assert response["statusCode"] == 200
    assert "<code>0</code>" in response["body"]
    check_answer(doc, "POST /httppms", response)


# --- the other answers match their documented schemas --------------------------------------------------------


def ingest_get(path: str, route: str, params: dict[str, str], query: dict[str, str] | None = None,
               key: str = RESORT_INGEST_KEY) -> dict[str, Any]:
    return http_event("GET", path, route=route, path_parameters=params, query=query,
                      headers={"authorization": f"Bearer {key}"})


def test_state_and_inbound_answers_match_their_schemas(deployment: Deployment, doc: dict[str, Any]) -> None:
    booking = for_property(openapi.PMS_RECORD_EXAMPLES["BOOKING"], PID)
    wake = for_property(openapi.PMS_RECORD_EXAMPLES["WAKE"], PID)
    assert deployment.invoke(INGEST, ingest_event(PID, [booking, wake], key=RESORT_INGEST_KEY))["statusCode"] == 202
    bill = {"datetime": "2015-01-01T18:00:00", "action": "BILL_REQUEST", "room": "101"}  # the stay's charges
    answers = {}
    for name, body in [*openapi.REQUEST_EXAMPLES.items(), ("bill", bill)]:
        response = deployment.invoke(HTTPPMS, httppms_event({**body, "property": PID, "usertoken": RESORT_TOKEN}))
        check_answer(doc, "POST /httppms", response)
        answers[name] = answer(response)
    assert [r["action"] for r in answers["GET_REQUEST"]["ACTION_LIST"]] == ["BOOKING", "WAKE"]
    assert answers["GET_REQUEST"]["batch"]
    assert [i["article"] for i in answers["bill"]["ITEM_LIST"]] == ["WA", "CALL"]  # the POST and the priced CALL
    assert answers["bill"]["bill_total"] == 5.0
    rooms, room, inbound = ("GET /pms/{property}/rooms", "GET /pms/{property}/rooms/{room}",
                            "GET /pms/{property}/inbound")
    calls = [
        (rooms, ingest_get(f"/pms/{PID}/rooms", "/pms/{property}/rooms", {"property": PID}), 200),
        (room, ingest_get(f"/pms/{PID}/rooms/101", "/pms/{property}/rooms/{room}",
                          {"property": PID, "room": "101"}), 200),
        (room, ingest_get(f"/pms/{PID}/rooms/999", "/pms/{property}/rooms/{room}",
                          {"property": PID, "room": "999"}), 404),
        (inbound, ingest_get(f"/pms/{PID}/inbound", "/pms/{property}/inbound", {"property": PID},
                             {"after": "0", "limit": "5"}), 200),
        (inbound, ingest_get(f"/pms/{PID}/inbound", "/pms/{property}/inbound", {"property": PID},
                             {"limit": "0"}), 400),
        (rooms, ingest_get(f"/pms/{PID}/rooms", "/pms/{property}/rooms", {"property": PID}, key="wrong"), 401),
    ]
    for route, event, status in calls:
        response = deployment.invoke(INGEST, event)
        assert response["statusCode"] == status, (route, response["body"])
        check_answer(doc, route, response)
    page = answer(deployment.invoke(INGEST, calls[3][1]))
    assert [i["action"] for i in page["items"]] == ["POST", "RS", "MUR", "DND", "BILL_REQUEST"]


def test_error_answers_match_their_schemas(deployment: Deployment, doc: dict[str, Any]) -> None:
    events = "POST /pms/{property}/events"
    dnd = for_property(openapi.PMS_RECORD_EXAMPLES["DND"], PID)
    ingest_calls = [
        (ingest_event(PID, {**dnd, "active": "maybe"}, key=RESORT_INGEST_KEY), 400),
        (ingest_event(PID, None, raw_body="{", key=RESORT_INGEST_KEY), 400),
        (ingest_event(PID, dnd, key="wrong"), 401),
        (ingest_event(PID, dnd, key=RESORT_INGEST_KEY, headers={"content-type": "text/plain"}), 415),
        (ingest_event(PID, None, raw_body=" " * 1_048_577, key=RESORT_INGEST_KEY), 413),
    ]
    for event, status in ingest_calls:
        response = deployment.invoke(INGEST, event)
        assert response["statusCode"] == status, response["body"]
        check_answer(doc, events, response)

    get_request = {**openapi.REQUEST_EXAMPLES["GET_REQUEST"], "property": PID, "usertoken": RESORT_TOKEN}
    httppms_calls = [
        (httppms_event({**get_request, "usertoken": "wrong"}), 401, 204),
        (httppms_event(get_request, property_in_path="demo-hotel"), 401, 204),
        (httppms_event({**get_request, "action": "TELEPORT"}), 200, 201),
        (httppms_event({**openapi.REQUEST_EXAMPLES["POST"], "property": PID, "usertoken": RESORT_TOKEN,
                        "amount": None}), 200, 202),
        (httppms_event(None, raw_body="not json"), 200, 200),
        (httppms_event(None, raw_body='{"a": "' + "x" * 262_144 + '"}'), 200, 206),
        (httppms_event(None, raw_body="<!DOCTYPE x><x/>", headers={"content-type": "text/xml"}), 200, None),
    ]
    for event, status, code in httppms_calls:
        response = deployment.invoke(HTTPPMS, event)
        assert response["statusCode"] == status, response["body"]
        if code is not None:
            assert answer(response)["code"] == code, response["body"]
        check_answer(doc, "POST /httppms", response)


# --- the schemas accept and refuse what the handlers accept and refuse --------------------------------------------

_DND = {"datetime": "2015-01-01T10:11:12", "action": "DND", "room": "101", "active": True}
_BOOKING = {"datetime": "2015-01-01T10:11:12", "action": "BOOKING", "booking_uid": "b1", "status": "expected",
            "arrival": "2015-01-01T10:00:00", "departure": "2015-01-02T10:00:00"}
_GUEST = {"uid": "g1", "name": "Ana", "surname": "García", "language": "es"}

INGEST_CASES: list[tuple[str, Any, bool]] = [
    ("boolean as text", {**_DND, "active": "yes"}, True),
    ("boolean as 0/1", {**_DND, "active": 0}, True),
    ("not a boolean", {**_DND, "active": "maybe"}, False),
    ("action in lower case with spaces", {**_DND, "action": " dnd "}, True),
    ("unknown action", {**_DND, "action": "TELEPORT"}, False),
    ("datetime with a space", {**_DND, "datetime": "2015-01-01 10:11:12"}, False),
    ("datetime month 13", {**_DND, "datetime": "2015-13-01T10:11:12"}, False),
    ("missing field", {k: v for k, v in _DND.items() if k != "room"}, False),
    ("extra fields are kept", {**_DND, "x-pms": {"any": 1}}, True),
    ("room too long", {**_DND, "room": "1" * 33}, False),
    ("expected booking without room", _BOOKING, True),
    ("checkin without room", {**_BOOKING, "status": "checkin"}, False),
    ("checkin with room", {**_BOOKING, "status": "checkin", "room": "101"}, True),
    ("two guests without account", {**_BOOKING, "GUEST_LIST": [_GUEST, {**_GUEST, "uid": "g2"}]}, False),
    ("two guests with account", {**_BOOKING, "account": "A1", "GUEST_LIST": [_GUEST, {**_GUEST, "uid": "g2"}]},
     True),
    ("guest with the spec's other spellings", {**_BOOKING, "GUEST_LIST": [
        {**_GUEST, "allow_contact": "true", "identity_card": "X1"}]}, True),
    ("guest language of three letters", {**_BOOKING, "GUEST_LIST": [{**_GUEST, "language": "spa"}]}, False),
    ("pax as text", {**_BOOKING, "pax": "2"}, True),
    ("pax over 99", {**_BOOKING, "pax": 100}, False),
    ("unknown status", {**_BOOKING, "status": "arrived"}, False),
    ("RS with roomstatus", {"datetime": "2015-01-01T10:11:12", "action": "RS", "room": "1", "roomstatus": "C"}, True),
    ("RS without status", {"datetime": "2015-01-01T10:11:12", "action": "RS", "room": "1"}, False),
    ("MSGTXT uid as a number", {"datetime": "2015-01-01T10:11:12", "action": "MSGTXT", "room": "1", "uid": 7,
                                "text": "hi"}, True),
    ("MSGTXT uid as a boolean", {"datetime": "2015-01-01T10:11:12", "action": "MSGTXT", "room": "1", "uid": True,
                                 "text": "hi"}, False),
    ("WAKE mode X", {"datetime": "2015-01-01T10:11:12", "action": "WAKE", "room": "1", "mode": "X", "uid": "1",
                     "waketime": "2015-01-02T08:00:00"}, False),
    ("not an object", "DND", False),
    ("null", None, False),
    ("empty array", [], False),
    ("an array of 100", [_DND] * 100, True),
    ("an array of 101", [_DND] * 101, False),
]


def test_the_ingest_schema_and_the_handler_agree(deployment: Deployment, doc: dict[str, Any]) -> None:
    schema = request_schema(doc, "POST /pms/{property}/events")
    disagreements = []
    for name, body, valid in INGEST_CASES:
        by_schema = not schema_errors(doc, schema, body)
        response = deployment.invoke(INGEST, ingest_event(PID, None, raw_body=json.dumps(body),
                                                          key=RESORT_INGEST_KEY))
        by_handler = response["statusCode"] == 202
        if (by_schema, by_handler) != (valid, valid):
            disagreements.append(f"{name}: expected {valid}, schema {by_schema}, handler {by_handler} "
                                 f"{response['body'][:200]}")
    assert not disagreements, "\n".join(disagreements)


_POST = {"datetime": "2015-01-01T10:11:12", "action": "POST", "room": "101", "post_type": "M", "article": "WA",
         "units": 1, "amount": 2.5}
_CALL = {"datetime": "2015-01-01T10:11:12", "action": "CALL", "room": "101", "call_type": "O", "number": "555",
         "duration": 12}

HTTPPMS_CASES: list[tuple[str, Any, bool]] = [
    ("POST with price instead of amount", {**{k: v for k, v in _POST.items() if k != "amount"}, "Price": "2.50"},
     True),
    ("POST with neither amount nor price", {k: v for k, v in _POST.items() if k != "amount"}, False),
    ("POST with a null amount", {**_POST, "amount": None}, False),
    ("POST units as text", {**_POST, "units": "2.5"}, True),
    ("POST units zero", {**_POST, "units": 0}, False),
    ("POST amount with 5 decimals", {**_POST, "amount": "2.12345"}, False),
    ("CALL duration as text", {**_CALL, "duration": "12"}, True),
    ("CALL negative duration", {**_CALL, "duration": -1}, False),
    ("CALL unknown call_type", {**_CALL, "call_type": "X"}, False),
    ("BILL_REQUEST with spaces", {"datetime": "2015-01-01T10:11:12", "action": " bill_request ", "room": "1"}, True),
    ("WAKE E result", {"datetime": "2015-01-01T10:11:12", "action": "WAKE", "room": "1", "mode": "E",
                       "waketime": "2015-01-02T08:00:00"}, True),
    ("RS with maid", {"datetime": "2015-01-01T10:11:12", "action": "RS", "room": "1", "status": "C", "maid": "7"},
     True),
    ("GET_REQUEST with confirm of the wrong type", {"datetime": "2015-01-01T10:11:12", "action": "GET_REQUEST",
                                                    "confirm": 5}, False),
]


def test_the_httppms_schema_and_the_handler_agree(deployment: Deployment, doc: dict[str, Any]) -> None:
    schema = request_schema(doc, "POST /httppms")
    disagreements = []
    for name, body, valid in HTTPPMS_CASES:
        request = {**body, "property": PID, "usertoken": RESORT_TOKEN}
        by_schema = not schema_errors(doc, schema, request)
        reply = answer(deployment.invoke(HTTPPMS, httppms_event(request)))
        by_handler = reply["code"] == 0
        if (by_schema, by_handler) != (valid, valid):
            disagreements.append(f"{name}: expected {valid}, schema {by_schema}, handler {reply}")
    assert not disagreements, "\n".join(disagreements)


# --- the hand-written patterns accept only what the code accepts -------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.from_regex(openapi.DATETIME_PATTERN, fullmatch=True))
def test_the_datetime_pattern_only_matches_what_the_code_parses(text: str) -> None:
    try:
        records.parse_spec_datetime(text)
    except ValueError:
        # The pattern cannot know the length of each month: only a day the month lacks may be refused.
        assert records._DATETIME_RE.fullmatch(text) and int(text[8:10]) >= 29, text


@settings(max_examples=100, deadline=None)
@given(st.from_regex(openapi.BOOL_TEXT_PATTERN, fullmatch=True))
def test_the_boolean_text_pattern_only_matches_what_pydantic_accepts(text: str) -> None:
    TypeAdapter(bool).validate_python(text)


@pytest.mark.parametrize("text", ["True", "yes", "No", "ON", "off", "t", "F", "y", "N", "1", "0"])
def test_pydantic_accepts_every_documented_boolean_word(text: str) -> None:
    assert re.fullmatch(openapi.BOOL_TEXT_PATTERN, text)
    TypeAdapter(bool).validate_python(text)

