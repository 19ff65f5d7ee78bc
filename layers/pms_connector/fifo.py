"""GET_REQUEST delivery from a property's FIFO, in ``remove`` or ``confirm`` mode.

The FIFO is a log with a cursor (see store.py). ``remove``: the records returned leave the queue by a
conditional cursor move; they stay in the table as the delivery archive until their TTL. ``confirm``: the
answer carries a batch id and the same batch is answered again until a GET_REQUEST confirms it; the next
batch is then cut from the records after it.

Two pollers at the same moment read the same cursor; only one conditional write wins and the other starts
over from the new cursor, so no record is delivered twice and none is skipped. Only the contiguous run of
sequence numbers after the cursor is delivered: a gap is a transaction still becoming visible and is waited
for, unless the records after it are older than SETTLE_SECONDS, in which case the gap is records that expired.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace

from pms_connector.errors import DeliveryConflict, StorageBusy, UnknownBatch
from pms_connector.observability import logger
from pms_connector.store import ConnectorStore, Cursor, CursorMoved, QueuedRecord

MAX_RECORDS = 100  # the spec's limit per GET_REQUEST answer
SETTLE_SECONDS = 60
CLAIM_ATTEMPTS = 4


@dataclass(frozen=True)
class Delivery:
    records: list[QueuedRecord]
    batch_id: str | None = None


def deliverable(after: int, records: Sequence[QueuedRecord], now: float) -> tuple[list[QueuedRecord], int]:
    """The records to deliver and the new cursor position, from records read after ``after``.

    Expired records are passed over (the cursor moves past them) but not delivered.
    """
    out: list[QueuedRecord] = []
    position = after
    for record in records:
        if record.seq != position + 1:
            settled = record.ingested_at <= now - SETTLE_SECONDS
            if position != after or not settled:
                break  # a gap in the middle, or a fresh one: wait for it to fill
            logger.warning("fifo gap skipped", extra={"after": position, "next": record.seq})
        position = record.seq
        if record.expires_at > now:
            out.append(record)
    return out, position


def get_request(
    store: ConnectorStore,
    property_id: str,
    *,
    mode: str,
    confirm: str | None,
    now: float,
    limit: int = MAX_RECORDS,
) -> Delivery:
    """Answer a GET_REQUEST: the next records of the property's FIFO, at most ``limit``."""
    for _ in range(CLAIM_ATTEMPTS):
        try:
            if mode == "confirm":
                return _confirm_mode(store, property_id, confirm, now, limit)
            return _remove_mode(store, property_id, now, limit)
        except CursorMoved:
            continue
    raise DeliveryConflict("another GET_REQUEST is being served for this property; retry")


def _remove_mode(store: ConnectorStore, property_id: str, now: float, limit: int) -> Delivery:
    cursor = store.get_cursor(property_id)
    records, position = deliverable(cursor.delivered, store.read_fifo(property_id, after=cursor.delivered,
                                                                       limit=limit), now)
    if position != cursor.delivered:
        claim = secrets.token_hex(8)
        try:
            store.save_cursor(property_id, cursor, replace(cursor, delivered=position, claim=claim))
        except StorageBusy:
            # The write may have been applied and only its answer lost (a timeout): then these records have
            # left the queue and are ours to deliver, or nobody ever would. The claim tells our write apart.
            if store.get_cursor(property_id).claim != claim:
                raise
            logger.info("cursor move confirmed after a lost answer", extra={"delivered": position})
    return Delivery(records)


def _confirm_mode(
    store: ConnectorStore, property_id: str, confirm: str | None, now: float, limit: int
) -> Delivery:
    cursor = store.get_cursor(property_id)
    moved = cursor
    if confirm is not None:
        if confirm == cursor.batch_id:
            assert cursor.batch_last is not None
            moved = replace(cursor, delivered=cursor.batch_last, batch_id=None, batch_last=None,
                            last_confirmed=confirm)
        elif confirm != cursor.last_confirmed:  # a repeated confirm of the last batch is harmless
            raise UnknownBatch(f"GET_REQUEST: invalid field 'confirm': unknown batch id '{confirm[:40]}'")
    if moved.batch_id is not None:
        assert moved.batch_last is not None
        span = moved.batch_last - moved.delivered
        batch = store.read_fifo(property_id, after=moved.delivered, limit=span)
        records, _ = deliverable(moved.delivered, batch, now)
        return Delivery(records, moved.batch_id)
    records, position = deliverable(
        moved.delivered, store.read_fifo(property_id, after=moved.delivered, limit=limit), now
    )
    if not records:
        if moved != cursor or position != moved.delivered:
            store.save_cursor(property_id, cursor, replace(moved, delivered=position))
        return Delivery([])
    batch_id = f"b{records[-1].seq}-{secrets.token_hex(6)}"
    store.save_cursor(property_id, cursor, replace(moved, batch_id=batch_id, batch_last=position))
    return Delivery(records, batch_id)


def replay(store: ConnectorStore, property_id: str, from_seq: int) -> Cursor:
    """Operator action: deliver again every archived record from ``from_seq`` on (moves the cursor back)."""
    for _ in range(CLAIM_ATTEMPTS):
        cursor = store.get_cursor(property_id)
        target = max(0, min(from_seq - 1, cursor.delivered))
        new = Cursor(delivered=target, version=cursor.version, last_confirmed=cursor.last_confirmed)
        try:
            store.save_cursor(property_id, cursor, new)
        except CursorMoved:
            continue
        return new
    raise DeliveryConflict("the queue is busy; retry the replay")
