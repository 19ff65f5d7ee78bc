"""The PMS ingest API logic: validate a batch of PMS records and append it to the property's FIFO.

A body is one record or a JSON array of at most 100; it is accepted or refused whole, and every invalid
field of every record is listed in the refusal. Accepted records are appended atomically and in order, as
the PMS wrote them (nothing renamed, nothing dropped); only ``property`` is filled in when missing, since
pmslink needs it in multi-hotel scenarios.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pms_connector import wire
from pms_connector.config import PropertyConfig
from pms_connector.errors import InvalidRecords, MalformedRequest
from pms_connector.observability import logger, metrics
from pms_connector.records import validate_pms_record
from pms_connector.state import StateStore
from pms_connector.store import ConnectorStore, InboundEntry, dumps
from pms_connector.wakeups import past_wake_issue

MAX_RECORDS = 100
MAX_BODY_BYTES = 1_048_576
MAX_RECORD_BYTES = 65_536
DAY = 86_400


@dataclass(frozen=True)
class IngestResult:
    sequence: list[int]


def parse_body(raw: bytes) -> list[Any]:
    """The records of an ingest body: one JSON object or an array of them."""
    try:
        data = wire.loads(raw)
    except wire.WireError as exc:
        if not exc.path:
            raise MalformedRequest(f"body: {exc}") from None
        # A value JSON cannot carry (NaN, 1e999, a lone surrogate...): named like any invalid field.
        index, path = (exc.path[0], exc.path[1:]) if isinstance(exc.path[0], int) else (0, exc.path)
        raise InvalidRecords([{"index": index, "field": wire.field_name(path) or "(record)",
                               "reason": exc.reason}]) from None
    records = data if isinstance(data, list) else [data]
    if not records:
        raise MalformedRequest("body is an empty array; send at least one record")
    if len(records) > MAX_RECORDS:
        raise MalformedRequest(f"body holds {len(records)} records; at most {MAX_RECORDS} per request")
    return records


def validate_records(prop: PropertyConfig, records: list[Any], now: datetime | None = None) -> list[dict[str, Any]]:
    """Every problem of every record as {index, field, reason}; empty when the batch is valid."""
    issues: list[dict[str, Any]] = []
    for index, record in enumerate(records):
        found = validate_pms_record(record)
        for field, reason in found:
            issues.append({"index": index, "field": field, "reason": reason})
        if not found and prop.ucm is not None and _is_wake_set(record):
            # A wake-up the UCM could never ring cannot be supervised: refused, not silently reported F.
            # (Without a UCM the connector only relays WAKE records to pmslink, as the spec's examples.)
            problem = past_wake_issue(prop, str(record["waketime"]), now or datetime.now(UTC))
            if problem:
                issues.append({"index": index, "field": "waketime", "reason": problem})
        if isinstance(record, Mapping):
            named = record.get("property")
            if named is not None and named != prop.id:
                issues.append({"index": index, "field": "property",
                               "reason": "does not match the property in the URL"})
            # pmslink may poll in XML: a record must fit that format too, or it could not be delivered.
            issues += [{"index": index, "field": field, "reason": reason}
                       for field, reason in wire.record_issues(record)]
            if len(dumps(record).encode()) > MAX_RECORD_BYTES:
                issues.append({"index": index, "field": "(record)",
                               "reason": f"larger than {MAX_RECORD_BYTES} bytes"})
    return issues


def _is_wake_set(record: Any) -> bool:
    return (isinstance(record, Mapping) and str(record.get("action", "")).strip().upper() == "WAKE"
            and str(record.get("mode", "")).strip().upper() == "S")


def ingest(store: StateStore, prop: PropertyConfig, raw: bytes) -> IngestResult:
    """Validate and append a PMS body to the property's FIFO; InvalidRecords lists every problem."""
    records = parse_body(raw)
    issues = validate_records(prop, records)
    if issues:
        logger.info("ingest refused", extra={"records": len(records), "issues": len(issues)})
        raise InvalidRecords(issues)
    stamped = [record if "property" in record else {**record, "property": prop.id} for record in records]
    retention = (prop.httppms.queue_retention_days + prop.httppms.archive_days) * DAY
    # One transaction for the records, their state and their UCM commands (order-keeping parts when too big),
    # with the request's marker: the same body sent again (a 503 or a timeout whose write went in after all)
    # is answered as the first time and appends nothing. The request's correlation id goes with its UCM
    # commands, to the dispatcher's log lines.
    sequence, repeated = store.ingest_request(prop, stamped, key=request_key(stamped), retention_seconds=retention,
                                              correlation_id=logger.get_correlation_id())
    if repeated:
        metrics.add_metric(name="DuplicateRequests", unit="Count", value=1)
        logger.info("ingest request sent again: its first answer", extra={"records": len(sequence)})
        return IngestResult(sequence)
    metrics.add_metric(name="EventsIngested", unit="Count", value=len(sequence))
    logger.info("records ingested", extra={"records": len(sequence), "first_seq": sequence[0]})
    return IngestResult(sequence)


def request_key(records: list[dict[str, Any]]) -> str:
    """The identity of an ingest request: its records, canonical. Every record carries the date-time of its
    action, so a PMS that means an action again sends another body."""
    canonical = json.dumps(records, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def inbound_page(
    store: ConnectorStore, prop: PropertyConfig, *, after: int, limit: int
) -> dict[str, Any]:
    """A page of the inbound log for a PMS that pulls instead of subscribing to the bus."""
    entries = store.list_inbound(prop.id, after=after, limit=limit)
    return {
        "items": [_entry(e) for e in entries],
        "next": entries[-1].seq if entries else after,
    }


def _entry(entry: InboundEntry) -> dict[str, Any]:
    return {"seq": entry.seq, "action": entry.action, "received_at": entry.received_at,
            "request": entry.request}
