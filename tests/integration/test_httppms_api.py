"""The HTTPPMS endpoint through its Lambda handler, on moto: what pmslink sees."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import Deployment, load_event
from tests.helpers import (
    DEMO_INGEST_KEY,
    RESORT_INGEST_KEY,
    RESORT_TOKEN,
    answer,
    basic,
    httppms_event,
    ingest_event,
    signed,
)
from tests.spec_examples import requests_to_pms

HTTPPMS, INGEST = "HttppmsFunction", "IngestFunction"


def wake(room: str, uid: str) -> dict[str, Any]:
    return {"datetime": "2026-01-01T10:00:00", "action": "WAKE", "room": room, "mode": "S", "uid": uid,
            "waketime": "2035-01-02T08:00:00"}


def ingest(dep: Deployment, records: Any, pid: str = "demo-hotel", key: str = DEMO_INGEST_KEY) -> dict[str, Any]:
    response = dep.invoke(INGEST, ingest_event(pid, records, key=key))
    assert response["statusCode"] == 202, response
    return answer(response)


def get_request(dep: Deployment, **extra: Any) -> dict[str, Any]:
    response = dep.invoke(HTTPPMS, httppms_event(signed({"action": "GET_REQUEST", "property": "demo-hotel",
                                                          **extra})))
    assert response["statusCode"] == 200, response
    return answer(response)


def resort(dep: Deployment, body: dict[str, Any]) -> dict[str, Any]:
    request = {"datetime": "2026-01-01T10:00:00", "property": "demo-resort", "usertoken": RESORT_TOKEN, **body}
    return answer(dep.invoke(HTTPPMS, httppms_event(request)))


# --- GET_REQUEST, remove delivery -----------------------------------------------------------------


def test_given_nothing_pending_when_get_request_then_ok_without_action_list(deployment: Deployment) -> None:
    assert get_request(deployment) == {"code": 0, "description": "OK"}


def test_given_ingested_records_when_get_request_then_they_arrive_in_order_once(deployment: Deployment) -> None:
    ingest(deployment, [wake("101", "a"), wake("102", "b")])
    ingest(deployment, wake("103", "c"))

    first = get_request(deployment)

    assert first["code"] == 0
    assert [r["uid"] for r in first["ACTION_LIST"]] == ["a", "b", "c"]
    assert first["ACTION_LIST"][0] == {**wake("101", "a"), "property": "demo-hotel"}
    assert get_request(deployment) == {"code": 0, "description": "OK"}


def test_given_250_records_then_get_request_returns_at_most_100_oldest_first(deployment: Deployment) -> None:
    for start in range(0, 250, 50):
        ingest(deployment, [wake("101", str(i)) for i in range(start, start + 50)])

    pages = [get_request(deployment).get("ACTION_LIST", []) for _ in range(4)]

    assert [len(p) for p in pages] == [100, 100, 50, 0]
    assert [r["uid"] for p in pages for r in p] == [str(i) for i in range(250)]


def test_records_reach_pmslink_with_the_pms_field_names(deployment: Deployment) -> None:
    rs = {"datetime": "2026-01-01T10:00:00", "action": "RS", "room": "101", "roomstatus": "C", "x-pms": 1}
    ingest(deployment, rs)
    assert get_request(deployment)["ACTION_LIST"] == [{**rs, "property": "demo-hotel"}]


def test_property_in_the_url_serves_the_same_queue(deployment: Deployment) -> None:
    ingest(deployment, wake("101", "a"))
    request = signed({"action": "GET_REQUEST"})  # no property in the body
    response = deployment.invoke(HTTPPMS, httppms_event(request, property_in_path="demo-hotel"))
    assert [r["uid"] for r in answer(response)["ACTION_LIST"]] == ["a"]


# --- GET_REQUEST, confirm delivery -----------------------------------------------------------------


def test_confirm_delivery_repeats_a_batch_until_it_is_confirmed(deployment: Deployment) -> None:
    for start in (0, 100):
        ingest(deployment, [wake("101", str(i)) for i in range(start, start + 100)][:150 - start],
               pid="demo-resort", key=RESORT_INGEST_KEY)

    first = resort(deployment, {"action": "GET_REQUEST"})
    again = resort(deployment, {"action": "GET_REQUEST"})
    assert first["batch"] == again["batch"]
    assert first["ACTION_LIST"] == again["ACTION_LIST"]
    assert len(first["ACTION_LIST"]) == 100

    second = resort(deployment, {"action": "GET_REQUEST", "confirm": first["batch"]})
    assert second["batch"] != first["batch"]
    assert [r["uid"] for r in second["ACTION_LIST"]] == [str(i) for i in range(100, 150)]

    # Confirming the same batch twice (a retried request) is harmless.
    repeat = resort(deployment, {"action": "GET_REQUEST", "confirm": first["batch"]})
    assert repeat == second

    done = resort(deployment, {"action": "GET_REQUEST", "confirm": second["batch"]})
    assert done == {"code": 0, "description": "OK"}


def test_confirming_an_unknown_batch_is_a_2xx_error_naming_the_field(deployment: Deployment) -> None:
    ingest(deployment, wake("101", "a"), pid="demo-resort", key=RESORT_INGEST_KEY)
    resort(deployment, {"action": "GET_REQUEST"})
    refused = resort(deployment, {"action": "GET_REQUEST", "confirm": "b999-000000000000"})
    assert refused["code"] == 208
    assert "confirm" in refused["description"]


# --- authentication ----------------------------------------------------------------------------------


def test_bad_credentials_and_unknown_properties_get_the_same_401(deployment: Deployment) -> None:
    bad = signed({"action": "GET_REQUEST", "property": "demo-hotel"}, password="wrong")
    unknown = signed({"action": "GET_REQUEST", "property": "no-such-hotel"})
    malformed_id = signed({"action": "GET_REQUEST", "property": "../../etc"})
    answers = [deployment.invoke(HTTPPMS, httppms_event(body)) for body in (bad, unknown, malformed_id)]
    assert {a["statusCode"] for a in answers} == {401}
    assert {a["body"] for a in answers} == {json.dumps({"code": 204, "description": "authentication failed"},
                                                       separators=(",", ":"))}


def test_one_propertys_credentials_never_reach_another_propertys_queue(deployment: Deployment) -> None:
    ingest(deployment, wake("101", "secret-of-demo-hotel"))
    # demo-resort's valid token, aimed at demo-hotel by URL and by body.
    by_url = httppms_event({"datetime": "2026-01-01T10:00:00", "action": "GET_REQUEST",
                            "usertoken": RESORT_TOKEN}, property_in_path="demo-hotel")
    by_body = httppms_event({"datetime": "2026-01-01T10:00:00", "action": "GET_REQUEST",
                             "property": "demo-hotel", "usertoken": RESORT_TOKEN})
    mixed = httppms_event({"datetime": "2026-01-01T10:00:00", "action": "GET_REQUEST",
                           "property": "demo-hotel", "usertoken": RESORT_TOKEN}, property_in_path="demo-resort")
    for event in (by_url, by_body, mixed):
        response = deployment.invoke(HTTPPMS, event)
        assert response["statusCode"] == 401
        assert "secret-of-demo-hotel" not in response["body"]
    assert get_request(deployment)["ACTION_LIST"][0]["uid"] == "secret-of-demo-hotel"


def test_an_md5_token_outside_the_window_is_refused_with_205(deployment: Deployment) -> None:
    from pms_connector.auth import md5_token

    stale = {"datetime": "2015-01-01T10:11:12", "user": "pmslink", "action": "GET_REQUEST",
             "property": "demo-hotel", "usertoken": md5_token("pmslink", "20150101101112", "demo-password")}
    body = answer(deployment.invoke(HTTPPMS, httppms_event(stale)))
    assert body["code"] == 205
    assert "datetime" in body["description"]


def test_the_specs_md5_example_verifies_end_to_end(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    from pms_connector import api

    deployment.add_property({"id": "myhotel", "name": "My Hotel", "timezone": "Europe/Madrid",
                             "httppms": {"auth": "md5", "user": "user1", "password": "password1"},
                             "ingest": {"api_key": "myhotel-ingest-key-0123456789"}})
    monkeypatch.setattr(api, "utc_now", lambda: datetime(2015, 1, 1, 9, 11, 12, tzinfo=UTC))
    spec_request = load_event("httppms-get-request")
    body = json.loads(spec_request["body"])
    body.update(property="myhotel", user="user1")  # exactly the spec's example request
    assert body["usertoken"] == "61e7c7371170a948eaf63fa578840025"
    response = deployment.invoke(HTTPPMS, httppms_event(body))
    assert response["statusCode"] == 200
    assert answer(response) == {"code": 0, "description": "OK"}


def test_basic_auth_property(deployment: Deployment) -> None:
    deployment.add_property({"id": "basic-inn", "name": "Basic Inn", "timezone": "UTC",
                             "httppms": {"auth": "basic", "user": "pmslink", "password": "b4sic-pass"},
                             "ingest": {"api_key": "basic-inn-ingest-key-0123"}})
    request = {"datetime": "2026-01-01T10:00:00", "action": "GET_REQUEST", "property": "basic-inn"}
    ok = deployment.invoke(HTTPPMS, httppms_event(request, headers={"authorization": basic("pmslink", "b4sic-pass")}))
    bad = deployment.invoke(HTTPPMS, httppms_event(request, headers={"authorization": basic("pmslink", "nope")}))
    assert (ok["statusCode"], answer(ok)["code"]) == (200, 0)
    assert bad["statusCode"] == 401


# --- requests from integrated systems ---------------------------------------------------------------


@pytest.fixture
def myhotel(deployment: Deployment) -> Deployment:
    """The spec's own property: a fixed token equal to the examples' usertoken, so examples go verbatim."""
    deployment.add_property({"id": "myhotel", "name": "My Hotel", "timezone": "Europe/Madrid",
                             "httppms": {"auth": "token", "token": "61e7c7371170a948eaf63fa578840025"},
                             "ingest": {"api_key": "myhotel-ingest-key-0123456789"}})
    return deployment


EXAMPLES = requests_to_pms()


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"{e.body['action'].strip()}-line{e.line}" for e in EXAMPLES])
def test_every_spec_request_example_is_accepted_verbatim(myhotel: Deployment, example: Any) -> None:
    tap = myhotel.subscribe_bus()
    response = myhotel.invoke(HTTPPMS, httppms_event(example.body))
    body = answer(response)
    action = example.body["action"].strip()
    assert response["statusCode"] == 200
    expected_code = 207 if action == "CHECKOUT" else 0  # the default checkout policy declines
    assert body["code"] == expected_code, body
    if action == "GET_REQUEST":
        return
    events = tap.drain()
    assert [e["detail-type"] for e in events] == [action]
    detail = events[0]["detail"]
    assert detail["property"] == "myhotel"
    assert "usertoken" not in detail["request"] and "user" not in detail["request"]
    assert {k: v for k, v in example.body.items() if k not in ("user", "usertoken")} == detail["request"]


def test_the_spec_examples_cover_every_request_action() -> None:
    actions = {e.body["action"].strip() for e in EXAMPLES}
    assert actions == {"GET_REQUEST", "POST", "RS", "MUR", "DND", "BILL_REQUEST", "CHECKOUT", "CALL", "WAKE",
                       "MSGTXT"}


def post(room: str = "101", amount: float = 2.5, **extra: Any) -> dict[str, Any]:
    return {"action": "POST", "property": "demo-hotel", "room": room, "post_type": "M", "article": "WA",
            "description": "Water", "units": 1, "amount": amount, **extra}


def test_a_retried_charge_is_answered_like_the_first_and_stored_once(deployment: Deployment) -> None:
    tap = deployment.subscribe_bus()
    request = signed(post())

    first = deployment.invoke(HTTPPMS, httppms_event(request))
    retry = deployment.invoke(HTTPPMS, httppms_event(request))

    assert answer(first) == answer(retry) == {"code": 0, "description": "OK"}
    assert len(tap.drain()) == 1
    bill = answer(deployment.invoke(HTTPPMS, httppms_event(signed({"action": "BILL_REQUEST",
                                                                     "property": "demo-hotel", "room": "101"}))))
    assert bill["bill_total"] == 2.5
    assert len(bill["ITEM_LIST"]) == 1


def test_given_the_bus_fails_then_1xx_and_the_retry_publishes_once(deployment: Deployment) -> None:
    from pms_connector import aws

    tap = deployment.subscribe_bus()
    failures = {"left": 1}

    def fail_once(**_: Any) -> None:
        if failures["left"]:
            failures["left"] -= 1
            from botocore.exceptions import EndpointConnectionError

            raise EndpointConnectionError(endpoint_url="https://events.local")

    aws.events().meta.events.register("before-call.events.PutEvents", fail_once)
    request = signed(post())

    first = answer(deployment.invoke(HTTPPMS, httppms_event(request)))
    assert first["code"] == 102
    assert tap.drain() == []

    retry = answer(deployment.invoke(HTTPPMS, httppms_event(request)))
    assert retry == {"code": 0, "description": "OK"}
    assert len(tap.drain()) == 1
    again = answer(deployment.invoke(HTTPPMS, httppms_event(request)))
    assert again == retry
    assert tap.drain() == []


def test_given_dynamodb_throttles_then_the_answer_is_retryable(deployment: Deployment) -> None:
    from botocore.exceptions import ClientError

    from pms_connector import aws

    def throttle(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
                          "Query")

    aws.dynamodb().meta.events.register("before-call.dynamodb.*", throttle)
    for request in (signed(post()), signed({"action": "GET_REQUEST", "property": "demo-hotel"})):
        body = answer(deployment.invoke(HTTPPMS, httppms_event(request)))
        assert 100 <= body["code"] <= 125, body


def test_bill_request_lists_the_charges_of_the_booking(deployment: Deployment) -> None:
    for charge in (post(amount=2.5, booking_uid="bk-1", datetime_hint=1),
                   post(amount=4.0, booking_uid="bk-1", article="MB", description="Minibar"),
                   post(amount=9.99, booking_uid="bk-other"),
                   {**post(amount=0), "amount": None, "units": 3, "price": 2.10, "booking_uid": "bk-1",
                    "article": "SN", "description": "Snacks"},
                   post(room="202", amount=50, booking_uid="bk-1")):
        request = signed({k: v for k, v in charge.items() if v is not None})
        assert answer(deployment.invoke(HTTPPMS, httppms_event(request)))["code"] == 0

    bill = answer(deployment.invoke(HTTPPMS, httppms_event(signed(
        {"action": " BILL_REQUEST ", "property": "demo-hotel", "room": "101", "booking_uid": "bk-1"}))))

    assert bill["code"] == 0
    assert [(i["description"], i["total"]) for i in bill["ITEM_LIST"]] == [
        ("Water", 2.5), ("Minibar", 4.0), ("Snacks", 6.3)]
    assert bill["bill_total"] == 12.8
    assert bill["notes"] == "Taxes included"


def test_checkout_follows_the_propertys_policy(deployment: Deployment) -> None:
    declined = answer(deployment.invoke(HTTPPMS, httppms_event(signed(
        {"action": "CHECKOUT", "property": "demo-hotel", "room": "101"}))))
    accepted = resort(deployment, {"action": "CHECKOUT", "room": "101"})
    assert declined["code"] == 207 and "reception" in declined["notes"]
    assert accepted["code"] == 0 and accepted["notes"]


@pytest.mark.parametrize(
    ("body", "code", "named"),
    [
        ({"action": "POST", "room": "101", "post_type": "M", "article": "WA", "amount": 1}, 202, "units"),
        ({"action": "POST", "room": "101", "post_type": "M", "article": "WA", "units": 1}, 202, "amount"),
        ({"action": "CALL", "room": "101", "call_type": "X", "number": "1", "duration": 1}, 202, "call_type"),
        ({"action": "WAKE", "room": "101", "mode": "S", "waketime": "tomorrow"}, 202, "waketime"),
        ({"action": "DND", "room": "101", "active": "perhaps"}, 202, "active"),
        ({"action": "RS", "room": "101"}, 202, "status"),
        ({"action": "FLY", "room": "101"}, 201, "FLY"),
        ({"room": "101"}, 202, "action"),
    ],
)
def test_invalid_requests_get_a_2xx_code_naming_the_field(
    deployment: Deployment, body: dict[str, Any], code: int, named: str
) -> None:
    response = deployment.invoke(HTTPPMS, httppms_event(signed({**body, "property": "demo-hotel"})))
    result = answer(response)
    assert response["statusCode"] == 200
    assert result["code"] == code
    assert named in result["description"]


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", '"GET_REQUEST"', "{", "\udcff"])
def test_malformed_bodies_get_code_200_not_a_stack_trace(deployment: Deployment, raw: str) -> None:
    response = deployment.invoke(HTTPPMS, httppms_event(None, raw_body=raw))
    assert response["statusCode"] in (200, 401)
    assert answer(response)["code"] in (200, 202, 204)


def test_an_oversize_body_is_refused_with_206(deployment: Deployment) -> None:
    huge = signed({"action": "MSGTXT", "property": "demo-hotel", "room": "101", "text": "x" * 300_000})
    body = answer(deployment.invoke(HTTPPMS, httppms_event(huge)))
    assert body["code"] == 206


# --- XML -----------------------------------------------------------------------------------------------


def xml_request(fields: dict[str, Any]) -> str:
    inner = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items())
    return f"<request>{inner}</request>"


def test_an_xml_request_gets_an_xml_answer(deployment: Deployment) -> None:
    ingest(deployment, [wake("101", "a"), {"datetime": "2026-01-01T10:00:00", "action": "BOOKING",
                                           "booking_uid": "b1", "status": "expected", "arrival": "2026-01-01T10:00:00",
                                           "departure": "2026-01-02T10:00:00",
                                           "GUEST_LIST": [{"uid": "g", "name": "Zoë", "surname": "Ñúñez",
                                                           "language": "es"}]}])
    event = httppms_event(None, raw_body=xml_request(signed({"action": "GET_REQUEST", "property": "demo-hotel"})),
                          headers={"content-type": "application/xml"})
    response = deployment.invoke(HTTPPMS, event)

    from lxml import etree

    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"].startswith("application/xml")
    doc = etree.fromstring(response["body"].encode())
    assert doc.tag == "response"
    assert doc.findtext("code") == "0"
    records = doc.findall("ACTION_LIST/record")
    assert [r.findtext("action") for r in records] == ["WAKE", "BOOKING"]
    assert records[1].findtext("GUEST_LIST/guest/surname") == "Ñúñez"


def test_an_xml_post_is_validated_like_json(deployment: Deployment) -> None:
    fields = signed(post())
    event = httppms_event(None, raw_body=xml_request(fields), headers={"content-type": "text/xml; charset=utf-8"})
    response = deployment.invoke(HTTPPMS, event)
    assert "<code>0</code>" in response["body"]


@pytest.mark.parametrize(
    "document",
    [
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><request><action>&x;</action></request>',
        '<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        "<request><action>&b;</action></request>",
        "<request><action>GET_REQUEST</action>",
    ],
    ids=["xxe", "entity-expansion", "unclosed"],
)
def test_hostile_xml_is_refused_in_xml(deployment: Deployment, document: str) -> None:
    response = deployment.invoke(HTTPPMS, httppms_event(None, raw_body=document,
                                                        headers={"content-type": "application/xml"}))
    assert response["statusCode"] == 200
    assert "<code>200</code>" in response["body"]
    assert "root:" not in response["body"]


# --- the inbound log, for a PMS that pulls ---------------------------------------------------------------


def test_the_inbound_log_pages_requests_without_credentials(deployment: Deployment) -> None:
    for room in ("101", "102", "103"):
        deployment.invoke(HTTPPMS, httppms_event(signed({"action": "DND", "property": "demo-hotel", "room": room,
                                                          "active": True})))
    from tests.helpers import http_event

    def page(after: int, limit: int) -> dict[str, Any]:
        event = http_event("GET", "/pms/demo-hotel/inbound", route="/pms/{property}/inbound",
                           path_parameters={"property": "demo-hotel"}, query={"after": str(after), "limit": str(limit)},
                           headers={"authorization": f"Bearer {DEMO_INGEST_KEY}"})
        response = deployment.invoke(INGEST, event)
        assert response["statusCode"] == 200
        return answer(response)

    first = page(0, 2)
    rest = page(first["next"], 2)
    assert [i["request"]["room"] for i in first["items"] + rest["items"]] == ["101", "102", "103"]
    assert all("usertoken" not in i["request"] and "user" not in i["request"] for i in first["items"])
    assert page(rest["next"], 2) == {"items": [], "next": rest["next"]}


def test_a_deeply_nested_body_is_code_200_not_a_crash(deployment: Deployment) -> None:
    response = deployment.invoke(HTTPPMS, httppms_event(None, raw_body="[" * 100_000 + "]" * 100_000))
    assert response["statusCode"] == 200
    assert answer(response)["code"] in (200, 206)


SAMPLE_EVENTS = sorted(p.stem for p in __import__("pathlib").Path(__file__).resolve().parents[2]
                       .joinpath("events").glob("httppms-*.json"))


@pytest.mark.parametrize("name", SAMPLE_EVENTS)
def test_every_sample_httppms_event_is_served_once_signed_for_now(deployment: Deployment, name: str) -> None:
    """The events/ samples carry the spec's 2015 token; re-signed for the current time they must pass."""
    import re

    from pms_connector.auth import md5_stamp, md5_token
    from tests.conftest import local_stamp

    event = load_event(name)
    stamp = local_stamp()
    token = md5_token("pmslink", md5_stamp(stamp), "demo-password")
    event["body"] = re.sub(r"2015-01-01T10:11:12", stamp, event["body"], count=1)
    event["body"] = event["body"].replace("61e7c7371170a948eaf63fa578840025", token)
    event["body"] = event["body"].replace('"b-example"', "null")  # no batch is open in a fresh queue
    response = deployment.invoke(HTTPPMS, event)
    assert response["statusCode"] == 200, response["body"]
    expected = "207" if "checkout" in name else "0"
    assert re.search(rf'"code":{expected}\b|<code>{expected}</code>', response["body"]), response["body"]


def test_guest_data_and_secrets_never_reach_the_logs(deployment: Deployment, capsys: pytest.CaptureFixture[str],
                                                      caplog: pytest.LogCaptureFixture) -> None:
    guest = {"uid": "g1", "main": True, "name": "Zacarías", "surname": "Quiñones-Oyelaran", "language": "es",
             "email": "zq@example.org", "mobile": "+34600111222", "passport": "PX9988776",
             "identity_card": "X1234567Z"}
    booking = {"datetime": "2026-01-01T10:00:00", "action": "BOOKING", "booking_uid": "bk-pii", "status": "checkin",
               "room": "101", "arrival": "2026-01-01T10:00:00", "departure": "2026-01-03T10:00:00",
               "GUEST_LIST": [guest]}
    ingest(deployment, booking)
    get_request(deployment)
    deployment.invoke(INGEST, ingest_event("demo-hotel", {**booking, "GUEST_LIST": [{**guest, "language": "xx1"}]}))
    deployment.invoke(HTTPPMS, httppms_event(signed({"action": "MSGTXT", "property": "demo-hotel", "room": "101",
                                                      "text": "Zacarías needs PX9988776"})))
    deployment.invoke(HTTPPMS, httppms_event(signed({"action": "GET_REQUEST", "property": "demo-hotel"},
                                                     password="demo-password-WRONG")))
    logged = capsys.readouterr().out + capsys.readouterr().err + caplog.text
    assert "get_request answered" in logged  # the logs were captured
    for secret in ("Zacarías", "Quiñones", "zq@example.org", "+34600111222", "PX9988776", "X1234567Z",
                   "demo-password", "demo-ingest-key-0123456789abcdef"):
        assert secret not in logged


def test_a_property_added_or_changed_in_ssm_is_live_without_redeploy(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import reset_caches

    monkeypatch.setenv("CONFIG_CACHE_SECONDS", "0")  # the cache times, shortened for the test
    monkeypatch.setenv("CONFIG_SECRET_CACHE_SECONDS", "0")
    reset_caches()
    doc = {"id": "new-inn", "name": "New Inn", "timezone": "UTC", "ingest": {"api_key": "new-inn-ingest-key-000000"},
           "httppms": {"auth": "token", "token": "first-token-1234"}}
    request = {"datetime": "2026-01-01T10:00:00", "action": "GET_REQUEST", "property": "new-inn"}

    def status(token: str) -> int:
        return int(deployment.invoke(HTTPPMS, httppms_event({**request, "usertoken": token}))["statusCode"])

    deployment.add_property(doc)
    assert status("first-token-1234") == 200

    deployment.add_property({**doc, "httppms": {"auth": "token", "token": "rotated-token-5678"}})
    assert status("first-token-1234") == 401
    assert status("rotated-token-5678") == 200


def test_a_bill_holds_only_the_current_stays_charges(deployment: Deployment) -> None:
    def stay(uid: str, arrival: str, status: str = "checkin") -> dict[str, Any]:
        return {"datetime": f"{arrival}T10:00:00", "action": "BOOKING", "booking_uid": uid, "status": status,
                "room": "301", "account": f"acc-{uid}", "arrival": f"{arrival}T14:00:00",
                "departure": f"{arrival[:8]}28T12:00:00"}

    def charge(day: str, amount: float) -> None:
        body = signed({**post(room="301", amount=amount)})
        body["datetime"] = f"{day}T20:00:00"
        from pms_connector.auth import md5_stamp, md5_token

        body["usertoken"] = md5_token("pmslink", md5_stamp(body["datetime"]), "demo-password")
        from pms_connector import api

        now = datetime.fromisoformat(body["datetime"]).replace(tzinfo=__import__("zoneinfo").ZoneInfo("Europe/Madrid"))
        api.httppms_dependencies.cache_clear()
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(api, "utc_now", lambda: now.astimezone(UTC))
            assert answer(deployment.invoke(HTTPPMS, httppms_event(body)))["code"] == 0
        api.httppms_dependencies.cache_clear()

    ingest(deployment, stay("old", "2026-03-01"))
    charge("2026-03-02", 7.0)  # the previous guest's minibar
    ingest(deployment, stay("old", "2026-03-01", status="checkout"))
    ingest(deployment, stay("new", "2026-03-05"))
    charge("2026-03-06", 2.5)
    bill = answer(deployment.invoke(HTTPPMS, httppms_event(signed({"action": "BILL_REQUEST",
                                                                     "property": "demo-hotel", "room": "301"}))))
    assert bill["bill_total"] == 2.5
    assert len(bill["ITEM_LIST"]) == 1
