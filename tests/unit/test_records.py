"""Unit tests for pms_connector.records: the HTTPPMS records and requests, checked against the spec's tables.

No AWS, no network. Examples are the spec's own JSON examples (charpmslink-httppms-equipment-basic-api.txt).
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pms_connector.records import (
    INBOUND_REQUESTS,
    PMS_RECORDS,
    normalize_action,
    validate,
    validate_pms_record,
)

# --- helpers ----------------------------------------------------------------------------------------

STAMP = "2015-01-01T10:11:12"
DROP = object()  # a change that removes the field

SPEC_GUEST: dict[str, Any] = {
    "uid": "987654",
    "main": True,
    "adult": True,
    "account": "456789",
    "title": "Mr.",
    "name": "john",
    "surname": "Doe",
    "gender": "male",
    "level": "1",
    "language": "en",
    "email": "john.doe@sample.com",
    "mobile": "12345678901234567890",
    "allow_contact": True,
    "passport": "1234567890",
    "identity_card": "1234567890",
    "cos_pbx": "1",
    "cos_tv": "A1",
    "cos_inet": "A",
}

# The JSON example of every PMS record (PMS > pmslink, returned by GET_REQUEST), as printed in the spec.
SPEC_RECORDS: dict[str, dict[str, Any]] = {
    "BOOKING": {
        "datetime": STAMP,
        "action": "BOOKING",
        "property": "myhotel",
        "booking_uid": "qwertyu-1234",
        "status": "checkin",
        "room": "101",
        "account": "123456",
        "arrival": "2015-01-01T10:00:00",
        "departure": "2015-01-06T12:00:00",
        "level": "1",
        "cos_pbx": "1",
        "cos_tv": "A1",
        "cos_inet": "A",
        "pax": 2,
        "GUEST_LIST": [SPEC_GUEST],
    },
    "RS": {"datetime": STAMP, "action": "RS", "property": "myhotel", "room": "101", "status": "C"},
    "MUR": {"datetime": STAMP, "action": "MUR", "property": "myhotel", "room": "101", "active": True},
    "COS": {
        "datetime": STAMP, "action": "COS", "property": "myhotel", "room": "101",
        "cos_pbx": "0", "cos_tv": "0", "cos_inet": "0",
    },
    "WMSG": {"datetime": STAMP, "action": "WMSG", "property": "myhotel", "room": "101", "active": True},
    "WAKE": {
        "datetime": STAMP, "action": "WAKE", "property": "myhotel", "room": "101",
        "mode": "S", "uid": "12345", "waketime": "2015-01-02T08:00:00",
    },
    "DND": {"datetime": STAMP, "action": "DND", "property": "myhotel", "room": "101", "active": True},
    "MSGTXT": {
        "datetime": STAMP, "action": "MSGTXT", "property": "myhotel", "room": "101",
        "uid": "12345", "text": "Welcome to the hotel",
    },
}

# Fields marked YES (unconditionally required) in each PMS record's table.
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "BOOKING": ("datetime", "action", "booking_uid", "status", "arrival", "departure"),
    "RS": ("datetime", "action", "room", "status"),
    "MUR": ("datetime", "action", "room", "active"),
    "COS": ("datetime", "action", "room", "cos_pbx", "cos_tv", "cos_inet"),
    "WMSG": ("datetime", "action", "room", "active"),
    "WAKE": ("datetime", "action", "room", "mode", "waketime"),
    "DND": ("datetime", "action", "room", "active"),
    "MSGTXT": ("datetime", "action", "room", "text"),
}
REQUIRED_GUEST_FIELDS = ("uid", "name", "surname", "language")
ROOM_RECORDS = ("RS", "MUR", "COS", "WMSG", "WAKE", "DND", "MSGTXT")
ACTIVE_RECORDS = ("MUR", "WMSG", "DND")

CREDENTIALS = {"user": "user1", "usertoken": "61e7c7371170a948eaf63fa578840025"}

# The JSON example of every request (pmslink > PMS), as printed in the spec.
SPEC_REQUESTS: dict[str, dict[str, Any]] = {
    "GET_REQUEST": {"datetime": STAMP, **CREDENTIALS, "action": "GET_REQUEST", "property": "myhotel"},
    "POST": {
        "datetime": STAMP, **CREDENTIALS, "action": "POST", "property": "myhotel",
        "booking_uid": "qwertyu-123456", "room": "101", "account": "12345678", "post_type": "M",
        "article": "WA", "description": "Water", "units": 1, "amount": 2.50, "tax": "23",
    },
    "RS": {
        "datetime": STAMP, **CREDENTIALS, "action": "RS", "property": "myhotel",
        "room": "101", "roomstatus": "C", "maid": "123",
    },
    "MUR": {"datetime": STAMP, **CREDENTIALS, "action": "MUR", "property": "myhotel", "room": "101", "active": True},
    "DND": {"datetime": STAMP, **CREDENTIALS, "action": "DND", "property": "myhotel", "room": "101", "active": True},
    "BILL_REQUEST": {
        "datetime": STAMP, **CREDENTIALS, "action": " BILL_REQUEST ", "property": "myhotel",
        "booking_uid": "qwertyui-123456", "room": "101", "account": "1234567",
    },
    "CHECKOUT": {
        "datetime": STAMP, **CREDENTIALS, "action": "CHECKOUT", "property": "myhotel",
        "booking_uid": "qwertyui-123456", "room": "101", "account": "1234567",
    },
    "CALL": {
        "datetime": STAMP, **CREDENTIALS, "action": "CALL", "property": "myhotel", "room": "101",
        "call_type": "O", "line": "sip-12345", "number": "5555555", "response": 3, "duration": 12, "Price": 2.50,
    },
    "WAKE": {
        "datetime": STAMP, **CREDENTIALS, "action": "WAKE", "property": "myhotel", "room": "101",
        "mode": "E", "uid": "12345", "waketime": "2015-01-02T08:00:00",
    },
    "MSGTXT": {
        "datetime": STAMP, **CREDENTIALS, "action": "MSGTXT", "property": "myhotel", "room": "101",
        "uid": 12345, "text": "I need help with my luggage",
    },
}

BAD_DATETIMES = [
    pytest.param("2015-01-01 10:11:12", id="space-separator"),
    pytest.param("2015-13-01T10:11:12", id="month-13"),
    pytest.param("2015-02-30T10:00:00", id="february-30"),
    pytest.param("20150101101112", id="md5-stamp-format"),
    pytest.param(20150101101112, id="number"),
]


def record(kind: str, /, **changes: Any) -> dict[str, Any]:
    """A deep copy of the spec's example record with fields changed (value ``DROP`` removes a field)."""
    out = copy.deepcopy(SPEC_RECORDS[kind])
    for key, value in changes.items():
        if value is DROP:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def booking_with_guest(**guest_changes: Any) -> dict[str, Any]:
    """The spec's BOOKING with its only guest changed (value ``DROP`` removes a guest field)."""
    guest = copy.deepcopy(SPEC_GUEST)
    for key, value in guest_changes.items():
        if value is DROP:
            guest.pop(key, None)
        else:
            guest[key] = value
    return record("BOOKING", GUEST_LIST=[guest])


def request(kind: str, /, **changes: Any) -> dict[str, Any]:
    """A deep copy of the spec's example request with fields changed (value ``DROP`` removes a field)."""
    out = copy.deepcopy(SPEC_REQUESTS[kind])
    for key, value in changes.items():
        if value is DROP:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def request_issues(kind: str, body: dict[str, Any]) -> list[tuple[str, str]]:
    """The (field, reason) issues of an inbound request; [] when it validates."""
    return validate(INBOUND_REQUESTS[kind], body)[1]


def issue_fields(issues: list[tuple[str, str]]) -> list[str]:
    return [field for field, _ in issues]



# --- PMS records: the spec's examples ---------------------------------------------------------------


@pytest.mark.parametrize("action", list(SPEC_RECORDS))
def test_given_spec_json_example_when_validated_then_no_issues(action: str) -> None:
    assert validate_pms_record(record(action)) == []


def test_given_pms_record_models_then_every_spec_record_type_is_known() -> None:
    assert set(PMS_RECORDS) == set(SPEC_RECORDS)


# --- PMS records: required fields -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "field"),
    [(action, field) for action, fields in REQUIRED_FIELDS.items() for field in fields],
)
def test_given_required_field_missing_when_validated_then_exactly_one_issue_names_it(action: str, field: str) -> None:
    assert validate_pms_record(record(action, **{field: DROP})) == [(field, "is required")]


@pytest.mark.parametrize("field", REQUIRED_GUEST_FIELDS)
def test_given_required_guest_field_missing_when_validated_then_issue_names_nested_path(field: str) -> None:
    assert validate_pms_record(booking_with_guest(**{field: DROP})) == [(f"GUEST_LIST[0].{field}", "is required")]


def test_given_rs_record_without_any_status_spelling_when_validated_then_issue_on_status() -> None:
    assert validate_pms_record(record("RS", status=DROP)) == [("status", "is required")]


# --- PMS records: enumerations and cross-field rules ------------------------------------------------


@pytest.mark.parametrize("status", ["expected", "cancel", "noshow", "checkin", "checkout"])
def test_given_booking_status_from_spec_when_validated_then_accepted(status: str) -> None:
    assert validate_pms_record(record("BOOKING", status=status)) == []


@pytest.mark.parametrize("status", ["checked_in", "CHECKIN", "moved", "", 1])
def test_given_booking_status_outside_spec_when_validated_then_issue_on_status(status: object) -> None:
    assert issue_fields(validate_pms_record(record("BOOKING", status=status))) == ["status"]


@pytest.mark.parametrize("mode", ["S", "C"])
def test_given_pms_wake_mode_set_or_cancel_when_validated_then_accepted(mode: str) -> None:
    assert validate_pms_record(record("WAKE", mode=mode)) == []


@pytest.mark.parametrize("mode", ["E", "F", "s", "X"])
def test_given_pms_wake_mode_outside_s_c_when_validated_then_issue_on_mode(mode: str) -> None:
    assert issue_fields(validate_pms_record(record("WAKE", mode=mode))) == ["mode"]


@pytest.mark.parametrize("status", ["checkin", "checkout"])
def test_given_in_house_booking_without_room_when_validated_then_issue_on_room(status: str) -> None:
    issues = validate_pms_record(record("BOOKING", status=status, room=DROP))
    assert issue_fields(issues) == ["room"]
    assert "required" in issues[0][1]


@pytest.mark.parametrize("status", ["expected", "cancel"])
def test_given_not_in_house_booking_without_room_when_validated_then_no_issues(status: str) -> None:
    assert validate_pms_record(record("BOOKING", status=status, room=DROP)) == []


def test_given_departure_before_arrival_when_validated_then_issue_on_departure() -> None:
    rec = record("BOOKING", arrival="2015-01-06T12:00:00", departure="2015-01-01T10:00:00")
    assert issue_fields(validate_pms_record(rec)) == ["departure"]


def test_given_departure_equal_to_arrival_when_validated_then_no_issues() -> None:
    rec = record("BOOKING", arrival="2015-01-01T10:00:00", departure="2015-01-01T10:00:00")
    assert validate_pms_record(rec) == []


def test_given_two_guests_without_booking_account_when_validated_then_issue_on_account() -> None:
    second = {**SPEC_GUEST, "uid": "987655", "main": False}
    rec = record("BOOKING", account=DROP, GUEST_LIST=[SPEC_GUEST, second])
    assert issue_fields(validate_pms_record(rec)) == ["account"]


def test_given_two_guests_with_booking_account_when_validated_then_no_issues() -> None:
    second = {**SPEC_GUEST, "uid": "987655", "main": False}
    assert validate_pms_record(record("BOOKING", GUEST_LIST=[SPEC_GUEST, second])) == []


def test_given_one_guest_without_booking_account_when_validated_then_no_issues() -> None:
    assert validate_pms_record(record("BOOKING", account=DROP)) == []


# --- PMS records: date-time format ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "field"),
    [("DND", "datetime"), ("WAKE", "waketime"), ("BOOKING", "arrival")],
)
@pytest.mark.parametrize("value", BAD_DATETIMES)
def test_given_date_time_not_in_spec_format_when_validated_then_issue_on_that_field(
    action: str, field: str, value: object
) -> None:
    assert issue_fields(validate_pms_record(record(action, **{field: value}))) == [field]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("\uff12\uff10\uff11\uff15-01-01T10:11:12", id="fullwidth-year"),
        pytest.param("\u0662\u0660\u0661\u0665-01-01T10:11:12", id="arabic-indic-year"),
    ],
)
def test_given_date_time_with_non_ascii_digits_when_validated_then_issue_on_datetime(value: str) -> None:
    assert issue_fields(validate_pms_record(record("DND", datetime=value))) == ["datetime"]


# --- PMS records: types -----------------------------------------------------------------------------


@pytest.mark.parametrize("action", ACTIVE_RECORDS)
def test_given_active_maybe_when_validated_then_issue_on_active(action: str) -> None:
    assert issue_fields(validate_pms_record(record(action, active="maybe"))) == ["active"]


@pytest.mark.parametrize("action", ROOM_RECORDS)
def test_given_room_as_integer_when_validated_then_issue_on_room(action: str) -> None:
    assert issue_fields(validate_pms_record(record(action, room=101))) == ["room"]


def test_given_booking_room_as_integer_when_validated_then_issue_on_room() -> None:
    assert issue_fields(validate_pms_record(record("BOOKING", room=101))) == ["room"]


def test_given_negative_pax_when_validated_then_issue_on_pax() -> None:
    assert issue_fields(validate_pms_record(record("BOOKING", pax=-1))) == ["pax"]


@pytest.mark.parametrize("language", ["eng", "e", "12", "e1", "", "en-GB", 39])
def test_given_guest_language_not_iso_639_1_when_validated_then_issue_on_language(language: object) -> None:
    issues = validate_pms_record(booking_with_guest(language=language))
    assert issue_fields(issues) == ["GUEST_LIST[0].language"]


# --- PMS records: every spelling accepted -----------------------------------------------------------


@pytest.mark.parametrize("spelling", ["status", "roomstatus"])
def test_given_rs_status_in_either_spelling_when_validated_then_no_issues(spelling: str) -> None:
    rec = record("RS", status=DROP)
    rec[spelling] = "C"
    assert validate_pms_record(rec) == []


@pytest.mark.parametrize(
    ("table_name", "example_name"),
    [("acontact", "allow_contact"), ("idcard", "identity_card")],
)
@pytest.mark.parametrize("use_table_name", [True, False], ids=["table-name", "example-name"])
def test_given_guest_field_in_either_spelling_when_validated_then_no_issues(
    table_name: str, example_name: str, use_table_name: bool
) -> None:
    value = SPEC_GUEST[example_name]
    changes = {table_name: value, example_name: DROP} if use_table_name else {}
    assert validate_pms_record(booking_with_guest(**changes)) == []


@pytest.mark.parametrize(
    ("table_name", "example_name", "bad_value"),
    [("acontact", "allow_contact", "maybe"), ("idcard", "identity_card", 123)],
)
def test_given_guest_field_alias_with_wrong_type_when_validated_then_issue(
    table_name: str, example_name: str, bad_value: object
) -> None:
    issues = validate_pms_record(booking_with_guest(**{example_name: bad_value}))
    assert len(issues) == 1
    assert issues[0][0] in (f"GUEST_LIST[0].{table_name}", f"GUEST_LIST[0].{example_name}")


@pytest.mark.parametrize("uid", ["12345", 12345])
def test_given_msgtxt_uid_as_string_or_number_when_validated_then_no_issues(uid: object) -> None:
    assert validate_pms_record(record("MSGTXT", uid=uid)) == []


@pytest.mark.parametrize("uid", [True, 12.5, ""])
def test_given_msgtxt_uid_neither_string_nor_integer_when_validated_then_issue_on_uid(uid: object) -> None:
    assert issue_fields(validate_pms_record(record("MSGTXT", uid=uid))) == ["uid"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" BILL_REQUEST ", "BILL_REQUEST"),
        ("booking", "BOOKING"),
        ("\tWake\n", "WAKE"),
        ("GET_REQUEST", "GET_REQUEST"),
    ],
)
def test_given_action_with_spaces_or_lower_case_when_normalized_then_upper_case_name(raw: str, expected: str) -> None:
    assert normalize_action(raw) == expected


@pytest.mark.parametrize("raw", [None, 12, "", "   ", ["BOOKING"]])
def test_given_missing_or_non_string_action_when_normalized_then_none(raw: object) -> None:
    assert normalize_action(raw) is None


@pytest.mark.parametrize("spelling", ["booking", " BOOKING ", "Booking"])
def test_given_record_action_with_spaces_or_lower_case_when_validated_then_no_issues(spelling: str) -> None:
    assert validate_pms_record(record("BOOKING", action=spelling)) == []


def test_given_unknown_action_when_validated_then_issue_on_action_lists_expected_ones() -> None:
    issues = validate_pms_record(record("DND", action="CHECKIN"))
    assert issue_fields(issues) == ["action"]
    for name in PMS_RECORDS:
        assert name in issues[0][1]


def test_given_request_only_action_when_validated_as_pms_record_then_issue_on_action() -> None:
    assert issue_fields(validate_pms_record(record("DND", action="BILL_REQUEST"))) == ["action"]


@pytest.mark.parametrize("action", [DROP, None, 7, "  "])
def test_given_missing_action_when_validated_then_issue_on_action(action: object) -> None:
    assert validate_pms_record(record("DND", action=action)) == [("action", "is required")]


@pytest.mark.parametrize("value", [None, "BOOKING", 42, [SPEC_RECORDS["DND"]], True])
def test_given_non_object_record_when_validated_then_one_record_issue(value: object) -> None:
    issues = validate_pms_record(value)
    assert len(issues) == 1
    assert issues[0][0] == "(record)"


# --- inbound requests (pmslink > PMS) ---------------------------------------------------------------


@pytest.mark.parametrize("action", list(SPEC_REQUESTS))
def test_given_spec_request_example_when_validated_then_no_issues(action: str) -> None:
    assert request_issues(action, request(action)) == []


def test_given_inbound_request_models_then_every_spec_request_is_known() -> None:
    assert set(INBOUND_REQUESTS) == set(SPEC_REQUESTS)


def test_given_post_without_amount_or_price_when_validated_then_issue_names_amount() -> None:
    assert issue_fields(request_issues("POST", request("POST", amount=DROP))) == ["amount"]


def test_given_post_with_amount_when_totalled_then_total_is_amount() -> None:
    post = INBOUND_REQUESTS["POST"].model_validate(request("POST", units=3, amount="7.25"))
    assert post.total() == Decimal("7.25")


def test_given_post_with_amount_and_price_when_totalled_then_amount_wins() -> None:
    post = INBOUND_REQUESTS["POST"].model_validate(request("POST", units=3, price="2.10", amount="6.00"))
    assert post.total() == Decimal("6.00")


@pytest.mark.parametrize("price", ["2.10", 2.10, Decimal("2.10")], ids=["str", "float", "decimal"])
@pytest.mark.parametrize("spelling", ["price", "Price"])
def test_given_post_with_price_only_when_totalled_then_units_times_price_exact(price: object, spelling: str) -> None:
    post = INBOUND_REQUESTS["POST"].model_validate(request("POST", amount=DROP, units=3, **{spelling: price}))
    total = post.total()
    assert isinstance(total, Decimal)
    assert total == Decimal("6.30")


def test_given_post_with_tenth_price_when_totalled_then_no_binary_float_error() -> None:
    post = INBOUND_REQUESTS["POST"].model_validate(request("POST", amount=DROP, units=3, price=0.1))
    assert post.total() == Decimal("0.3")


@pytest.mark.parametrize("units", [0, -1])
def test_given_post_with_non_positive_units_when_validated_then_issue_on_units(units: int) -> None:
    assert issue_fields(request_issues("POST", request("POST", units=units))) == ["units"]


@pytest.mark.parametrize("spelling", ["price", "Price"])
def test_given_call_price_in_either_spelling_when_validated_then_price_read(spelling: str) -> None:
    body = request("CALL", Price=DROP)
    body[spelling] = 2.50
    call = INBOUND_REQUESTS["CALL"].model_validate(body)
    assert call.price == Decimal("2.50")


@pytest.mark.parametrize(("kind", "first", "second", "value", "other"), [
    ("CALL", "price", "Price", 2.5, "2.50 EUR"),
    ("POST", "amount", "Amount", 2.5, 3),
    ("RS", "status", "roomstatus", "C", 123),
])
def test_given_both_spellings_when_they_disagree_then_issue_on_the_second(kind: str, first: str, second: str,
                                                                          value: object, other: object) -> None:
    body = request(kind, **{first: value, second: other})
    assert (second, "disagrees with") in [(f, r[:14]) for f, r in request_issues(kind, body)]
    assert request_issues(kind, request(kind, **{first: value, second: value})) == []  # agreeing: fine


def test_given_guest_with_both_spellings_when_they_disagree_then_issue_names_the_guest() -> None:
    issues = validate_pms_record(booking_with_guest(acontact=True, allow_contact="x" * 5_000))
    assert issue_fields(issues) == ["GUEST_LIST[0].allow_contact"]
    assert validate_pms_record(booking_with_guest(acontact=True, allow_contact=True)) == []
    assert validate_pms_record(booking_with_guest(acontact=1, allow_contact=True)) != []  # same value, same type


@pytest.mark.parametrize(("kind", "field"), [("CALL", "duration"), ("CALL", "units"), ("CALL", "response")])
def test_given_boolean_in_a_number_field_when_validated_then_refused(kind: str, field: str) -> None:
    assert (field, "must be a number, not true or false") in request_issues(kind, request(kind, **{field: True}))
    assert request_issues(kind, request(kind, **{field: "3"})) == []  # digits as text, as XML sends them


def test_given_boolean_pax_when_validated_then_refused() -> None:
    assert issue_fields(validate_pms_record(record("BOOKING", pax=False))) == ["pax"]


@pytest.mark.parametrize("call_type", ["O", "I", "L"])
def test_given_call_type_from_spec_when_validated_then_accepted(call_type: str) -> None:
    assert request_issues("CALL", request("CALL", call_type=call_type)) == []


@pytest.mark.parametrize("call_type", ["X", "o", "", "OUT"])
def test_given_call_type_outside_spec_when_validated_then_issue_on_call_type(call_type: str) -> None:
    assert issue_fields(request_issues("CALL", request("CALL", call_type=call_type))) == ["call_type"]


def test_given_call_without_duration_when_validated_then_issue_on_duration() -> None:
    assert request_issues("CALL", request("CALL", duration=DROP)) == [("duration", "is required")]


@pytest.mark.parametrize("mode", ["S", "C", "E", "F"])
def test_given_wake_request_mode_from_spec_when_validated_then_accepted(mode: str) -> None:
    assert request_issues("WAKE", request("WAKE", mode=mode)) == []


def test_given_wake_request_mode_outside_spec_when_validated_then_issue_on_mode() -> None:
    assert issue_fields(request_issues("WAKE", request("WAKE", mode="X"))) == ["mode"]


@pytest.mark.parametrize("action", ["BILL_REQUEST", "CHECKOUT"])
def test_given_bill_or_checkout_request_without_room_when_validated_then_issue_on_room(action: str) -> None:
    assert request_issues(action, request(action, room=DROP)) == [("room", "is required")]


@pytest.mark.parametrize("spelling", ["status", "roomstatus"])
def test_given_rs_request_status_in_either_spelling_when_validated_then_no_issues(spelling: str) -> None:
    body = request("RS", roomstatus=DROP)
    body[spelling] = "C"
    assert request_issues("RS", body) == []


# --- error reasons never echo input values ----------------------------------------------------------

SENSITIVE = "X1234567"


@pytest.mark.parametrize(
    "guest_changes",
    [
        pytest.param({"acontact": SENSITIVE, "allow_contact": DROP}, id="passport-as-acontact"),
        pytest.param({"main": SENSITIVE}, id="passport-as-main"),
        pytest.param({"adult": SENSITIVE}, id="passport-as-adult"),
        pytest.param({"language": SENSITIVE}, id="passport-as-language"),
        pytest.param({"passport": [SENSITIVE]}, id="passport-as-list"),
        pytest.param({"uid": {"n": SENSITIVE}}, id="passport-as-uid-object"),
    ],
)
def test_given_guest_pii_in_wrong_field_when_validated_then_no_reason_echoes_it(guest_changes: dict[str, Any]) -> None:
    issues = validate_pms_record(booking_with_guest(**guest_changes))
    assert issues
    assert all(SENSITIVE not in field and SENSITIVE not in reason for field, reason in issues)


@pytest.mark.parametrize("field", ["status", "arrival", "pax", "room", "GUEST_LIST"])
def test_given_pii_in_wrong_booking_field_when_validated_then_no_reason_echoes_it(field: str) -> None:
    issues = validate_pms_record(record("BOOKING", **{field: SENSITIVE if field != "room" else 1234567}))
    assert issues
    assert all(SENSITIVE not in reason and "1234567" not in reason for _, reason in issues)


def test_given_pii_in_wrong_request_field_when_validated_then_no_reason_echoes_it() -> None:
    issues = request_issues("POST", request("POST", units=SENSITIVE, amount=SENSITIVE))
    assert issues
    assert all(SENSITIVE not in reason for _, reason in issues)


# --- property: validate_pms_record never raises -----------------------------------------------------

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=24)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
KNOWN_FIELDS = sorted({key for rec in SPEC_RECORDS.values() for key in rec} | set(SPEC_GUEST) | {"roomstatus"})
FIELD_VALUES = JSON_VALUES | st.sampled_from(
    ["2015-01-01T10:11:12", "2015-02-30T10:00:00", "checkin", "S", "E", "101", "en", [SPEC_GUEST], [{}]]
)


@st.composite
def pms_like_records(draw: st.DrawFn) -> dict[str, Any]:
    """A spec example (or nothing) with fields replaced or added, under an action named like a PMS record."""
    action = draw(st.sampled_from(list(PMS_RECORDS)))
    base = copy.deepcopy(SPEC_RECORDS[action]) if draw(st.booleans()) else {}
    changes = draw(st.dictionaries(st.sampled_from(KNOWN_FIELDS) | st.text(max_size=8), FIELD_VALUES, max_size=8))
    spelled = draw(st.sampled_from([action, action.lower(), f" {action} "]))
    return {**base, **changes, "action": spelled}


def assert_issue_list(issues: object) -> None:
    assert isinstance(issues, list)
    for issue in issues:
        assert isinstance(issue, tuple)
        assert len(issue) == 2
        assert isinstance(issue[0], str)
        assert isinstance(issue[1], str)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_given_arbitrary_json_when_validated_then_returns_issue_list(value: object) -> None:
    assert_issue_list(validate_pms_record(value))


@settings(max_examples=500, deadline=None)
@given(pms_like_records())
def test_given_pms_like_record_with_arbitrary_fields_when_validated_then_returns_issue_list(
    value: dict[str, Any],
) -> None:
    assert_issue_list(validate_pms_record(value))
