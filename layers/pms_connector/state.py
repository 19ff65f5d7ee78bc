"""Room and booking state in DynamoDB, and the ingest transaction that keeps it with the FIFO and the outbox.

| item     | pk               | sk           | holds                                                       |
|----------|------------------|--------------|-------------------------------------------------------------|
| booking  | ``{pid}#booking``| booking_uid  | status, room, the last BOOKING record (JSON), version       |
| room     | ``{pid}#room``   | room         | occupants (as the phone shows them), COS, RS, DND, MUR, WMSG, wake-ups |
| wake-up  | ``{pid}#wakeup`` | uid          | its supervision (wakeups.py)                                |

An ingest request appends its records to the FIFO, writes the state they change and the UCM commands they
imply in ONE TransactWriteItems: no command without its state change, no state change without its command.
State items carry a version and are written with a condition on it, so two requests for one property
racing on the same room cannot both win; the loser re-reads the state and plans again. Outbox sequence
numbers derive from the FIFO record that implied them (``fifo_seq * 100 + k``), so they are unique and in
record order without a query of their own.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from pms_connector.config import PropertyConfig
from pms_connector.errors import StorageBusy
from pms_connector.outbox import COMMAND_RETENTION_SECONDS, OutboxStore
from pms_connector.store import MAX_TRANSACTION_ITEMS, DuplicateRequest, _n, _s, dumps, seq_key
from pms_connector.ucm.plan import Booking, Occupant, Planner, Room
from pms_connector.wakeups import WAKEUP_RETENTION_SECONDS, wake_instant

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

COMMANDS_PER_RECORD = 100  # outbox seq = fifo seq * 100 + index of the command within its record
DAY = 86_400
REQUEST_MARKER_SECONDS = DAY  # an ingest body sent again within a day is the same request


class TooManyItems(Exception):
    """The records of one request need more than one transaction can hold: split them."""


class StateStore(OutboxStore):
    """Bookings, rooms and the ingest transaction (FIFO + state + outbox)."""

    def ingest_request(self, prop: PropertyConfig, records: Sequence[Mapping[str, Any]], *, key: str,
                       retention_seconds: int, correlation_id: str | None = None) -> tuple[list[int], bool]:
        """Append one ingest request's records exactly once: (their sequence numbers, whether the request
        had been appended before).

        The request's marker (``{pid}#request``, ``key``) is written in the same transaction as its records:
        a request sent again (its answer was lost, the function timed out after the write) finds it and gets
        the first answer, appending nothing. Records that need more than one transaction go in order-keeping
        parts, each moving the marker's ``done`` on with a condition on where the last part ended, so a
        request sent again after only some parts went in appends the rest, once, whoever sends it."""
        sequence: list[int] = []
        start, size, repeated = 0, len(records), False
        while start < len(records):
            part = records[start:start + size]
            marker = functools.partial(self._request_marker, prop.id, key, start, len(part), sequence)
            try:
                sequence += self.ingest(prop, part, retention_seconds=retention_seconds,
                                        correlation_id=correlation_id, also=marker)
            except TooManyItems:
                if size == 1:
                    raise
                size = (size + 1) // 2
                continue
            except DuplicateRequest as first:  # sent before: carry on from where that one got to
                item = first.item or {}
                if "done" not in item:  # its marker expired meanwhile (a day): nothing to go on
                    raise StorageBusy("the request's progress is unknown; send it again") from None
                start, sequence, repeated = int(item["done"]["N"]), _ranges(item["seqs"]["S"]), True
                size = len(records) - start
                continue
            start += len(part)
            size = len(records) - start
        return sequence, repeated

    def _request_marker(self, pid: str, key: str, start: int, count: int, before: Sequence[int],
                        first_seq: int) -> list[TransactWriteItemTypeDef]:
        seqs = _ranges_text([*before, *range(first_seq, first_seq + count)])
        marker_key = {"pk": _s(f"{pid}#request"), "sk": _s(key)}
        if start == 0:
            return [{"Put": {
                "TableName": self.table, "Item": {**marker_key, "done": _n(count), "seqs": _s(seqs),
                                                  "expires_at": _n(int(self._clock()) + REQUEST_MARKER_SECONDS)},
                "ConditionExpression": "attribute_not_exists(pk)",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}}]
        return [{"Update": {
            "TableName": self.table, "Key": marker_key, "UpdateExpression": "SET done = :end, seqs = :seqs",
            "ConditionExpression": "done = :start", "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            "ExpressionAttributeValues": {":end": _n(start + count), ":seqs": _s(seqs), ":start": _n(start)}}}]

    def ingest(self, prop: PropertyConfig, records: Sequence[Mapping[str, Any]], *, retention_seconds: int,
               correlation_id: str | None = None,
               also: Sequence[TransactWriteItemTypeDef] | Callable[[int], Sequence[TransactWriteItemTypeDef]] = ()
               ) -> list[int]:
        """Append records with the state and UCM commands they imply, atomically. TooManyItems if too big.

        ``also``: one more conditional write for the same transaction (a request's marker, polling's batch
        marker), or a function of the first sequence number that makes it; when its condition fails the
        records were ingested before: DuplicateRequest."""
        now = int(self._clock())
        payloads = [{"record": _s(dumps(r)), "action": _s(str(r.get("action", "")).strip().upper()),
                     "ingested_at": _n(now), "expires_at": _n(now + retention_seconds)} for r in records]

        def implied(first_seq: int) -> list[TransactWriteItemTypeDef]:
            extra = also(first_seq) if callable(also) else also
            items = [*extra, *self._plan_items(prop, records, first_seq, now, correlation_id)]
            if len(items) + len(records) > MAX_TRANSACTION_ITEMS:
                raise TooManyItems()
            return items

        return self._append(f"{prop.id}#fifo", payloads, extra=implied, dedupe_first_extra=bool(also))

    # --- planning --------------------------------------------------------------------------------

    def _plan_items(self, prop: PropertyConfig, records: Sequence[Mapping[str, Any]], first_seq: int, now: int,
                    correlation_id: str | None) -> list[TransactWriteItemTypeDef]:
        uids = {str(r["booking_uid"]) for r in records if str(r.get("action", "")).strip().upper() == "BOOKING"}
        rooms = {str(r["room"]) for r in records if r.get("room")}
        versions: dict[tuple[str, str], int] = {}
        bookings, room_states = self._load(prop.id, uids, rooms, versions)

        # The planner asks for more only on a room move (the old room); everything else was read above.
        def load_booking(uid: str) -> Booking | None:
            if uid in uids:
                return bookings.get(uid)
            return self._load(prop.id, {uid}, set(), versions)[0].get(uid)

        def load_room(name: str) -> Room:
            if name not in rooms:
                room_states.update(self._load(prop.id, set(), {name}, versions)[1])
            return room_states.get(name) or Room(name)

        planner = Planner(prop.ucm, load_booking, load_room)
        commands: list[tuple[int, str, Mapping[str, str], Mapping[str, str] | None]] = []
        for index, record in enumerate(records):
            before = len(planner.commands)
            planner.apply(record)
            for k in range(before, len(planner.commands)):
                action, fields = planner.commands[k]
                seq = (first_seq + index) * COMMANDS_PER_RECORD + (k - before)
                commands.append((seq, action, fields, planner.fallbacks.get(k)))

        items: list[TransactWriteItemTypeDef] = []
        for uid in sorted(planner.changed_bookings):
            booking = planner.bookings[uid]
            assert booking is not None
            items.append(self._versioned_put(prop.id, "booking", uid, _booking_item(booking, prop, now),
                                             versions.get(("booking", uid), 0)))
        for name in sorted(planner.changed_rooms):
            items.append(self._versioned_put(prop.id, "room", name, _room_item(planner.rooms[name]),
                                             versions.get(("room", name), 0)))
        for seq, action, command_fields, fallback in commands:
            item: dict[str, Any] = {
                "pk": _s(f"{prop.id}#outbox"), "sk": _s(seq_key(seq)), "action": _s(action),
                "fields": _s(dumps(dict(command_fields))), "attempts": _n(0), "next_attempt_at": _n(now),
                "status": _s("pending"), "created_at": _n(now), "expires_at": _n(now + COMMAND_RETENTION_SECONDS)}
            if fallback:
                item["fallback"] = _s(dumps(dict(fallback)))
            if correlation_id:
                item["correlation_id"] = _s(correlation_id)
            items.append({"Put": {"TableName": self.table, "Item": item,
                                  "ConditionExpression": "attribute_not_exists(pk)"}})
        if commands:
            items.append(self.due_marker_write(prop.id, now, commands[-1][0]))
        if prop.ucm is not None:
            items += self._wakeup_items(prop, room_states, planner.rooms, planner.changed_rooms, commands,
                                        first_seq)
        return items

    def _wakeup_items(self, prop: PropertyConfig, before: Mapping[str, Room], after: Mapping[str, Room],
                      changed: set[str], commands: Sequence[tuple[int, str, Mapping[str, str], Any]],
                      first_seq: int) -> list[TransactWriteItemTypeDef]:
        """The wake-up items (wakeups.py) whose room or time this request changed, for their supervision."""
        old: dict[str, tuple[str, str]] = {}
        new: dict[str, tuple[str, str]] = {}
        for name in changed:
            old.update({uid: (name, t) for uid, t in (before.get(name) or Room(name)).wakeups.items()})
            new.update({uid: (name, t) for uid, t in after[name].wakeups.items()})
        # The command that programs a room's wake-up time: the last matching ``wakeup`` set of this request.
        programs: dict[tuple[str, str, str], int] = {}
        for seq, action, fields, _ in commands:
            if action == "wakeup" and fields.get("w_action") == "1":
                programs[(fields["room"], fields.get("w_date", ""), fields.get("w_time", ""))] = seq
        items: list[TransactWriteItemTypeDef] = []
        floor = first_seq * COMMANDS_PER_RECORD
        for uid in sorted(set(old) | set(new)):
            if old.get(uid) == new.get(uid):
                continue
            room, waketime = new.get(uid) or old[uid]
            status = "set" if uid in new else "cancelled"
            due = wake_instant(waketime, prop.zone)
            key = (room, waketime[:10].replace("-", ""), waketime[11:16].replace(":", ""))
            item: dict[str, Any] = {
                "pk": _s(f"{prop.id}#wakeup"), "sk": _s(uid), "room": _s(room), "waketime": _s(waketime),
                "status": _s(status), "gen": _n(first_seq), "seq": _n(programs.get(key, 0)), "floor": _n(floor),
                "due_at": _n(int(due.timestamp())),
                "expires_at": _n(int(due.timestamp()) + WAKEUP_RETENTION_SECONDS),
            }
            items.append({"Put": {"TableName": self.table, "Item": item}})
        return items

    def _versioned_put(self, pid: str, kind: str, key: str, attrs: dict[str, Any], version: int
                       ) -> TransactWriteItemTypeDef:
        item = {"pk": _s(f"{pid}#{kind}"), "sk": _s(key), **attrs, "version": _n(version + 1)}
        if version:
            return {"Put": {"TableName": self.table, "Item": item, "ConditionExpression": "version = :v",
                            "ExpressionAttributeValues": {":v": _n(version)}}}
        return {"Put": {"TableName": self.table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}}

    # --- reading -----------------------------------------------------------------------------------

    def _load(self, pid: str, uids: set[str], rooms: set[str], versions: dict[tuple[str, str], int]
              ) -> tuple[dict[str, Booking], dict[str, Room]]:
        keys = [{"pk": _s(f"{pid}#booking"), "sk": _s(u)} for u in sorted(uids)]
        keys += [{"pk": _s(f"{pid}#room"), "sk": _s(r)} for r in sorted(rooms)]
        bookings: dict[str, Booking] = {}
        room_states: dict[str, Room] = {}
        for start in range(0, len(keys), 100):  # BatchGetItem's limit
            pending: dict[str, Any] = {self.table: {"Keys": keys[start:start + 100], "ConsistentRead": True}}
            while pending:
                page = self._call("BatchGetItem", functools.partial(self.client.batch_get_item, RequestItems=pending))
                for item in page.get("Responses", {}).get(self.table, []):
                    kind = item["pk"]["S"].rsplit("#", 1)[1]
                    versions[(kind, item["sk"]["S"])] = int(item["version"]["N"])
                    if kind == "booking":
                        bookings[item["sk"]["S"]] = booking_from_item(item)
                    else:
                        room_states[item["sk"]["S"]] = room_from_item(item)
                pending = dict(page.get("UnprocessedKeys") or {})
        return bookings, room_states

    def rooms(self, pid: str) -> list[Room]:
        out: list[Room] = []
        kwargs: dict[str, Any] = {"TableName": self.table, "KeyConditionExpression": "pk = :pk",
                                  "ExpressionAttributeValues": {":pk": _s(f"{pid}#room")}, "ConsistentRead": True}
        while True:
            page = self._call("Query", lambda: self.client.query(**kwargs))
            out += [room_from_item(i) for i in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def booking(self, pid: str, uid: str) -> Booking | None:
        item = self._get(f"{pid}#booking", uid)
        return booking_from_item(item) if item else None

    def room(self, pid: str, name: str) -> Room | None:
        item = self._get(f"{pid}#room", name)
        return room_from_item(item) if item else None


def _ranges_text(seqs: Sequence[int]) -> str:
    """``1-3,7-7`` for [1, 2, 3, 7]: a request's sequence numbers, compact in its marker."""
    runs: list[list[int]] = []
    for seq in seqs:
        if runs and seq == runs[-1][1] + 1:
            runs[-1][1] = seq
        else:
            runs.append([seq, seq])
    return ",".join(f"{a}-{b}" for a, b in runs)


def _ranges(text: str) -> list[int]:
    out: list[int] = []
    for run in filter(None, text.split(",")):
        a, b = run.split("-")
        out += range(int(a), int(b) + 1)
    return out


def _booking_item(booking: Booking, prop: PropertyConfig, now: int) -> dict[str, Any]:
    item: dict[str, Any] = {"status": _s(booking.status), "record": _s(dumps(dict(booking.record)))}
    if booking.room:
        item["room"] = _s(booking.room)
    if booking.status in ("checkout", "cancel", "noshow"):
        # Guest personal data expires a configurable number of days after the stay ends.
        item["expires_at"] = _n(now + prop.privacy.guest_data_days * DAY)
    return item


def _room_item(room: Room) -> dict[str, Any]:
    item: dict[str, Any] = {
        "occupants": _s(dumps([{"booking_uid": o.booking_uid, "display": dict(o.display)} for o in room.occupants])),
        "wakeups": _s(dumps(dict(room.wakeups))),
    }
    for key in ("cos_pbx", "status"):
        value = getattr(room, key)
        if value is not None:
            item[key] = _s(str(value))
    for key in ("dnd", "mur", "wmsg"):
        value = getattr(room, key)
        if value is not None:
            item[key] = {"BOOL": bool(value)}
    return item


def booking_from_item(item: Mapping[str, Any]) -> Booking:
    return Booking(booking_uid=item["sk"]["S"], status=item["status"]["S"],
                   room=item["room"]["S"] if "room" in item else None, record=json.loads(item["record"]["S"]))


def room_from_item(item: Mapping[str, Any]) -> Room:
    occupants = tuple(Occupant(o["booking_uid"], o["display"]) for o in json.loads(item["occupants"]["S"]))
    return Room(
        room=item["sk"]["S"], occupants=occupants,
        cos_pbx=item["cos_pbx"]["S"] if "cos_pbx" in item else None,
        status=item["status"]["S"] if "status" in item else None,
        dnd=item["dnd"]["BOOL"] if "dnd" in item else None,
        mur=item["mur"]["BOOL"] if "mur" in item else None,
        wmsg=item["wmsg"]["BOOL"] if "wmsg" in item else None,
        wakeups=json.loads(item["wakeups"]["S"]),
    )


def room_view(room: Room) -> dict[str, Any]:
    """Room state for the API: no guest personal data beyond what the phone shows (names, language)."""
    view = asdict(room)
    view["occupants"] = [{"booking_uid": o.booking_uid, "firstname": o.display.get("firstname"),
                          "lastname": o.display.get("lastname"), "language": o.display.get("language"),
                          "cos": o.display.get("cos")} for o in room.occupants]
    view["wakeups"] = [{"uid": uid, "waketime": t} for uid, t in sorted(room.wakeups.items())]
    return view
