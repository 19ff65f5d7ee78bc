"""From PMS records to room/booking state and the UCM commands they imply (pure logic, no AWS, no HTTP).

A ``Planner`` applies a property's records in order to the state it is given (bookings and rooms) and
collects the changed state plus the UCM PMS API commands, as ``(action, fields)`` with the guide's field
names. Rules (issue 3, DESIGN.md "Domain rules"):

- BOOKING ``checkin`` of a booking not in house: ``checkin`` on its room, unless another booking already
  occupies the room (a sharer: the phone keeps showing the first occupant).
- ``checkin`` again, same room, changed data: ``update`` (when this booking is the one the phone shows).
- ``checkin`` again, other room: ``mov`` from the old address to the new one when the guest was alone and
  the new room is free (then ``update`` if the data changed too); with sharers on either side, the old room
  is checked out (or updated to show the next sharer) and the new one checked in.
- ``checkout``, and ``cancel``/``noshow`` of a booking in house: ``checkout`` once no other booking occupies
  the room, else ``update`` to show the next occupant if the leaving booking was the one shown.
- ``cancel``/``noshow``/``expected`` of a booking not in house: state only.
- COS: ``update`` with the mapped COS when the room is occupied. WAKE S/C: ``wakeup`` w_action 1/0.
- RS, MUR, DND, WMSG, MSGTXT: state only (the UCM PMS API has no such commands).
- A record that changes nothing produces no command.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from pms_connector.config import UcmSettings
from pms_connector.records import DATETIME_FORMAT

Command = tuple[str, dict[str, str]]
IN_HOUSE = "checkin"


@dataclass(frozen=True)
class Occupant:
    """A booking in a room, with what the phone shows for it (the UCM check-in fields)."""

    booking_uid: str
    display: Mapping[str, str]


@dataclass(frozen=True)
class Booking:
    booking_uid: str
    status: str
    room: str | None = None
    record: Mapping[str, Any] = field(default_factory=dict)  # the last BOOKING record, as the PMS sent it

    @property
    def in_house(self) -> bool:
        return self.status == IN_HOUSE


@dataclass(frozen=True)
class Room:
    room: str
    occupants: tuple[Occupant, ...] = ()
    cos_pbx: str | None = None
    status: str | None = None
    dnd: bool | None = None
    mur: bool | None = None
    wmsg: bool | None = None
    wakeups: Mapping[str, str] = field(default_factory=dict)  # wake-up uid -> waketime (local)

    def without(self, booking_uid: str) -> Room:
        return replace(self, occupants=tuple(o for o in self.occupants if o.booking_uid != booking_uid))

    def shown(self) -> Occupant | None:
        return self.occupants[0] if self.occupants else None


@dataclass
class Planner:
    """Applies records in order; ``bookings``/``rooms`` load state not seen yet (None / empty room)."""

    ucm: UcmSettings | None
    load_booking: Callable[[str], Booking | None]
    load_room: Callable[[str], Room]
    bookings: dict[str, Booking | None] = field(default_factory=dict)
    rooms: dict[str, Room] = field(default_factory=dict)
    changed_bookings: set[str] = field(default_factory=set)
    changed_rooms: set[str] = field(default_factory=set)
    commands: list[Command] = field(default_factory=list)
    # index in ``commands`` -> checkin fields to send instead when the UCM answers "not checked in" (mov)
    fallbacks: dict[int, dict[str, str]] = field(default_factory=dict)

    # --- state access ------------------------------------------------------------------------------

    def booking(self, uid: str) -> Booking | None:
        if uid not in self.bookings:
            self.bookings[uid] = self.load_booking(uid)
        return self.bookings[uid]

    def room(self, name: str) -> Room:
        if name not in self.rooms:
            self.rooms[name] = self.load_room(name)
        return self.rooms[name]

    def _set_booking(self, booking: Booking) -> None:
        if self.bookings.get(booking.booking_uid) != booking:
            self.bookings[booking.booking_uid] = booking
            self.changed_bookings.add(booking.booking_uid)

    def _set_room(self, room: Room) -> None:
        if self.room(room.room) != room:
            self.rooms[room.room] = room
            self.changed_rooms.add(room.room)

    def _send(self, action: str, fields: Mapping[str, str | None]) -> None:
        if self.ucm is not None:
            self.commands.append((action, {k: v for k, v in fields.items() if v is not None}))

    # --- records -----------------------------------------------------------------------------------

    def apply(self, record: Mapping[str, Any]) -> None:
        action = str(record.get("action", "")).strip().upper()
        handler = getattr(self, f"_apply_{action.lower()}", None)
        if handler is not None:
            handler(record)

    def _apply_booking(self, record: Mapping[str, Any]) -> None:
        uid = str(record["booking_uid"])
        status = str(record["status"]).strip().lower()
        before = self.booking(uid)
        was_in = before is not None and before.in_house
        new_room = record.get("room") or (before.room if before else None)
        after = Booking(uid, status, new_room, dict(record))
        if status == IN_HOUSE:
            assert new_room is not None  # the record model requires a room for checkin
            if not was_in:
                self._enter(uid, new_room, record)
            elif before is not None and before.room == new_room:
                self._refresh(uid, new_room, record)
            elif before is not None and before.room is not None:
                self._move(uid, before.room, new_room, record)
        elif was_in and before is not None and before.room is not None:
            # checkout, or cancel/noshow of a booking in house: the guest leaves.
            self._leave(uid, before.room)
        self._set_booking(after)

    def _enter(self, uid: str, room_name: str, record: Mapping[str, Any]) -> None:
        room = self.room(room_name)
        display = self._display(room_name, record, room)
        if not room.occupants:
            self._send("checkin", display)
        self._set_room(replace(room.without(uid), occupants=(*room.without(uid).occupants, Occupant(uid, display))))

    def _refresh(self, uid: str, room_name: str, record: Mapping[str, Any]) -> None:
        room = self.room(room_name)
        display = self._display(room_name, record, room)
        occupants = tuple(Occupant(uid, display) if o.booking_uid == uid else o for o in room.occupants)
        shown = room.shown()
        if shown is not None and shown.booking_uid == uid and dict(shown.display) != display:
            self._send("update", display)
        self._set_room(replace(room, occupants=occupants))

    def _move(self, uid: str, old_name: str, new_name: str, record: Mapping[str, Any]) -> None:
        old, new = self.room(old_name), self.room(new_name)
        shown = old.shown()
        was_shown = shown is not None and shown.booking_uid == uid
        remaining = old.without(uid)
        display = self._display(new_name, record, new)
        alone = not remaining.occupants
        if alone:  # the room's wake-ups were this guest's: they follow the guest (cancelled while still there)
            self._cancel_moved_wakeups(old_name, old.wakeups)
        if was_shown and alone and not new.occupants:
            assert shown is not None
            self._send("mov", {"address": self._address(old_name), "room": old_name,
                               "d_address": self._address(new_name), "d_room": new_name})
            if self.ucm is not None:
                self.fallbacks[len(self.commands) - 1] = display
            moved_display = {**shown.display, "address": display["address"], "room": new_name}
            if moved_display != display:
                self._send("update", display)
            self._set_room(replace(remaining, wakeups={}))
            self._set_room(replace(new, occupants=(Occupant(uid, display),), wakeups=dict(new.wakeups)))
            self._set_moved_wakeups(old_name, new_name, old.wakeups)
            return
        self._leave(uid, old_name)
        self._enter(uid, new_name, record)
        if alone:
            self._set_moved_wakeups(old_name, new_name, old.wakeups)

    def _cancel_moved_wakeups(self, old_name: str, wakeups: Mapping[str, str]) -> None:
        """A moving guest's wake-ups, cancelled on the old address before the move, while the guest is still
        checked in there (a UCM answers a wake-up command for an empty room [20]): in case the UCM would keep
        them there, where the next guest would be woken. Harmless when it moves them with ``mov``: they are
        set again on the new address after it."""
        for waketime in sorted(set(wakeups.values())):
            self._send("wakeup", self._wakeup(old_name, waketime, set_=False))

    def _set_moved_wakeups(self, old_name: str, new_name: str, wakeups: Mapping[str, str]) -> None:
        """The moved guest's wake-ups, set on the new address (cancelled on the old one before the move)."""
        new = self.room(new_name)
        for waketime in sorted(set(wakeups.values())):
            if waketime not in new.wakeups.values():
                self._send("wakeup", self._wakeup(new_name, waketime, set_=True))
        old = self.room(old_name)
        self._set_room(replace(old, wakeups={k: v for k, v in old.wakeups.items() if k not in wakeups}))
        self._set_room(replace(new, wakeups={**new.wakeups, **wakeups}))

    def _leave(self, uid: str, room_name: str) -> None:
        room = self.room(room_name)
        shown = room.shown()
        if shown is None or all(o.booking_uid != uid for o in room.occupants):
            return
        remaining = room.without(uid)
        nxt = remaining.shown()
        if nxt is None:
            self._send("checkout", {"address": self._address(room_name), "room": room_name})
            self._set_room(replace(remaining, wakeups={}))  # the UCM clears them with the check-out
            return
        if shown.booking_uid == uid:
            self._send("update", nxt.display)  # the phone now shows the next sharer
        self._set_room(remaining)

    def _apply_cos(self, record: Mapping[str, Any]) -> None:
        room_name = str(record["room"])
        room = self.room(room_name)
        cos_pbx = str(record["cos_pbx"])
        if cos_pbx == room.cos_pbx:
            return
        shown = room.shown()
        occupants = room.occupants
        if shown is not None and self.ucm is not None:
            display = {**shown.display, "cos": str(self._cos(cos_pbx))}
            if display != dict(shown.display):
                self._send("update", display)
            occupants = (Occupant(shown.booking_uid, display), *room.occupants[1:])
        self._set_room(replace(room, cos_pbx=cos_pbx, occupants=occupants))

    def _apply_wake(self, record: Mapping[str, Any]) -> None:
        # The UCM knows a room's wake-ups by date and time, not by the PMS's uid: two uids at the same time
        # are one wake-up on the PBX, which is cancelled only when no uid wants that time any more.
        room_name, uid = str(record["room"]), str(record.get("uid") or record["waketime"])
        mode = str(record["mode"]).strip().upper()
        room = self.room(room_name)
        before = room.wakeups.get(uid)
        wakeups = dict(room.wakeups)
        if mode == "S":
            waketime = str(record["waketime"])
            if before == waketime:
                return
            wakeups[uid] = waketime
            if before is not None and before not in wakeups.values():
                self._send("wakeup", self._wakeup(room_name, before, set_=False))
            if waketime not in room.wakeups.values():
                self._send("wakeup", self._wakeup(room_name, waketime, set_=True))
        elif mode == "C":
            if before is None:
                return
            del wakeups[uid]
            if before not in wakeups.values():
                self._send("wakeup", self._wakeup(room_name, before, set_=False))
        self._set_room(replace(room, wakeups=wakeups))

    def _apply_rs(self, record: Mapping[str, Any]) -> None:
        status = record.get("status", record.get("roomstatus"))
        self._set_room(replace(self.room(str(record["room"])), status=str(status)))

    def _apply_dnd(self, record: Mapping[str, Any]) -> None:
        self._set_room(replace(self.room(str(record["room"])), dnd=bool(record["active"])))

    def _apply_mur(self, record: Mapping[str, Any]) -> None:
        self._set_room(replace(self.room(str(record["room"])), mur=bool(record["active"])))

    def _apply_wmsg(self, record: Mapping[str, Any]) -> None:
        self._set_room(replace(self.room(str(record["room"])), wmsg=bool(record["active"])))

    # --- UCM fields ----------------------------------------------------------------------------------

    def _address(self, room: str) -> str:
        return self.ucm.address(room) if self.ucm else room

    def _cos(self, cos_pbx: str | None) -> int:
        ucm = self.ucm
        assert ucm is not None
        if cos_pbx is None or cos_pbx == "":
            return ucm.cos_checkin
        if cos_pbx in ucm.cos_map:
            return ucm.cos_map[cos_pbx]
        if cos_pbx in ("1", "2", "3", "4"):
            return int(cos_pbx)
        return 1 if cos_pbx == "0" else ucm.cos_checkin  # spec example: 0 = deny calls

    def _display(self, room_name: str, record: Mapping[str, Any], room: Room) -> dict[str, str]:
        """The checkin/update fields for a booking in a room (the guide's field names)."""
        if self.ucm is None:
            return {}
        guest = main_guest(record)
        language = (guest or {}).get("language")
        cos_pbx = record.get("cos_pbx") or (guest or {}).get("cos_pbx") or room.cos_pbx
        fields: dict[str, str | None] = {
            "address": self._address(room_name),
            "room": room_name,
            "account": _text(record.get("account")) or _text((guest or {}).get("account")),
            "firstname": shorten(_text((guest or {}).get("name")), self.ucm.name_max_length),
            "lastname": shorten(_text((guest or {}).get("surname")), self.ucm.name_max_length),
            "language": self.ucm.language_map.get(str(language), str(language).upper()) if language else None,
            "vipcode": _text(record.get("level")) or _text((guest or {}).get("level")),
            "datein": self._date(record.get("arrival")),
            "dateout": self._date(record.get("departure")),
            "cos": str(self._cos(_text(cos_pbx))),
            "credit": None if self.ucm.credit is None else str(self.ucm.credit),
            "cidnumber": _phone((guest or {}).get("mobile")) if self.ucm.send_cidnumber else None,
        }
        return {k: v for k, v in fields.items() if v}

    def _date(self, value: object) -> str | None:
        if not isinstance(value, str):
            return None
        assert self.ucm is not None
        return datetime.strptime(value, DATETIME_FORMAT).strftime(self.ucm.date_format)

    def _wakeup(self, room_name: str, waketime: str, *, set_: bool) -> dict[str, str]:
        return wakeup_fields(self._address(room_name), room_name, waketime, set_=set_)


def wakeup_fields(address: str, room: str, waketime: str, *, set_: bool) -> dict[str, str]:
    """The guide's ``wakeup`` fields for a PMS wake time (local YYYY-MM-DDTHH:NN:SS): a one-time call."""
    moment = datetime.strptime(waketime, DATETIME_FORMAT)
    return {"address": address, "room": room, "w_action": "1" if set_ else "0", "w_mode": "1",
            "w_date": moment.strftime("%Y%m%d"), "w_time": moment.strftime("%H%M")}


def main_guest(record: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The guest with ``main: true``, else the first of GUEST_LIST (the spec's rule)."""
    guests = [g for g in record.get("GUEST_LIST") or [] if isinstance(g, Mapping)]
    for guest in guests:
        if guest.get("main") is True or str(guest.get("main")).lower() == "true":
            return guest
    return guests[0] if guests else None


def shorten(name: str | None, limit: int) -> str | None:
    """At most ``limit`` characters, never empty: a name is shortened, never dropped."""
    if not name:
        return name
    cut = name[:limit].rstrip()
    return cut or name[:limit]


def _phone(value: object) -> str | None:
    """A caller-id number from a PMS phone field: digits with an optional leading +, or nothing."""
    text = _text(value)
    if text is None:
        return None
    digits = "".join(ch for ch in text if ch.isdigit())
    if not digits:
        return None
    return ("+" if text.startswith("+") else "") + digits


def _text(value: object) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None
