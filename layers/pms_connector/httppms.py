"""The HTTPPMS server logic: what the connector answers to pmslink (or any integrated system).

``handle_request`` takes the decoded body (JSON or XML, already a mapping), the property from the URL if
any and the Authorization header, and returns the HTTPPMS answer body. It raises the project's errors,
which errors.py turns into codes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from pms_connector import fifo
from pms_connector.auth import authenticate_httppms
from pms_connector.bus import MAX_EVENT_BYTES, EventPublisher, event_size
from pms_connector.config import PropertyConfig
from pms_connector.directory import PropertyDirectory
from pms_connector.errors import (
    CODE_CHECKOUT_DECLINED,
    OK,
    AuthenticationFailed,
    DeliveryConflict,
    InvalidField,
    MalformedRequest,
    PayloadTooLarge,
    UnknownAction,
)
from pms_connector.observability import logger, metric_by, metrics
from pms_connector.records import (
    CREDENTIAL_FIELDS,
    INBOUND_REQUESTS,
    AuthenticatedRequest,
    BillRequest,
    CallRequest,
    GetRequest,
    PostRequest,
    normalize_action,
    validate,
)
from pms_connector.store import MAX_SEQ, ConnectorStore, DuplicateRequest

DAY = 86_400
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Dependencies:
    directory: PropertyDirectory
    store: ConnectorStore
    publisher: EventPublisher
    clock: Callable[[], datetime]  # aware, UTC


def resolve_property(body: Mapping[str, Any], path_property: str | None) -> str:
    """The property a request is for: the URL's, else the body's ``property``."""
    in_body = body.get("property")
    if path_property is not None:
        if in_body is not None and in_body != path_property:
            raise AuthenticationFailed()  # same answer as any other credential mismatch
        return path_property
    if not isinstance(in_body, str) or not in_body:
        raise InvalidField("property", "is required (or use the URL /httppms/{property})")
    return in_body


def handle_request(
    body: object, *, path_property: str | None, authorization: str | None, deps: Dependencies
) -> dict[str, Any]:
    """Authenticate, validate and process one HTTPPMS request; returns the answer body."""
    if not isinstance(body, Mapping):
        raise MalformedRequest("the request body must be a JSON object (or an XML document)")
    property_id = resolve_property(body, path_property)
    prop = deps.directory.get(property_id)
    now = deps.clock()
    authenticate_httppms(prop, body, authorization, now)
    assert prop is not None  # authenticate_httppms refuses unknown properties
    logger.append_keys(property=prop.id)

    action = normalize_action(body.get("action"))
    if action is None:
        raise InvalidField("action", "is required")
    model = INBOUND_REQUESTS.get(action)
    if model is None:
        raise UnknownAction(f"unknown action '{str(body.get('action'))[:40]}'; expected one of "
                            + ", ".join(INBOUND_REQUESTS))
    logger.append_keys(action=action)
    request, issues = validate(model, body)
    if request is None:
        field, reason = issues[0]
        more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
        raise InvalidField(field, reason + more, action=action)

    if isinstance(request, GetRequest):
        return _get_request(prop, request, deps, now)
    return _inbound(prop, action, body, request, deps, now)


def _get_request(prop: PropertyConfig, request: GetRequest, deps: Dependencies, now: datetime) -> dict[str, Any]:
    delivery = fifo.get_request(
        deps.store, prop.id, mode=prop.httppms.delivery, confirm=request.confirm, now=now.timestamp()
    )
    if delivery.records:
        metrics.add_metric(name="RecordsDelivered", unit="Count", value=len(delivery.records))
    if delivery.records or request.confirm:
        logger.info("get_request answered", extra={"records": len(delivery.records), "batch": delivery.batch_id,
                                                   "confirmed": request.confirm})
    else:  # pmslink polls every few seconds: an empty answer writes no log line and no metric (both billed)
        logger.debug("get_request answered", extra={"records": 0})
    answer: dict[str, Any] = {"code": OK, "description": "OK"}
    if delivery.records:
        answer["ACTION_LIST"] = [r.record for r in delivery.records]
        if delivery.batch_id:
            answer["batch"] = delivery.batch_id
    return answer


def _inbound(
    prop: PropertyConfig,
    action: str,
    body: Mapping[str, Any],
    request: AuthenticatedRequest,
    deps: Dependencies,
    now: datetime,
) -> dict[str, Any]:
    stripped = {k: v for k, v in body.items() if k not in CREDENTIAL_FIELDS}
    stripped.setdefault("property", prop.id)
    request_id = request_fingerprint(prop.id, stripped)
    # Refused before it is stored: a request whose event the bus cannot take would be answered 102 forever.
    # (The body limit alone does not see to it: the event wraps the request, and an XML body's text can
    # grow when written as JSON.)
    size = event_size(action, _event(prop, MAX_SEQ, request_id, stripped))
    if size > MAX_EVENT_BYTES:
        raise PayloadTooLarge(f"{action}: the request makes a {size}-byte event; the event bus takes "
                              f"{MAX_EVENT_BYTES} bytes at most")
    answer = _answer(prop, request, deps)
    metrics.add_metric(name="InboundRequests", unit="Count", value=1)
    metric_by("InboundRequests", 1, action=action)
    try:
        seq = deps.store.store_inbound(
            prop.id,
            request_id=request_id,
            action=action,
            request=stripped,
            answer=answer,
            retention_seconds=prop.httppms.queue_retention_days * DAY,
            charge=_charge(request),
            charge_retention_seconds=prop.billing.charge_retention_days * DAY,
        )
    except DuplicateRequest:
        return _repeat(prop, action, request_id, deps)
    _publish(prop, action, seq, request_id, stripped, deps)
    logger.info("inbound request stored", extra={"seq": seq, "code": answer["code"]})
    return answer


def _repeat(prop: PropertyConfig, action: str, request_id: str, deps: Dependencies) -> dict[str, Any]:
    """A retried identical request: the first answer again, published only if it never was."""
    stored = deps.store.get_answer(prop.id, request_id)
    if stored is None:  # expired between the two calls: tell the client to try again
        raise DeliveryConflict("the same request is being processed; retry")
    entry = deps.store.get_inbound(prop.id, stored.seq)
    if entry is not None and entry.publish_pending:
        _publish(prop, action, entry.seq, request_id, entry.request, deps)
    metrics.add_metric(name="DuplicateRequests", unit="Count", value=1)
    logger.info("duplicate request answered from the first answer", extra={"seq": stored.seq})
    return stored.answer


def _publish(
    prop: PropertyConfig, action: str, seq: int, request_id: str, request: Mapping[str, Any], deps: Dependencies
) -> None:
    deps.publisher.publish(action, _event(prop, seq, request_id, request))
    deps.store.mark_published(prop.id, seq)


def _event(prop: PropertyConfig, seq: int, request_id: str, request: Mapping[str, Any]) -> dict[str, Any]:
    """The bus event's detail for an inbound request."""
    return {"property": prop.id, "seq": seq, "request_id": request_id, "request": dict(request)}


def request_fingerprint(property_id: str, request: Mapping[str, Any]) -> str:
    """Identity of a request for dedupe: property + content without credentials."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(f"{property_id}\n{canonical}".encode()).hexdigest()


def _answer(prop: PropertyConfig, request: AuthenticatedRequest, deps: Dependencies) -> dict[str, Any]:
    action = normalize_action(request.action)
    if action == "BILL_REQUEST":
        assert isinstance(request, BillRequest)
        return _bill(prop, request, deps)
    if action == "CHECKOUT":
        policy = prop.checkout
        if policy.policy == "accept":
            return {"code": OK, "description": "OK", "notes": policy.accept_message}
        return {
            "code": CODE_CHECKOUT_DECLINED,
            "description": "CHECKOUT: express checkout is not available at this property",
            "notes": policy.decline_message,
        }
    return {"code": OK, "description": "OK"}


def _charge(request: AuthenticatedRequest) -> dict[str, Any] | None:
    """The bill line a POST (or a priced CALL) adds to the room."""
    if isinstance(request, PostRequest):
        return {
            "room": request.room,
            "datetime": request.datetime,
            "booking_uid": request.booking_uid,
            "account": request.account,
            "article": request.article,
            "description": request.description or request.article,
            "total": str(request.total().quantize(CENT)),
        }
    if isinstance(request, CallRequest) and request.price is not None:
        return {
            "room": request.room,
            "datetime": request.datetime,
            "article": "CALL",
            "description": f"Phone call ({request.duration} s)",
            "total": str(request.price.quantize(CENT)),
        }
    return None


def _bill(prop: PropertyConfig, request: BillRequest, deps: Dependencies) -> dict[str, Any]:
    """ITEM_LIST and bill_total from the charges held for the booking / account / room, within the stay."""
    items = []
    total = Decimal(0)
    first_day, last_day = _stay(prop, request, deps.store)
    for charge in deps.store.charges(prop.id, request.room):
        if not _matches(charge.booking_uid, request.booking_uid) or not _matches(charge.account, request.account):
            continue
        day = charge.datetime[:10]  # the spec's local YYYY-MM-DD: string order is date order
        if (first_day and day < first_day) or (last_day and day > last_day):
            continue  # an earlier (or later) guest's stay in the same room
        amount = Decimal(charge.total)
        total += amount
        item: dict[str, Any] = {"datetime": charge.datetime, "description": charge.description,
                                "total": float(amount)}
        if charge.article:
            item["article"] = charge.article
        items.append(item)
    return {
        "code": OK,
        "description": "OK",
        "ITEM_LIST": items,
        "bill_total": float(total.quantize(CENT)),
        "notes": prop.billing.notes,
    }


def _stay(prop: PropertyConfig, request: BillRequest, store: ConnectorStore) -> tuple[str | None, str | None]:
    """First and last day of the stay the bill is for: the named booking, else the room's booking with the
    named account, else the booking the room's phone shows. (None, None) when no booking is known."""
    # Room and booking state only here: pmslink's polls, which start most containers, never load it.
    from pms_connector.state import StateStore

    if not isinstance(store, StateStore):
        store = StateStore(store.table, client=store.client)
    uid = request.booking_uid
    if uid is None:
        room = store.room(prop.id, request.room)
        occupants = room.occupants if room else ()
        chosen = next((o for o in occupants if request.account and o.display.get("account") == request.account),
                      occupants[0] if occupants else None)
        uid = chosen.booking_uid if chosen else None
    booking = store.booking(prop.id, uid) if uid else None
    if booking is None:
        return None, None
    arrival = str(booking.record.get("arrival") or "")[:10] or None
    departure = None if booking.in_house else (str(booking.record.get("departure") or "")[:10] or None)
    return arrival, departure


def _matches(held: str | None, asked: str | None) -> bool:
    # A charge belongs to the bill unless both sides name a booking (or account) and the names differ.
    return held is None or asked is None or held == asked
