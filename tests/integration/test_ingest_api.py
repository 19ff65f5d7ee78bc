"""The PMS ingest API through its Lambda handler, on moto: what the hotel PMS sees."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Deployment, load_event
from tests.helpers import DEMO_INGEST_KEY, RESORT_INGEST_KEY, answer, httppms_event, ingest_event, signed
from tests.spec_examples import records_from_pms

INGEST, HTTPPMS = "IngestFunction", "HttppmsFunction"


def dnd(room: str = "101", **extra: Any) -> dict[str, Any]:
    return {"datetime": "2026-01-01T10:00:00", "action": "DND", "room": room, "active": True, **extra}


def pending(dep: Deployment) -> list[dict[str, Any]]:
    body = answer(dep.invoke(HTTPPMS, httppms_event(signed({"action": "GET_REQUEST", "property": "demo-hotel"}))))
    return list(body.get("ACTION_LIST", []))


def test_one_record_is_accepted_with_its_sequence_number(deployment: Deployment) -> None:
    response = deployment.invoke(INGEST, ingest_event("demo-hotel", dnd()))
    assert response["statusCode"] == 202
    assert answer(response) == {"accepted": 1, "sequence": [1]}


def test_an_array_is_appended_in_order(deployment: Deployment) -> None:
    first = answer(deployment.invoke(INGEST, ingest_event("demo-hotel", [dnd("1"), dnd("2"), dnd("3")])))
    second = answer(deployment.invoke(INGEST, ingest_event("demo-hotel", [dnd("4")])))
    assert first["sequence"] == [1, 2, 3]
    assert second["sequence"] == [4]
    assert [r["room"] for r in pending(deployment)] == ["1", "2", "3", "4"]


def test_the_full_limit_of_100_records_goes_in_one_request(deployment: Deployment) -> None:
    response = deployment.invoke(INGEST, ingest_event("demo-hotel", [dnd(str(i)) for i in range(100)]))
    assert answer(response)["sequence"] == list(range(1, 101))


def test_an_array_with_one_bad_record_is_refused_whole_listing_every_problem(deployment: Deployment) -> None:
    records = [
        dnd("1"),
        {"datetime": "2026-01-01 10:00", "action": "WAKE", "room": "101", "mode": "X", "uid": "1",
         "waketime": "2035-01-02T08:00:00"},
        {"action": "BOOKING", "datetime": "2026-01-01T10:00:00", "booking_uid": "b", "status": "checkin",
         "arrival": "2026-01-01T10:00:00", "departure": "2026-01-02T10:00:00",
         "GUEST_LIST": [{"uid": "g", "surname": "Doe", "language": "english"}]},
        {"action": "TELEPORT"},
        "not an object",
    ]
    response = deployment.invoke(INGEST, ingest_event("demo-hotel", records))
    body = answer(response)

    assert response["statusCode"] == 400
    problems = {(i["index"], i["field"]) for i in body["issues"]}
    assert {(1, "datetime"), (1, "mode"), (2, "room"), (2, "GUEST_LIST[0].name"), (2, "GUEST_LIST[0].language"),
            (3, "action"), (4, "(record)")} <= problems
    assert all(i["reason"] for i in body["issues"])
    assert 0 not in {i["index"] for i in body["issues"]}
    assert pending(deployment) == []  # nothing of the refused batch was appended


def test_a_record_for_another_property_is_refused(deployment: Deployment) -> None:
    response = deployment.invoke(INGEST, ingest_event("demo-hotel", dnd(property="demo-resort")))
    assert response["statusCode"] == 400
    assert answer(response)["issues"][0]["field"] == "property"


@pytest.mark.parametrize("raw", ["", "[]", "{", "null", "[" + ",".join(['{"action":"DND"}'] * 101) + "]"])
def test_malformed_or_oversized_arrays_are_400_with_a_json_body(deployment: Deployment, raw: str) -> None:
    response = deployment.invoke(INGEST, ingest_event("demo-hotel", None, raw_body=raw))
    assert response["statusCode"] == 400
    assert answer(response)["error"]


def test_a_body_over_one_mebibyte_is_413(deployment: Deployment) -> None:
    big = [dnd(str(i), note="x" * 12_000) for i in range(90)]
    response = deployment.invoke(INGEST, ingest_event("demo-hotel", big))
    assert response["statusCode"] == 413
    assert "error" in answer(response)


def test_a_record_over_64_kib_is_named(deployment: Deployment) -> None:
    response = deployment.invoke(INGEST, ingest_event("demo-hotel", [dnd(), dnd(note="x" * 70_000)]))
    assert response["statusCode"] == 400
    assert answer(response)["issues"] == [{"index": 1, "field": "(record)", "reason": "larger than 65536 bytes"}]


def test_xml_is_not_an_ingest_format(deployment: Deployment) -> None:
    response = deployment.invoke(INGEST, ingest_event("demo-hotel", None, raw_body="<DND/>",
                                                      headers={"content-type": "application/xml"}))
    assert response["statusCode"] == 415


@pytest.mark.parametrize(
    ("pid", "key"),
    [("demo-hotel", "wrong-key-0000000000000000"), ("demo-hotel", RESORT_INGEST_KEY), ("nowhere", DEMO_INGEST_KEY),
     ("demo-hotel", "")],
)
def test_bad_keys_and_unknown_properties_get_the_same_401(deployment: Deployment, pid: str, key: str) -> None:
    response = deployment.invoke(INGEST, ingest_event(pid, dnd(), key=key))
    assert response["statusCode"] == 401
    assert answer(response) == {"error": "missing or invalid ingest API key"}


def test_every_spec_record_example_goes_through_verbatim(deployment: Deployment) -> None:
    examples = [e.body for e in records_from_pms()]
    assert {e["action"].strip() for e in examples} == {"BOOKING", "RS", "MUR", "COS", "WMSG", "WAKE", "DND",
                                                       "MSGTXT"}
    deployment.add_property({"id": "myhotel", "name": "My Hotel", "timezone": "Europe/Madrid",
                             "httppms": {"auth": "token", "token": "61e7c7371170a948eaf63fa578840025"},
                             "ingest": {"api_key": "myhotel-ingest-key-0123456789"}})
    response = deployment.invoke(INGEST, ingest_event("myhotel", examples, key="myhotel-ingest-key-0123456789"))
    assert response["statusCode"] == 202, response["body"]

    got = answer(deployment.invoke(HTTPPMS, httppms_event({"datetime": "2015-01-01T10:11:12",
                                                            "action": "GET_REQUEST", "property": "myhotel",
                                                            "usertoken": "61e7c7371170a948eaf63fa578840025"})))
    assert got["ACTION_LIST"] == examples


@pytest.mark.parametrize("name", sorted(p.stem for p in __import__("pathlib").Path(
    __file__).resolve().parents[2].joinpath("events").glob("ingest-post-*.json")))
def test_every_sample_ingest_event_is_accepted(deployment: Deployment, name: str) -> None:
    response = deployment.invoke(INGEST, load_event(name))
    assert response["statusCode"] == 202, response["body"]
    assert answer(response)["accepted"] == len(json.loads(load_event(name)["body"])) if name.endswith("batch") \
        else answer(response)["accepted"] == 1


def test_a_throttled_table_answers_503_and_appends_nothing(deployment: Deployment) -> None:
    from botocore.exceptions import ClientError

    from pms_connector import aws

    def throttle(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "TransactWriteItems")

    aws.dynamodb().meta.events.register("before-call.dynamodb.TransactWriteItems", throttle)
    response = deployment.invoke(INGEST, ingest_event("demo-hotel", dnd()))
    assert response["statusCode"] == 503
    assert answer(response)["retryable"] is True
    aws.dynamodb().meta.events.unregister("before-call.dynamodb.TransactWriteItems", throttle)
    assert pending(deployment) == []


def test_an_unknown_route_is_a_json_404(deployment: Deployment) -> None:
    from tests.helpers import http_event

    response = deployment.invoke(INGEST, http_event("GET", "/pms/demo-hotel/nothing"))
    assert response["statusCode"] == 404
    json.loads(response["body"])


def test_a_deeply_nested_body_is_a_400_not_a_crash(deployment: Deployment) -> None:
    response = deployment.invoke(INGEST, ingest_event("demo-hotel", None, raw_body="[" * 200_000 + "]" * 200_000))
    assert response["statusCode"] in (400, 413)


@pytest.mark.parametrize("value", ["-1", "abc", "²", "1e3", "101"])
def test_bad_inbound_paging_parameters_name_the_parameter(deployment: Deployment, value: str) -> None:
    from tests.helpers import http_event

    event = http_event("GET", "/pms/demo-hotel/inbound", route="/pms/{property}/inbound",
                       path_parameters={"property": "demo-hotel"}, query={"limit": value},
                       headers={"authorization": f"Bearer {DEMO_INGEST_KEY}"})
    response = deployment.invoke(INGEST, event)
    assert response["statusCode"] == 400
    assert "limit" in answer(response)["error"]
