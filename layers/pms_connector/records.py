"""The char pmslink HTTPPMS records and requests, named after the spec, with the spec's field names.

Two families:
- PMS records (PMS > pmslink, returned by GET_REQUEST): BOOKING, RS, MUR, COS, WMSG, WAKE, DND, MSGTXT;
- requests from integrated systems (pmslink > PMS): GET_REQUEST, POST, RS, MUR, DND, BILL_REQUEST,
  CHECKOUT, CALL, WAKE, MSGTXT.

The spec's tables and its JSON examples disagree in places; every spelling is accepted on input
(``status``/``roomstatus``, ``price``/``Price``, ``acontact``/``allow_contact``, ``idcard``/``identity_card``,
``uid`` as string or number, an action with spaces such as ``" BILL_REQUEST "``). The models only validate:
records reach pmslink as the PMS wrote them, so callers keep the original mapping.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import datetime as _dt
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
_DATETIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}")  # ASCII digits only
_LANGUAGE_RE = re.compile(r"[A-Za-z]{2}")


def parse_spec_datetime(value: str) -> _dt:
    """Parse the spec's ``YYYY-MM-DDTHH:NN:SS`` (property-local, naive). Raises ValueError."""
    if not isinstance(value, str) or not _DATETIME_RE.fullmatch(value):
        raise ValueError("must be a date-time in the format YYYY-MM-DDTHH:NN:SS")
    try:
        return _dt.strptime(value, DATETIME_FORMAT)
    except ValueError:
        raise ValueError("is not a valid calendar date-time") from None


def _check_datetime(value: str) -> str:
    parse_spec_datetime(value)
    return value


def _check_language(value: str) -> str:
    if not _LANGUAGE_RE.fullmatch(value):
        raise ValueError("must be an ISO 639-1 two-letter language code")
    return value


def _uid_to_str(value: object) -> object:
    # MSGTXT's table says String, its JSON example sends a number: both are accepted.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _no_bool(value: object) -> object:
    # pydantic's lax mode reads true/false as 1/0; the spec's Number fields are numbers, never booleans.
    if isinstance(value, bool):
        raise ValueError("must be a number, not true or false")
    return value


SpecDateTime = Annotated[str, AfterValidator(_check_datetime)]
Count = Annotated[int, Field(ge=0), BeforeValidator(_no_bool)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=256)]
LongText = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
Room = Annotated[str, StringConstraints(min_length=1, max_length=32)]
Uid = Annotated[str, BeforeValidator(_uid_to_str), StringConstraints(min_length=1, max_length=128)]
Language = Annotated[str, AfterValidator(_check_language)]
Amount = Annotated[Decimal, Field(allow_inf_nan=False, max_digits=14, decimal_places=4)]


# defer_build: a request uses one or two of these models, so each is built on first use, not at import
# (a measurable part of the Lambda cold start).
_MODEL_CONFIG = ConfigDict(extra="allow", populate_by_name=True, frozen=True, defer_build=True)


class SpecModel(BaseModel):
    """Common header of every record and request."""

    model_config = _MODEL_CONFIG

    datetime: SpecDateTime
    action: str
    property: Text | None = None


# --- PMS > pmslink: records returned by GET_REQUEST --------------------------------------------


class Guest(BaseModel):
    """GUEST OBJECT of a BOOKING's GUEST_LIST."""

    model_config = _MODEL_CONFIG

    uid: Uid
    main: bool | None = None
    adult: bool | None = None
    account: Text | None = None
    title: Text | None = None
    name: Text
    surname: Text
    gender: Text | None = None
    level: Text | None = None
    language: Language
    email: Text | None = None
    mobile: Text | None = None
    acontact: bool | None = Field(None, validation_alias=AliasChoices("acontact", "allow_contact"))
    passport: Text | None = None
    idcard: Text | None = Field(None, validation_alias=AliasChoices("idcard", "identity_card"))
    cos_pbx: Text | None = None
    cos_tv: Text | None = None
    cos_inet: Text | None = None


BookingStatus = Literal["expected", "cancel", "noshow", "checkin", "checkout"]


class BookingRecord(SpecModel):
    booking_uid: Text
    locator: Text | None = None
    status: BookingStatus
    # Cross-field rules are field validators (not a model validator) so they are reported together with
    # every other problem of the record, which pydantic skips model validators for.
    room: Room | None = Field(None, validate_default=True)
    account: Text | None = None
    arrival: SpecDateTime
    departure: SpecDateTime
    level: Text | None = None
    cos_pbx: Text | None = None
    cos_tv: Text | None = None
    cos_inet: Text | None = None
    pax: Annotated[int, Field(ge=0, le=99), BeforeValidator(_no_bool)] | None = None
    GUEST_LIST: Annotated[list[Guest], Field(max_length=50)] | None = None

    @field_validator("room")
    @classmethod
    def _room_for_stays(cls, room: str | None, info: ValidationInfo) -> str | None:
        status = info.data.get("status")
        if status in ("checkin", "checkout") and not room:
            raise _field_error("room", f"is required when status is '{status}'")
        return room

    @field_validator("departure")
    @classmethod
    def _departure_after_arrival(cls, departure: str, info: ValidationInfo) -> str:
        arrival = info.data.get("arrival")
        if arrival is not None and departure < arrival:  # fixed-width format: string order is time order
            raise _field_error("departure", "must not be before arrival")
        return departure

    @field_validator("GUEST_LIST")
    @classmethod
    def _account_when_shared(cls, guests: list[Guest] | None, info: ValidationInfo) -> list[Guest] | None:
        if guests and len(guests) > 1 and not info.data.get("account"):
            raise _field_error("account", "is required when the booking has more than one guest")
        return guests


class RoomStatusRecord(SpecModel):
    room: Room
    status: Text = Field(validation_alias=AliasChoices("status", "roomstatus"))


class MurRecord(SpecModel):
    room: Room
    active: bool


class CosRecord(SpecModel):
    room: Room
    cos_pbx: Text
    cos_tv: Text
    cos_inet: Text


class WmsgRecord(SpecModel):
    room: Room
    active: bool


class WakeRecord(SpecModel):
    room: Room
    mode: Literal["S", "C"]
    uid: Uid
    waketime: SpecDateTime


class DndRecord(SpecModel):
    room: Room
    active: bool


class MsgTxtRecord(SpecModel):
    room: Room
    uid: Uid | None = None
    text: LongText


PMS_RECORDS: dict[str, type[SpecModel]] = {
    "BOOKING": BookingRecord,
    "RS": RoomStatusRecord,
    "MUR": MurRecord,
    "COS": CosRecord,
    "WMSG": WmsgRecord,
    "WAKE": WakeRecord,
    "DND": DndRecord,
    "MSGTXT": MsgTxtRecord,
}


# --- pmslink > PMS: requests from integrated systems -------------------------------------------


class AuthenticatedRequest(SpecModel):
    user: Text | None = None
    usertoken: Text | None = None


class GetRequest(AuthenticatedRequest):
    # Connector extension for `confirm` delivery: the batch id of the previous answer.
    confirm: Text | None = None


class PostRequest(AuthenticatedRequest):
    booking_uid: Text | None = None
    room: Room
    account: Text | None = None
    post_type: Annotated[str, StringConstraints(min_length=1, max_length=8)]
    article: Text
    description: Text | None = None
    units: Annotated[Decimal, Field(gt=0, allow_inf_nan=False, max_digits=10, decimal_places=3)]
    price: Amount | None = Field(None, validation_alias=AliasChoices("price", "Price"))
    amount: Amount | None = Field(None, validation_alias=AliasChoices("amount", "Amount"))
    tax: Text | None = None

    @model_validator(mode="after")
    def _price_or_amount(self) -> PostRequest:
        if self.price is None and self.amount is None:
            raise _field_error("amount", "either 'amount' or 'price' is required")
        return self

    def total(self) -> Decimal:
        """The charge, taxes included: ``amount`` when sent, else ``units * price``."""
        if self.amount is not None:
            return self.amount
        assert self.price is not None  # the validator guarantees one of them
        return self.units * self.price


class RoomStatusRequest(AuthenticatedRequest):
    room: Room
    status: Text = Field(validation_alias=AliasChoices("status", "roomstatus"))
    maid: Text | None = None


class MurRequest(AuthenticatedRequest):
    room: Room
    active: bool


class DndRequest(AuthenticatedRequest):
    room: Room
    active: bool


class BillRequest(AuthenticatedRequest):
    booking_uid: Text | None = None
    room: Room
    account: Text | None = None


class CheckoutRequest(BillRequest):
    pass


class CallRequest(AuthenticatedRequest):
    room: Room
    call_type: Literal["O", "I", "L"]
    line: Text | None = None
    number: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    response: Count | None = None
    duration: Count
    units: Count | None = None
    price: Amount | None = Field(None, validation_alias=AliasChoices("price", "Price"))


class WakeRequest(AuthenticatedRequest):
    room: Room
    mode: Literal["S", "C", "E", "F"]
    uid: Uid | None = None
    waketime: SpecDateTime


class MsgTxtRequest(AuthenticatedRequest):
    room: Room
    uid: Uid | None = None
    text: LongText


INBOUND_REQUESTS: dict[str, type[AuthenticatedRequest]] = {
    "GET_REQUEST": GetRequest,
    "POST": PostRequest,
    "RS": RoomStatusRequest,
    "MUR": MurRequest,
    "DND": DndRequest,
    "BILL_REQUEST": BillRequest,
    "CHECKOUT": CheckoutRequest,
    "CALL": CallRequest,
    "WAKE": WakeRequest,
    "MSGTXT": MsgTxtRequest,
}

CREDENTIAL_FIELDS = frozenset({"user", "usertoken"})


_M = TypeVar("_M", bound=BaseModel)


# --- validation helpers -------------------------------------------------------------------------


class _FieldError(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _field_error(field: str, reason: str) -> _FieldError:
    return _FieldError(field, reason)


def normalize_action(value: object) -> str | None:
    """``" bill_request "`` → ``"BILL_REQUEST"``; None when the action is missing or not a string."""
    if not isinstance(value, str):
        return None
    return value.strip().upper() or None


def field_issues(exc: ValidationError) -> list[tuple[str, str]]:
    """(field path, reason) for every error of a pydantic ValidationError, without echoing input values."""
    issues: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False, include_input=False):
        ctx_error = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_error, _FieldError):
            issues.append((ctx_error.field, ctx_error.reason))
            continue
        path = _format_loc(err["loc"])
        reason = "is required" if err["type"] == "missing" else _reason(err["msg"])
        issues.append((path or "(record)", reason))
    return issues


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "tagged-union", "json-or-python")):
            continue
        else:
            out += f".{part}" if out else part
    return out


def _reason(msg: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg[0].lower() + msg[1:] if msg else msg


def validate(model: type[_M], data: Mapping[str, Any]) -> tuple[_M | None, list[tuple[str, str]]]:
    """``data`` validated as ``model``, or None and every problem as (field, reason).

    A field the spec spells two ways (``status``/``roomstatus``...) may be sent under both names, but then
    they must agree: the other name reaches pmslink or the bus as sent, so it cannot go unvalidated."""
    issues = _spelling_issues(model, data, "")
    try:
        instance = model.model_validate(data)
    except ValidationError as exc:
        return None, issues + field_issues(exc)
    return (None, issues) if issues else (instance, [])


def _spelling_issues(model: type[BaseModel], data: Mapping[str, Any], prefix: str) -> list[tuple[str, str]]:
    issues = []
    for names in _spellings(model):
        sent = [name for name in names if name in data]
        for other in sent[1:]:
            if data[other] != data[sent[0]] or type(data[other]) is not type(data[sent[0]]):
                issues.append((f"{prefix}{other}", f"disagrees with '{sent[0]}', its other spelling: send one, "
                                                   "or both with the same value"))
    guests = data.get("GUEST_LIST") if model is BookingRecord else None
    if isinstance(guests, list):
        for index, guest in enumerate(guests):
            if isinstance(guest, Mapping):
                issues += _spelling_issues(Guest, guest, f"{prefix}GUEST_LIST[{index}].")
    return issues


@functools.cache
def _spellings(model: type[BaseModel]) -> tuple[tuple[str, ...], ...]:
    """The names of each field that has more than one (its AliasChoices)."""
    return tuple(tuple(str(c) for c in info.validation_alias.choices)
                 for info in model.model_fields.values() if isinstance(info.validation_alias, AliasChoices))


def validate_pms_record(record: object) -> list[tuple[str, str]]:
    """Problems of one PMS record as (field, reason); an empty list means valid."""
    if not isinstance(record, Mapping):
        return [("(record)", "must be a JSON object")]
    action = normalize_action(record.get("action"))
    if action is None:
        return [("action", "is required")]
    model = PMS_RECORDS.get(action)
    if model is None:
        return [("action", f"unknown action '{_clip(record.get('action'))}'; expected one of "
                 + ", ".join(PMS_RECORDS))]
    return validate(model, record)[1]


def _clip(value: Any, limit: int = 32) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "…"
