"""The OpenAPI 3.1 document of the connector's HTTP API, generated from the code.

Record and request schemas come from the pydantic models of records.py, generated the way the handlers
validate (pydantic's lax mode: ``"true"`` for a boolean, ``"2"`` for an integer, ``"2.50"`` for an amount,
as XML bodies send them; every field spelling the models accept). Only the answers the code builds as plain
dicts are written here by hand, each next to a comment naming the code that produces it.

``docs/openapi.json`` is this document, committed; tests/unit/test_openapi.py fails when the two differ:

    python -m pms_connector.openapi --write docs/openapi.json   # regenerate
    python -m pms_connector.openapi --check docs/openapi.json   # exit 1 with a diff when out of date
"""

from __future__ import annotations

import argparse
import copy
import difflib
import json
import re
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue, models_json_schema
from pydantic_core import core_schema

from pms_connector import errors, records
from pms_connector.config import PROPERTY_ID_PATTERN

OPENAPI_VERSION = "3.1.0"
DOCUMENT_PATH = "docs/openapi.json"
REF = "#/components/schemas/{model}"
REGENERATE = f"python -m pms_connector.openapi --write {DOCUMENT_PATH}"

# The spec's date-time YYYY-MM-DDTHH:NN:SS (records.parse_spec_datetime: records._DATETIME_RE, then strptime),
# with datetime's ranges; a day the month does not have (02-30) still matches and is refused by the code.
DATETIME_PATTERN = (r"^([1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])-(0[1-9]|1[0-2])"
                    r"-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$")
LANGUAGE_PATTERN = r"^[A-Za-z]{2}$"  # records._check_language


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


# pydantic's lax bool: these words in any letter case (records' booleans arrive as text in XML bodies).
BOOL_WORDS = ("true", "false", "yes", "no", "on", "off", "t", "f", "y", "n", "1", "0")
BOOL_TEXT_PATTERN = "^(" + "|".join(_any_case(w) for w in BOOL_WORDS) + ")$"


class AcceptedJsonSchema(GenerateJsonSchema):
    """JSON Schema of what the models accept (validation mode, lax), not only of their declared types."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False  # "title": "Booking Uid" on every property says nothing the name does not

    def bool_schema(self, schema: core_schema.BoolSchema) -> JsonSchemaValue:
        return {"anyOf": [{"type": "boolean"}, {"enum": [0, 1]}, {"type": "string", "pattern": BOOL_TEXT_PATTERN}],
                "description": "true or false; also 1/0 and the words true/false, yes/no, on/off, t/f, y/n, 1/0 "
                               "in any letter case (XML bodies send booleans as text)"}

    def int_schema(self, schema: core_schema.IntSchema) -> JsonSchemaValue:
        number = super().int_schema(schema)
        # Digits as text too, where a pattern can say the bounds: none, 0..unbounded or 0..10^k-1.
        low = schema["ge"] if "ge" in schema else schema["gt"] + 1 if "gt" in schema else None
        high = schema["le"] if "le" in schema else schema["lt"] - 1 if "lt" in schema else None
        if low is None and high is None:
            pattern = "^[+-]?[0-9]+$"
        elif low == 0 and high is None:
            pattern = "^[0-9]+$"
        elif low == 0 and high is not None and str(high + 1).rstrip("0") == "1":
            pattern = f"^[0-9]{{1,{len(str(high))}}}$"
        else:
            return number
        return {"anyOf": [number, {"type": "string", "pattern": pattern}],
                "description": "an integer, or its digits as text"}

    def get_decimal_pattern(self, schema: core_schema.DecimalSchema) -> str | None:
        return self.build_decimal_pattern(schema)

    def decimal_schema(self, schema: core_schema.DecimalSchema) -> JsonSchemaValue:
        accepted = super().decimal_schema(schema)
        max_digits, places = schema.get("max_digits"), schema.get("decimal_places")
        notes = []
        if max_digits is not None and places is not None:
            whole = 10 ** (max_digits - places)
            number = accepted["anyOf"][0]
            if "minimum" not in number and "exclusiveMinimum" not in number:
                number["exclusiveMinimum"] = -whole
            number["exclusiveMaximum"] = whole
            notes.append(f"at most {max_digits - places} digits before the point and {places} after it")
        if schema.get("gt") is not None:
            notes.append(f"greater than {schema['gt']}")
        accepted["description"] = "a number, or a decimal number as text (\"2.50\")" + "".join(
            f"; {n}" for n in notes)
        return accepted

    def function_after_schema(self, schema: core_schema.AfterValidatorFunctionSchema) -> JsonSchemaValue:
        inner = super().function_after_schema(schema)
        function = schema["function"]["function"]
        if function is records._check_datetime:
            return {**inner, "pattern": DATETIME_PATTERN,
                    "description": "YYYY-MM-DDTHH:NN:SS, the property's local time (a real calendar date)",
                    "examples": ["2015-01-01T10:11:12"]}
        if function is records._check_language:
            return {**inner, "pattern": LANGUAGE_PATTERN, "description": "ISO 639-1 two-letter language code"}
        return inner

    def function_before_schema(self, schema: core_schema.BeforeValidatorFunctionSchema) -> JsonSchemaValue:
        inner = super().function_before_schema(schema)
        if schema["function"]["function"] is records._uid_to_str:
            # MSGTXT's table says String, its JSON example sends a number: both are accepted.
            return {"anyOf": [inner, {"type": "integer"}], "description": "a string, or an integer"}
        return inner


# --- record and request models ------------------------------------------------------------------------

PMS_RECORD_NOTES = {
    "BOOKING": "A booking and its guests: new, changed, checked in (with the room), checked out, cancelled or "
               "no-show. A `checkin` for a booking already in house with another room is a room move.",
    "RS": "Room status (housekeeping code).",
    "MUR": "Make-up-room (cleaning) request on or off.",
    "COS": "Class of service of the room for the PBX, the TV and the Internet access.",
    "WMSG": "Message-waiting indicator on or off.",
    "WAKE": "Wake-up call set (`S`) or cancelled (`C`). For a property with a UCM a `S` whose time is already "
            "past in the property's zone is refused (field `waketime`).",
    "DND": "Do-not-disturb on or off.",
    "MSGTXT": "A text message for the guest.",
}

REQUEST_NOTES = {
    "GET_REQUEST": "Poll the property's queue: at most 100 PMS records, oldest first, in `ACTION_LIST`. With "
                   "`delivery: confirm` the answer carries a `batch` id, answered again until a GET_REQUEST "
                   "carries it in `confirm` (connector extension).",
    "POST": "A charge. `amount` (taxes included) or `price` (per unit) is required.",
    "RS": "Room status change (`status` or `roomstatus`), optionally with the maid's id.",
    "MUR": "Make-up-room request on or off.",
    "DND": "Do-not-disturb on or off.",
    "BILL_REQUEST": "The bill of the room (of its booking/account when named): answered with `ITEM_LIST`, "
                    "`bill_total` and `notes`.",
    "CHECKOUT": "Express checkout request: answered by the property's policy (code 0 or 207, with `notes`).",
    "CALL": "A phone call's data (a priced call is a charge on the bill).",
    "WAKE": "Wake-up call result or change: `S` set, `C` cancelled, `E` executed, `F` failed.",
    "MSGTXT": "A text message from the guest to the hotel.",
}

COMMON_FIELDS = {
    "datetime": "Date-time of the action, YYYY-MM-DDTHH:NN:SS in the property's local time (a real calendar "
                "date). In a request with MD5 authentication it is also the token's datetime, accepted within "
                "the property's `md5_window_seconds` of its local time.",
    "property": "The property (hotel) id; when the URL names the property, the same id (an ingest record "
                "without it gets the URL's).",
    "user": "MD5 authentication: the user.",
    "usertoken": "MD5 authentication: md5(user + datetime as YYYYMMDDHHNNSS + password), hex; token "
                 "authentication: the agreed token.",
}

# Rules the models check in validators rather than in field types, as far as JSON Schema can say them.
CROSS_FIELD_RULES: dict[str, list[dict[str, Any]]] = {
    # records.BookingRecord._room_for_stays and _account_when_shared (departure >= arrival is in the text).
    "BookingRecord": [
        {"if": {"properties": {"status": {"enum": ["checkin", "checkout"]}}, "required": ["status"]},
         "then": {"properties": {"room": {"type": "string"}}, "required": ["room"]}},
        {"if": {"properties": {"GUEST_LIST": {"type": "array", "minItems": 2}}, "required": ["GUEST_LIST"]},
         "then": {"properties": {"account": {"type": "string"}}, "required": ["account"]}},
    ],
    # records.PostRequest._price_or_amount
    "PostRequest": [
        {"anyOf": [{"properties": {name: {"not": {"type": "null"}}}, "required": [name]}
                   for name in ("amount", "Amount", "price", "Price")]},
    ],
}

MODEL_NOTES = {"BookingRecord": "`departure` must not be before `arrival`."}


def action_pattern(action: str) -> str:
    """records.normalize_action: any letter case, surrounding spaces ignored (the spec's " BILL_REQUEST ")."""
    return rf"^\s*{_any_case(action)}\s*$"


def _nested_models(model: type[BaseModel]) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []

    def visit(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found.append(annotation)
            return
        for arg in typing.get_args(annotation):
            visit(arg)

    for info in model.model_fields.values():
        visit(info.annotation)
    return found


def _accepted_names(name: str, info: Any) -> list[str]:
    """The field's name and every alias a request may use for it (populate_by_name is on)."""
    alias = info.validation_alias
    choices = alias.choices if isinstance(alias, AliasChoices) else [alias] if isinstance(alias, str) else []
    names = [name]
    names += [c for c in choices if isinstance(c, str) and c not in names]
    return names


def _flatten(node: Any) -> Any:
    """``anyOf: [{anyOf: [a, b], description}, null]`` → ``anyOf: [a, b, null]`` with the description lifted."""
    if isinstance(node, list):
        return [_flatten(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _flatten(value) for key, value in node.items()}
    members = out.get("anyOf")
    if isinstance(members, list):
        flat: list[Any] = []
        for member in members:
            if isinstance(member, dict) and "anyOf" in member and set(member) <= {"anyOf", "description"}:
                flat += member["anyOf"]
                if "description" in member:
                    out.setdefault("description", member["description"])
            else:
                flat.append(member)
        out["anyOf"] = flat
    return out


def _complete(schema: dict[str, Any], model: type[BaseModel], action: str | None, note: str | None) -> None:
    """Add what the model accepts beyond its generated schema: every spelling, the action, the rules."""
    properties: dict[str, Any] = schema["properties"]
    required: list[str] = schema.get("required", [])
    alternatives: list[dict[str, Any]] = []
    for name, info in model.model_fields.items():
        names = _accepted_names(name, info)
        if len(names) == 1:
            continue
        primary = next(n for n in names if n in properties)
        for other in names:
            if other not in properties:
                properties[other] = {**copy.deepcopy(properties[primary]),
                                     "description": f"Another spelling of `{primary}`, accepted as well."}
        if primary in required:
            required.remove(primary)
            alternatives.append({"anyOf": [{"required": [n]} for n in names]})
    for name, text in COMMON_FIELDS.items():
        if name in properties:
            properties[name]["description"] = text
    if action is not None:
        properties["action"] = {"type": "string", "pattern": action_pattern(action), "examples": [action],
                                "description": f"`{action}` (any letter case; surrounding spaces are ignored)"}
    rules = alternatives + CROSS_FIELD_RULES.get(model.__name__, [])
    if rules:
        schema["allOf"] = rules
    if not required:
        schema.pop("required", None)
    text = " ".join(t for t in (note, MODEL_NOTES.get(model.__name__)) if t) or schema.get("description", "")
    schema["description"] = (text + " Fields not listed are accepted and kept as they are.").strip()


def model_schemas() -> dict[str, Any]:
    """Component schemas of the PMS records and the HTTPPMS requests, from records.py's models."""
    top: list[tuple[type[BaseModel], str | None, str | None]] = [
        *((m, a, PMS_RECORD_NOTES[a]) for a, m in records.PMS_RECORDS.items()),
        *((m, a, REQUEST_NOTES[a]) for a, m in records.INBOUND_REQUESTS.items()),
    ]
    models = [m for m, _, _ in top]
    nested = [n for m in models for n in _nested_models(m) if n not in models]
    everything = [*((m, a, n) for m, a, n in top), *((m, None, None) for m in dict.fromkeys(nested))]
    _, generated = models_json_schema([(m, "validation") for m, _, _ in everything], ref_template=REF,
                                      schema_generator=AcceptedJsonSchema)
    schemas: dict[str, Any] = _flatten(generated["$defs"])
    for model, action, note in everything:
        _complete(schemas[model.__name__], model, action, note)
    return schemas


# --- answers the code builds as plain dicts ---------------------------------------------------------------

HTTPPMS_CODES = {
    errors.OK: "OK",
    errors.CODE_STORAGE_BUSY: "Storage throttled or unavailable: retry.",
    errors.CODE_DELIVERY_CONFLICT: "Another GET_REQUEST moved the queue at the same moment, or the same request "
                                   "is in flight: retry.",
    errors.CODE_BUS_UNAVAILABLE: "Stored, but the event bus is unavailable: retry (the retry publishes it once).",
    errors.CODE_CONFIG_UNAVAILABLE: "Property configuration temporarily unreadable: retry.",
    errors.CODE_MALFORMED: "Malformed body: not a JSON object, invalid XML, a DTD in XML.",
    errors.CODE_UNKNOWN_ACTION: "Unknown action.",
    errors.CODE_INVALID_FIELD: "Invalid or missing field; the description names it, e.g. "
                               "`POST: invalid field 'units': is required`.",
    errors.CODE_AUTH_FAILED: "Authentication failed (HTTP 401): bad or missing credentials, unknown property, or "
                             "a property in the URL that differs from the body's.",
    errors.CODE_DATETIME_WINDOW: "MD5 token's datetime outside the window around the property's local time.",
    errors.CODE_TOO_LARGE: "Body larger than 256 KiB.",
    errors.CODE_CHECKOUT_DECLINED: "CHECKOUT declined by the property's policy.",
    errors.CODE_UNKNOWN_BATCH: "`confirm` names an unknown batch.",
    errors.CODE_PROPERTY_MISMATCH: "Property mismatch: defined in errors.py but never answered (a URL/body "
                                   "property mismatch is answered 204, HTTP 401).",
}


def httppms_codes() -> list[int]:
    """Every HTTPPMS result code errors.py defines (OK and CODE_*)."""
    return sorted(v for k, v in vars(errors).items() if (k == "OK" or k.startswith("CODE_")) and isinstance(v, int))


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _object(properties: dict[str, Any], required: Sequence[str] | None = None, description: str | None = None,
            extra: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object"}
    if description:
        out["description"] = description
    out["properties"] = properties
    out["required"] = list(properties) if required is None else list(required)
    out["additionalProperties"] = extra
    return out


STRING: dict[str, Any] = {"type": "string"}
INTEGER: dict[str, Any] = {"type": "integer"}


def answer_schemas() -> dict[str, Any]:
    """The answers the handlers build as dicts, with the code that builds each."""
    codes = httppms_codes()
    missing = [c for c in codes if c not in HTTPPMS_CODES]
    if missing:
        raise KeyError(f"HTTPPMS code(s) {missing} in errors.py have no description in openapi.HTTPPMS_CODES")
    pms_refs = [{"$ref": REF.format(model=m.__name__)} for m in records.PMS_RECORDS.values()]
    request_refs = [{"$ref": REF.format(model=m.__name__)} for m in records.INBOUND_REQUESTS.values()]
    return {
        # records.PMS_RECORDS, validated by records.validate_pms_record (ingest.validate_records)
        "PmsRecord": {"description": "A PMS record, chosen by its `action`.", "oneOf": pms_refs},
        # ingest.parse_body: one record or an array of 1..MAX_RECORDS
        "IngestBody": {
            "description": "One PMS record, or an array of 1 to 100 accepted or refused as a whole.",
            "oneOf": [{"$ref": REF.format(model="PmsRecord")},
                      {"type": "array", "minItems": 1, "maxItems": 100,
                       "items": {"$ref": REF.format(model="PmsRecord")}}]},
        # records.INBOUND_REQUESTS, validated by httppms.handle_request
        "HttppmsRequest": {"description": "A request of an integrated system, chosen by its `action`.",
                           "oneOf": request_refs},
        # functions/ingest/app.py post_events
        "IngestAccepted": _object({
            "accepted": {"type": "integer", "minimum": 1, "maximum": 100, "description": "Records appended."},
            "sequence": {"type": "array", "minItems": 1, "maxItems": 100, "items": INTEGER,
                         "description": "Their sequence numbers in the property's queue, in order."},
        }, description="Appended to the property's queue, in order, atomically."),
        # ingest.validate_records
        "IngestIssue": _object({
            "index": {"type": "integer", "minimum": 0, "description": "Position of the record in the body."},
            "field": {"type": "string", "description": "Field path (`GUEST_LIST[0].language`), or `(record)`."},
            "reason": STRING,
        }),
        # errors.ingest_answer (and api.INGEST_ERRORS)
        "IngestError": _object({
            "error": {"type": "string", "description": "What is wrong, in words."},
            "issues": {"type": "array", "minItems": 1, "items": {"$ref": REF.format(model="IngestIssue")},
                       "description": "Every problem of every record (invalid records only)."},
            "retryable": {"const": True, "description": "Present on 5xx answers: send the same request again."},
        }, required=["error"]),
        # errors.ingest_answer for a RetryableError; api.INGEST_ERRORS.unexpected
        "RetryableError": _object({"error": STRING, "retryable": {"const": True}},
                                  description="Nothing was written: send the same request again."),
        # ingest.inbound_page and ingest._entry
        "InboundPage": _object({
            "items": {"type": "array", "maxItems": 100, "items": {"$ref": REF.format(model="InboundEntry")}},
            "next": {"type": "integer", "minimum": 0,
                     "description": "`after` for the next page (the last `seq`, or `after` when empty)."},
        }),
        "InboundEntry": _object({
            "seq": {"type": "integer", "minimum": 1},
            "action": {"type": "string", "description": "The request's action, normalised (`BILL_REQUEST`)."},
            "received_at": {"type": "integer", "description": "Epoch seconds."},
            "request": {"type": "object", "description": "The request as posted, without `user`/`usertoken`."},
        }),
        # functions/ingest/app.py get_rooms, state.room_view
        "RoomList": _object({"rooms": {"type": "array", "items": {"$ref": REF.format(model="RoomView")}}}),
        "RoomView": _object({
            "room": STRING,
            "occupants": {"type": "array", "items": {"$ref": REF.format(model="RoomOccupant")},
                          "description": "Bookings in the room; the first is the one the phone shows."},
            "cos_pbx": _nullable(STRING),
            "status": _nullable(STRING),
            "dnd": _nullable({"type": "boolean"}),
            "mur": _nullable({"type": "boolean"}),
            "wmsg": _nullable({"type": "boolean"}),
            "wakeups": {"type": "array", "items": _object({"uid": STRING, "waketime": STRING})},
        }, description="The room's state (no guest data beyond what the phone shows)."),
        "RoomOccupant": _object({
            "booking_uid": STRING, "firstname": _nullable(STRING), "lastname": _nullable(STRING),
            "language": _nullable(STRING), "cos": _nullable(STRING)}),
        # errors.py: OK and CODE_*
        "HttppmsCode": {"type": "integer", "description": "0 success, 1xx retry, 2xx do not retry.",
                        "oneOf": [{"const": code, "description": HTTPPMS_CODES[code]} for code in codes]},
        # httppms._get_request, httppms._answer, httppms._bill, errors.httppms_answer
        "HttppmsAnswer": _object({
            "code": {"$ref": REF.format(model="HttppmsCode")},
            "description": STRING,
            "ACTION_LIST": {"type": "array", "minItems": 1, "maxItems": 100,
                            "items": {"$ref": REF.format(model="ActionListRecord")},
                            "description": "GET_REQUEST: the pending records, oldest first (absent when none)."},
            "batch": {"type": "string", "description": "GET_REQUEST with `delivery: confirm`: confirm it with "
                                                       "the next GET_REQUEST's `confirm`."},
            "ITEM_LIST": {"type": "array", "items": {"$ref": REF.format(model="BillItem")},
                          "description": "BILL_REQUEST: the charges of the stay."},
            "bill_total": {"type": "number", "description": "BILL_REQUEST: sum of the items, two decimals."},
            "notes": {"type": "string", "description": "BILL_REQUEST: the property's billing notes; CHECKOUT: "
                                                       "the message for the guest."},
        }, required=["code", "description"], description="Every processed request: HTTP 200 with a code."),
        # PMS records as the PMS wrote them (ingest), and WAKE E/F results (supervisor.report_result)
        "ActionListRecord": {
            "description": "A record exactly as the PMS wrote it (with `property` filled in), or a WAKE result "
                           "(`mode` E or F) the connector reports for a wake-up.",
            "anyOf": [*pms_refs, {"$ref": REF.format(model="WakeRequest")}]},
        "BillItem": _object({
            "datetime": STRING, "article": STRING, "description": STRING,
            "total": {"type": "number", "description": "Taxes included, two decimals."},
        }, required=["datetime", "description", "total"]),
        # errors.httppms_answer for AuthenticationFailed
        "HttppmsAuthFailed": _object({"code": {"const": errors.CODE_AUTH_FAILED}, "description": STRING}),
        # api.HTTPPMS_ERRORS.unexpected
        "HttppmsInternalError": _object({"code": {"const": errors.CODE_STORAGE_BUSY}, "description": STRING}),
        # API Gateway's own answers (throttling, its 10 MB payload limit, a failed function); the local runner's
        "GatewayMessage": _object({"message": STRING}, description="Answered by API Gateway, not the connector."),
    }


# --- examples -----------------------------------------------------------------------------------------

SPEC_CREDENTIALS = {"user": "user1", "usertoken": "61e7c7371170a948eaf63fa578840025"}
_HEAD = {"datetime": "2015-01-01T10:11:12"}

# The spec's JSON examples (docs/specs/charpmslink-httppms-equipment-basic-api.txt), verbatim.
PMS_RECORD_EXAMPLES: dict[str, dict[str, Any]] = {
    "BOOKING": {**_HEAD, "action": "BOOKING", "property": "myhotel", "booking_uid": "qwertyu-1234",
                "status": "checkin", "room": "101", "account": "123456", "arrival": "2015-01-01T10:00:00",
                "departure": "2015-01-06T12:00:00", "level": "1", "cos_pbx": "1", "cos_tv": "A1", "cos_inet": "A",
                "pax": 2, "GUEST_LIST": [{
                    "uid": "987654", "main": True, "adult": True, "account": "456789", "title": "Mr.",
                    "name": "john", "surname": "Doe", "gender": "male", "level": "1", "language": "en",
                    "email": "john.doe@sample.com", "mobile": "12345678901234567890", "allow_contact": True,
                    "passport": "1234567890", "identity_card": "1234567890", "cos_pbx": "1", "cos_tv": "A1",
                    "cos_inet": "A"}]},
    "RS": {**_HEAD, "action": "RS", "property": "myhotel", "room": "101", "status": "C"},
    "MUR": {**_HEAD, "action": "MUR", "property": "myhotel", "room": "101", "active": True},
    "COS": {**_HEAD, "action": "COS", "property": "myhotel", "room": "101", "cos_pbx": "0", "cos_tv": "0",
            "cos_inet": "0"},
    "WMSG": {**_HEAD, "action": "WMSG", "property": "myhotel", "room": "101", "active": True},
    "WAKE": {**_HEAD, "action": "WAKE", "property": "myhotel", "room": "101", "mode": "S", "uid": "12345",
             "waketime": "2015-01-02T08:00:00"},
    "DND": {**_HEAD, "action": "DND", "property": "myhotel", "room": "101", "active": True},
    "MSGTXT": {**_HEAD, "action": "MSGTXT", "property": "myhotel", "room": "101", "uid": "12345",
               "text": "Welcome to the hotel"},
}

REQUEST_EXAMPLES: dict[str, dict[str, Any]] = {
    "GET_REQUEST": {**_HEAD, **SPEC_CREDENTIALS, "action": "GET_REQUEST", "property": "myhotel"},
    "POST": {**_HEAD, **SPEC_CREDENTIALS, "action": "POST", "property": "myhotel", "booking_uid": "qwertyu-123456",
             "room": "101", "account": "12345678", "post_type": "M", "article": "WA", "description": "Water",
             "units": 1, "amount": 2.5, "tax": "23"},
    "RS": {**_HEAD, **SPEC_CREDENTIALS, "action": "RS", "property": "myhotel", "room": "101", "roomstatus": "C",
           "maid": "123"},
    "MUR": {**_HEAD, **SPEC_CREDENTIALS, "action": "MUR", "property": "myhotel", "room": "101", "active": True},
    "DND": {**_HEAD, **SPEC_CREDENTIALS, "action": "DND", "property": "myhotel", "room": "101", "active": True},
    "BILL_REQUEST": {**_HEAD, **SPEC_CREDENTIALS, "action": " BILL_REQUEST ", "property": "myhotel",
                     "booking_uid": "qwertyui-123456", "room": "101", "account": "1234567"},
    "CHECKOUT": {**_HEAD, **SPEC_CREDENTIALS, "action": "CHECKOUT", "property": "myhotel",
                 "booking_uid": "qwertyui-123456", "room": "101", "account": "1234567"},
    "CALL": {**_HEAD, **SPEC_CREDENTIALS, "action": "CALL", "property": "myhotel", "room": "101", "call_type": "O",
             "line": "sip-12345", "number": "5555555", "response": 3, "duration": 12, "Price": 2.5},
    "WAKE": {**_HEAD, **SPEC_CREDENTIALS, "action": "WAKE", "property": "myhotel", "room": "101", "mode": "E",
             "uid": "12345", "waketime": "2015-01-02T08:00:00"},
    "MSGTXT": {**_HEAD, **SPEC_CREDENTIALS, "action": "MSGTXT", "property": "myhotel", "room": "101", "uid": 12345,
               "text": "I need help with my luggage"},
}

# README.md's XML example (xmlcodec.parse_request reads any root element, each child a field).
XML_REQUEST_EXAMPLE = (
    "<request><datetime>2015-01-01T10:11:12</datetime><user>user1</user>"
    "<usertoken>61e7c7371170a948eaf63fa578840025</usertoken><action>GET_REQUEST</action>"
    "<property>myhotel</property></request>"
)
XML_ANSWER_EXAMPLE = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                      "<response><code>0</code><description>OK</description></response>")

ANSWER_EXAMPLES: dict[str, dict[str, Any]] = {
    "ok": {"summary": "Processed; for GET_REQUEST: nothing pending", "value": {"code": 0, "description": "OK"}},
    "records": {"summary": "GET_REQUEST with pending records", "value": {
        "code": 0, "description": "OK", "ACTION_LIST": [PMS_RECORD_EXAMPLES["WAKE"], PMS_RECORD_EXAMPLES["DND"]]}},
    "bill": {"summary": "BILL_REQUEST", "value": {
        "code": 0, "description": "OK", "ITEM_LIST": [
            {"datetime": "2015-01-01T15:16:17", "description": "Water", "total": 2.5, "article": "WA"}],
        "bill_total": 2.5, "notes": "Taxes included"}},
    "invalid": {"summary": "An invalid field", "value": {
        "code": errors.CODE_INVALID_FIELD, "description": "POST: invalid field 'units': is required"}},
}


# --- the document -------------------------------------------------------------------------------------

def _json(schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"application/json": {"schema": schema, **extra}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": REF.format(model=name)}


def _response(description: str, content: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": content}


PROPERTY_PARAMETER = {
    "name": "property", "in": "path", "required": True,
    "description": "The property (hotel) id of the connector's configuration.",
    "schema": {"type": "string", "pattern": PROPERTY_ID_PATTERN}, "example": "myhotel",
}
ROOM_PARAMETER = {"name": "room", "in": "path", "required": True, "description": "The room name, as the PMS sends it.",
                  "schema": {"type": "string"}, "example": "101"}

GATEWAY_RESPONSES = {
    "429": _response("Throttled by API Gateway (the API's route throttling).", _json(_ref("GatewayMessage"))),
}


def _ingest_responses(ok: tuple[str, str, str], *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    status, description, schema = ok
    return {
        status: _response(description, _json(_ref(schema))),
        **(extra or {}),
        "401": _response("Missing or invalid ingest API key, or an unknown property (the same answer).",
                         _json(_ref("IngestError"), example={"error": "missing or invalid ingest API key"})),
        **GATEWAY_RESPONSES,
        "500": _response("Internal error (logged); or API Gateway's `{\"message\"}` when the function itself fails.",
                         _json({"anyOf": [_ref("RetryableError"), _ref("GatewayMessage")]})),
        "503": _response("Storage throttled or unavailable, or the configuration unreadable: nothing was "
                         "written, send the same request again.", _json(_ref("RetryableError"))),
    }


def _ingest_operations() -> dict[str, dict[str, Any]]:
    examples: dict[str, dict[str, Any]] = {action: {"summary": PMS_RECORD_NOTES[action].split(".")[0], "value": body}
                                           for action, body in PMS_RECORD_EXAMPLES.items()}
    examples["batch"] = {"summary": "Several records in one request",
                         "value": [PMS_RECORD_EXAMPLES["RS"], PMS_RECORD_EXAMPLES["DND"]]}
    bad_request = _response(
        "Invalid records (every problem listed in `issues`; nothing of the body was appended), or a body that "
        "is not JSON, an empty array or more than 100 records.",
        _json(_ref("IngestError"), example={"error": "1 invalid field(s)", "issues": [
            {"index": 0, "field": "GUEST_LIST[0].language", "reason": "must be an ISO 639-1 two-letter language code"}
        ]}))
    read = {"401", "429", "500", "503"}
    return {
        "POST /pms/{property}/events": {
            "operationId": "postEvents", "tags": ["PMS ingest"], "summary": "Push PMS records",
            "description": "The hotel PMS pushes one record or an array of up to 100 records of the spec's "
                           "\"PMS > pmslink\" section. They are validated against the spec's tables, and appended "
                           "atomically and in order to the property's queue for pmslink (GET_REQUEST), as the PMS "
                           "wrote them: only a missing `property` is filled in. A record naming another property "
                           "is refused. Each record is at most 64 KiB, the body at most 1 MiB. `Content-Type` "
                           "`application/json` (or `*+json`, or none).",
            "requestBody": {"required": True, "content": _json(_ref("IngestBody"), examples=examples)},
            "responses": _ingest_responses(("202", "Accepted.", "IngestAccepted"), extra={
                "400": bad_request,
                "413": _response("Body larger than 1 MiB (`{\"error\"}`), or over API Gateway's 10 MB "
                                 "(`{\"message\"}`).", _json({"anyOf": [_ref("IngestError"), _ref("GatewayMessage")]})),
                "415": _response("A `Content-Type` other than JSON.", _json(_ref("IngestError"))),
            }),
        },
        "GET /pms/{property}/inbound": {
            "operationId": "getInbound", "tags": ["PMS ingest"], "summary": "Page the inbound log",
            "description": "The requests pmslink posted (without credentials), oldest first, for a PMS that "
                           "prefers pulling to subscribing to the event bus.",
            "parameters": [
                {"name": "after", "in": "query", "required": False, "description": "Return entries after this seq.",
                 "schema": {"type": "integer", "minimum": 0, "maximum": 10**12, "default": 0}},
                {"name": "limit", "in": "query", "required": False, "description": "At most this many entries.",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 100}},
            ],
            "responses": _ingest_responses(("200", "A page of the inbound log.", "InboundPage"), extra={
                "400": _response("`after` or `limit` is not an integer in its range.", _json(_ref("IngestError"))),
            }),
        },
        "GET /pms/{property}/rooms": {
            "operationId": "getRooms", "tags": ["PMS ingest"], "summary": "Room states",
            "description": "Every room with state, by room name.",
            "responses": {k: v for k, v in _ingest_responses(("200", "The rooms.", "RoomList")).items()
                          if k in read | {"200"}},
        },
        "GET /pms/{property}/rooms/{room}": {
            "operationId": "getRoom", "tags": ["PMS ingest"], "summary": "One room's state",
            "description": "What the room's phone shows, its COS, room status, DND, MUR, WMSG and wake-ups.",
            "responses": _ingest_responses(("200", "The room.", "RoomView"), extra={
                "404": _response("No state for this room.", _json(_ref("IngestError"),
                                                                  example={"error": "no state for room '999'"})),
            }),
        },
    }


def _xml_content(description: str, example: str) -> dict[str, Any]:
    schema = {"type": "string", "description": description}
    return {kind: {"schema": schema, "example": example} for kind in ("application/xml", "text/xml")}


def _httppms_operation(*, in_path: bool) -> dict[str, Any]:
    examples = {action: {"summary": REQUEST_NOTES[action].split(".")[0].split(":")[0], "value": body}
                for action, body in REQUEST_EXAMPLES.items()}
    body_schema = _ref("HttppmsRequest") if in_path else {"allOf": [
        _ref("HttppmsRequest"),
        {"properties": {"property": {"type": "string", "minLength": 1}}, "required": ["property"]}]}
    xml_request = ("The same request as XML: any root element, each child element a field and its text the value "
                   "(numbers and booleans as text). An element with children is a list when its children share "
                   "one tag and there are several, or when its name is an ALL-CAPS `*_LIST`; otherwise a nested "
                   "object. Attributes are ignored; a repeated field, a DOCTYPE or an ENTITY is refused (code 200).")
    xml_answer = ("The answer as XML when the request was XML: root `<response>`, each field an element, list "
                  "items `<record>` (ACTION_LIST), `<guest>` (GUEST_LIST), `<item>` (ITEM_LIST); amounts with two "
                  "decimals; absent values omitted.")
    answer = {**_json(_ref("HttppmsAnswer"), examples=ANSWER_EXAMPLES),
              **_xml_content(xml_answer, XML_ANSWER_EXAMPLE)}
    where = ("the property in the URL (a body `property`, if any, must be the same)" if in_path
             else "the property named by the body's `property`")
    return {
        "operationId": "postHttppmsForProperty" if in_path else "postHttppms",
        "tags": ["HTTPPMS"],
        "summary": "HTTPPMS request for " + ("the URL's property" if in_path else "the body's property"),
        "description": (
            f"The char pmslink HTTPPMS Equipment Basic API, for {where}. Authentication per property: HTTP Basic, "
            "a fixed token in `usertoken`, or MD5 (`user` and `usertoken` = md5(user + datetime as YYYYMMDDHHNNSS "
            "+ password), accepted while `datetime` is within the property's window of its local time). Every "
            "processed request answers HTTP 200 with a `code` (0 OK, 1xx retry, 2xx do not retry), errors "
            "included; authentication failures answer HTTP 401. A retried identical request gets the first "
            "answer and is not stored or published again. JSON by default; XML when the `Content-Type` is "
            "`application/xml`, `text/xml` or `*+xml`, answered in XML. Any other `Content-Type` is read as "
            "JSON. Bodies over 256 KiB are answered code 206."),
        "security": [{"httppmsBasic": []}, {}],
        "requestBody": {"required": True, "description": "JSON (default) or XML.", "content": {
            **_json(body_schema, examples=examples), **_xml_content(xml_request, XML_REQUEST_EXAMPLE)}},
        "responses": {
            "200": _response("Processed: `code` 0, or an error code with a description naming the problem.", answer),
            "401": _response("Authentication failed: bad or missing credentials, an unknown property, or a URL "
                             "property that differs from the body's (the same answer for all).",
                             {**_json(_ref("HttppmsAuthFailed"),
                                      example={"code": 204, "description": "authentication failed"}),
                              **_xml_content("The same answer as XML.", '<?xml version="1.0" encoding="UTF-8"?>\n'
                                             "<response><code>204</code><description>authentication failed"
                                             "</description></response>")}),
            "413": _response("Body over API Gateway's 10 MB limit.", _json(_ref("GatewayMessage"))),
            **GATEWAY_RESPONSES,
            "500": _response("Internal error (logged): pmslink buffers the request and sends it again. API Gateway "
                             "answers `{\"message\"}` when the function itself fails.",
                             {**_json({"anyOf": [_ref("HttppmsInternalError"), _ref("GatewayMessage")]}),
                              **_xml_content("The same answer as XML.", '<?xml version="1.0" encoding="UTF-8"?>\n'
                                             "<response><code>100</code><description>internal error; retry later"
                                             "</description></response>")}),
        },
    }


def operations() -> dict[str, dict[str, Any]]:
    """Every route, as the template and the handlers name it ("POST /httppms"), with its operation."""
    return {
        **_ingest_operations(),
        "POST /httppms": _httppms_operation(in_path=False),
        "POST /httppms/{property}": _httppms_operation(in_path=True),
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pms-connector")
    except PackageNotFoundError:  # a Lambda layer without the package's metadata
        return "0.0.0"


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every HTTP route of template.yaml."""
    paths: dict[str, dict[str, Any]] = {}
    for key, operation in operations().items():
        method, path = key.split(" ", 1)
        item = paths.setdefault(path, {})
        params = re.findall(r"\{(\w+)\}", path)
        if params and "parameters" not in item:
            item["parameters"] = [{"property": PROPERTY_PARAMETER, "room": ROOM_PARAMETER}[p] for p in params]
        security = operation.pop("security", [{"ingestKey": []}])
        operation["responses"] = dict(sorted(operation["responses"].items()))
        item[method.lower()] = {**operation, "security": security}
    doc = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "pms-connector",
            "version": _version(),
            "summary": "Hotel PMS ingest API and char pmslink HTTPPMS server.",
            "description": (
                "A serverless connector between hotel PMSs, the char pmslink HTTPPMS API and Grandstream UCM "
                "IP-PBXs. The hotel PMS pushes its events to the ingest API (`/pms/{property}/...`, Bearer ingest "
                "key); pmslink polls them and posts its own requests on `/httppms`. Generated from the code by "
                f"`python -m pms_connector.openapi`; regenerate with `{REGENERATE}`."),
        },
        "servers": [
            {"url": "https://{api}.execute-api.{region}.amazonaws.com",
             "description": "The stack's HTTP API (output ApiUrl).",
             "variables": {"api": {"default": "api-id"}, "region": {"default": "eu-west-1"}}},
            {"url": "http://127.0.0.1:3000", "description": "The local runner (`make run`)."},
        ],
        "tags": [
            {"name": "PMS ingest", "description": "The hotel PMS pushes records and reads state (Bearer ingest key)."},
            {"name": "HTTPPMS", "description": "pmslink (or an integrated system) polls and posts (spec's auth)."},
        ],
        "paths": paths,
        "components": {
            "schemas": {**model_schemas(), **answer_schemas()},
            "securitySchemes": {
                "ingestKey": {"type": "http", "scheme": "bearer",
                              "description": "The property's `ingest.api_key`: `Authorization: Bearer <key>`."},
                "httppmsBasic": {"type": "http", "scheme": "basic",
                                 "description": "For a property with `httppms.auth: basic` (RFC 7617). With "
                                                "`token` or `md5` the credentials are in the body instead "
                                                "(`usertoken`, and `user` for MD5)."},
            },
        },
    }
    result: dict[str, Any] = json.loads(json.dumps(doc))  # plain JSON values, no object shared by two places
    return result


def render(doc: dict[str, Any]) -> str:
    """The committed form: indent 2, UTF-8 as is, keys in the order the document builds them, newline."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def check(path: Path) -> list[str]:
    """Problems of the committed file: empty when it equals the generated document."""
    expected = render(document())
    try:
        actual = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [f"{path} does not exist; generate it with `{REGENERATE}`"]
    if actual == expected:
        return []
    diff = list(difflib.unified_diff(actual.splitlines(), expected.splitlines(), f"{path} (committed)",
                                     "generated from the code", lineterm="", n=1))
    shown = diff[:60]
    more = [f"... and {len(diff) - len(shown)} more diff lines"] if len(diff) > len(shown) else []
    return [f"{path} is out of date with the code; regenerate it with `{REGENERATE}`", *shown, *more]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pms_connector.openapi",
                                     description="The OpenAPI document of the connector's HTTP API.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="PATH", type=Path, help="write the document to PATH")
    group.add_argument("--check", metavar="PATH", type=Path, help="exit 1 when PATH differs from the document")
    args = parser.parse_args(argv)
    if args.check is not None:
        problems = check(args.check)
        for line in problems:
            print(line, file=sys.stderr)
        return 1 if problems else 0
    text = render(document())
    if args.write is not None:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
