"""Every translation rule from PMS records to UCM commands (issue 3, section 2), on in-memory state."""

from __future__ import annotations

from typing import Any

import pytest

from pms_connector.config import UcmSettings
from pms_connector.ucm.plan import Booking, Planner, Room, shorten

UCM = UcmSettings(base_url="https://10.0.0.2:8089", api_user="api", api_password="x", pms_user="admin1",
                  pms_password="admin123", cos_map={"0": 1, "1": 4, "2": 2}, rooms={"101": "1101"})


class Hotel:
    """Applies records one request at a time, keeping state between requests like the table would."""

    def __init__(self, ucm: UcmSettings | None = UCM) -> None:
        self.ucm = ucm
        self.bookings: dict[str, Booking] = {}
        self.rooms: dict[str, Room] = {}

    def send(self, *records: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
        planner = Planner(self.ucm, self.bookings.get, lambda r: self.rooms.get(r, Room(r)))
        for record in records:
            planner.apply(record)
        for uid in planner.changed_bookings:
            booking = planner.bookings[uid]
            assert booking is not None
            self.bookings[uid] = booking
        for name in planner.changed_rooms:
            self.rooms[name] = planner.rooms[name]
        return planner.commands


def guest(name: str = "John", surname: str = "Doe", **extra: Any) -> dict[str, Any]:
    return {"uid": f"g-{name}", "name": name, "surname": surname, "language": "en", **extra}


def booking(uid: str = "b1", status: str = "checkin", room: str | None = "102", guests: list[Any] | None = None,
            **extra: Any) -> dict[str, Any]:
    record = {"datetime": "2026-01-01T10:00:00", "action": "BOOKING", "booking_uid": uid, "status": status,
              "account": f"acc-{uid}", "arrival": "2026-01-01T14:00:00", "departure": "2026-01-05T12:00:00",
              "level": "2", "GUEST_LIST": guests if guests is not None else [guest()], **extra}
    if room is not None:
        record["room"] = room
    return record


def actions(commands: list[tuple[str, dict[str, str]]]) -> list[str]:
    return [action for action, _ in commands]


def test_checkin_sends_the_guides_checkin_fields() -> None:
    commands = Hotel().send(booking(room="101", guests=[guest("Ana", "García"), guest("Zoe", "Roe", main=True)]))
    assert commands == [("checkin", {
        "address": "1101", "room": "101", "account": "acc-b1", "firstname": "Zoe", "lastname": "Roe",
        "language": "EN", "vipcode": "2", "datein": "2026/01/01 14:00", "dateout": "2026/01/05 12:00", "cos": "4"})]


def test_the_first_guest_is_the_main_one_when_none_is_marked() -> None:
    [(_, fields)] = Hotel().send(booking(guests=[guest("Ana", "García"), guest("Zoe", "Roe")]))
    assert (fields["firstname"], fields["lastname"]) == ("Ana", "García")


def test_booking_cos_is_mapped_and_language_map_applies() -> None:
    ucm = UCM.model_copy(update={"language_map": {"es": "ES-ES"}})
    [(_, fields)] = Hotel(ucm).send(booking(cos_pbx="0", guests=[guest(language="es")]))
    assert (fields["cos"], fields["language"]) == ("1", "ES-ES")


def test_a_repeated_identical_checkin_sends_nothing() -> None:
    hotel = Hotel()
    hotel.send(booking())
    assert hotel.send(booking()) == []


def test_a_checkin_with_changed_data_in_the_same_room_is_an_update() -> None:
    hotel = Hotel()
    hotel.send(booking())
    commands = hotel.send(booking(guests=[guest("John", "Smith")]))
    assert actions(commands) == ["update"]
    assert commands[0][1]["lastname"] == "Smith"


def test_a_checkin_in_another_room_is_a_mov() -> None:
    hotel = Hotel()
    hotel.send(booking(room="102"))
    commands = hotel.send(booking(room="103"))
    assert commands == [("mov", {"address": "102", "room": "102", "d_address": "103", "d_room": "103"})]


def test_a_move_with_changed_data_is_mov_then_update() -> None:
    hotel = Hotel()
    hotel.send(booking(room="102"))
    commands = hotel.send(booking(room="103", departure="2026-01-07T12:00:00"))
    assert actions(commands) == ["mov", "update"]
    assert commands[1][1]["dateout"] == "2026/01/07 12:00"


def test_checkout_sends_checkout_with_the_mapped_address() -> None:
    hotel = Hotel()
    hotel.send(booking(room="101"))
    assert hotel.send(booking(room="101", status="checkout")) == [("checkout", {"address": "1101", "room": "101"})]


def test_sharers_keep_the_room_checked_in_until_the_last_leaves() -> None:
    hotel = Hotel()
    assert actions(hotel.send(booking("b1"))) == ["checkin"]
    assert hotel.send(booking("b2", guests=[guest("Mary", "Major")])) == []  # the phone keeps showing b1
    commands = hotel.send(booking("b1", status="checkout"))
    assert actions(commands) == ["update"] and commands[0][1]["firstname"] == "Mary"
    assert actions(hotel.send(booking("b2", status="checkout"))) == ["checkout"]


def test_a_sharer_who_is_not_shown_leaves_without_a_command() -> None:
    hotel = Hotel()
    hotel.send(booking("b1"), booking("b2", guests=[guest("Mary")]))
    assert hotel.send(booking("b2", status="checkout")) == []


@pytest.mark.parametrize("status", ["cancel", "noshow"])
def test_cancel_or_noshow_of_an_in_house_booking_checks_out(status: str) -> None:
    hotel = Hotel()
    hotel.send(booking())
    assert actions(hotel.send(booking(status=status))) == ["checkout"]


@pytest.mark.parametrize("status", ["expected", "cancel", "noshow", "checkout"])
def test_a_booking_not_in_house_never_reaches_the_ucm(status: str) -> None:
    hotel = Hotel()
    hotel.send(booking(status="expected", room=None))
    assert hotel.send(booking(status=status)) == []


def test_cos_record_updates_an_occupied_room_and_not_an_empty_one() -> None:
    hotel = Hotel()
    cos = {"datetime": "2026-01-01T10:00:00", "action": "COS", "room": "102", "cos_pbx": "0", "cos_tv": "0",
           "cos_inet": "0"}
    assert hotel.send(cos) == []  # empty room: kept for the record, nothing to program
    hotel.rooms.clear()
    hotel.send(booking())
    commands = hotel.send(cos)
    assert actions(commands) == ["update"] and commands[0][1]["cos"] == "1"
    assert hotel.send(cos) == []  # unchanged


def wake(mode: str, waketime: str = "2026-01-02T07:30:00", uid: str = "w1") -> dict[str, Any]:
    return {"datetime": "2026-01-01T10:00:00", "action": "WAKE", "room": "101", "mode": mode, "uid": uid,
            "waketime": waketime}


def test_wake_set_and_cancel_are_wakeup_commands_in_local_time() -> None:
    hotel = Hotel()
    assert hotel.send(wake("S")) == [("wakeup", {"address": "1101", "room": "101", "w_action": "1", "w_mode": "1",
                                                  "w_date": "20260102", "w_time": "0730"})]
    assert hotel.send(wake("S")) == []
    assert actions(hotel.send(wake("S", "2026-01-02T08:00:00"))) == ["wakeup", "wakeup"]  # cancel old, set new
    [(_, cancel)] = hotel.send(wake("C"))
    assert (cancel["w_action"], cancel["w_time"]) == ("0", "0800")
    assert hotel.send(wake("C")) == []


@pytest.mark.parametrize("action", ["RS", "MUR", "DND", "WMSG", "MSGTXT"])
def test_records_without_a_ucm_command_change_state_only(action: str) -> None:
    record = {"datetime": "2026-01-01T10:00:00", "action": action, "room": "101", "status": "C", "active": True,
              "text": "hi"}
    hotel = Hotel()
    assert hotel.send(record) == []


def test_room_state_follows_rs_mur_dnd_wmsg() -> None:
    hotel = Hotel()
    base = {"datetime": "2026-01-01T10:00:00", "room": "101"}
    hotel.send({**base, "action": "RS", "roomstatus": "D"}, {**base, "action": "DND", "active": True},
               {**base, "action": "MUR", "active": False}, {**base, "action": "WMSG", "active": True})
    room = hotel.rooms["101"]
    assert (room.status, room.dnd, room.mur, room.wmsg) == ("D", True, False, True)


def test_a_move_keeps_the_guests_wake_ups_and_reprograms_them_on_the_new_room() -> None:
    hotel = Hotel()
    hotel.send(booking(room="101"), wake("S"))
    commands = hotel.send(booking(room="103"))
    # Cancelled on 101 while the guest is still checked in there (the UCM answers [20] for an empty room),
    # set on 103 once the guest is there.
    assert [commands[0], commands[2]] == [
        ("wakeup", {"address": "1101", "room": "101", "w_action": "0", "w_mode": "1", "w_date": "20260102",
                    "w_time": "0730"}),
        ("wakeup", {"address": "103", "room": "103", "w_action": "1", "w_mode": "1", "w_date": "20260102",
                    "w_time": "0730"})]
    assert actions(commands) == ["wakeup", "mov", "wakeup"]
    assert hotel.rooms["103"].wakeups == {"w1": "2026-01-02T07:30:00"}
    assert hotel.rooms["101"].wakeups == {}


def test_a_guest_moving_into_a_shared_room_takes_the_wake_ups_but_sharers_keep_theirs() -> None:
    hotel = Hotel()
    hotel.send(booking("b1", room="101"), wake("S"), booking("b2", room="103", guests=[guest("Mary")]))
    commands = hotel.send(booking("b1", room="103"))  # alone in 101: its wake-up follows b1
    assert actions(commands) == ["wakeup", "checkout", "wakeup"]
    assert (hotel.rooms["101"].wakeups, hotel.rooms["103"].wakeups) == ({}, {"w1": "2026-01-02T07:30:00"})
    hotel.send(booking("b3", room="102"), booking("b4", room="102", guests=[guest("Li")]),
               {**wake("S", uid="w2"), "room": "102"})
    assert actions(hotel.send(booking("b3", room="104"))) == ["update", "checkin"]  # b4 stays in 102
    assert hotel.rooms["102"].wakeups == {"w2": "2026-01-02T07:30:00"} and hotel.rooms["104"].wakeups == {}


def test_a_move_into_a_shared_room_checks_out_and_does_not_checkin() -> None:
    hotel = Hotel()
    hotel.send(booking("b1", room="102"), booking("b2", room="103", guests=[guest("Mary")]))
    assert actions(hotel.send(booking("b1", room="103"))) == ["checkout"]


def test_several_records_of_one_request_apply_in_order() -> None:
    commands = Hotel().send(booking(room="102"), booking(room="103"), booking(room="103", status="checkout"))
    assert actions(commands) == ["checkin", "mov", "checkout"]


def test_without_a_ucm_the_state_is_kept_and_no_command_is_made() -> None:
    hotel = Hotel(ucm=None)
    assert hotel.send(booking()) == []
    assert [o.booking_uid for o in hotel.rooms["102"].occupants] == ["b1"]


@pytest.mark.parametrize(("name", "limit", "expected"), [
    ("Zacarías", 32, "Zacarías"), ("Maximilian-Alexander", 10, "Maximilian"), ("Ab Cd", 3, "Ab"),
    ("渡辺", 1, "渡"), ("O'Brien", 32, "O'Brien")])
def test_names_are_shortened_never_dropped(name: str, limit: int, expected: str) -> None:
    assert shorten(name, limit) == expected


def test_long_names_are_shortened_to_the_configured_limit() -> None:
    ucm = UCM.model_copy(update={"name_max_length": 5})
    [(_, fields)] = Hotel(ucm).send(booking(guests=[guest("Bartholomew", "Oyelaran")]))
    assert (fields["firstname"], fields["lastname"]) == ("Barth", "Oyela")


def test_two_wake_up_uids_at_the_same_time_are_one_on_the_ucm() -> None:
    hotel = Hotel()
    assert actions(hotel.send(wake("S", uid="w1"))) == ["wakeup"]
    assert hotel.send(wake("S", uid="w2")) == []  # the UCM already rings at that time
    assert hotel.send(wake("C", uid="w1")) == []  # w2 still wants it
    [(_, cancel)] = hotel.send(wake("C", uid="w2"))
    assert cancel["w_action"] == "0"


def test_cidnumber_and_credit_are_sent_only_when_configured() -> None:
    plain = Hotel().send(booking(guests=[guest(mobile="+34 600-11-22-33")]))
    assert "cidnumber" not in plain[0][1] and "credit" not in plain[0][1]
    ucm = UCM.model_copy(update={"send_cidnumber": True, "credit": 5000})
    [(_, fields)] = Hotel(ucm).send(booking(guests=[guest(mobile="+34 600-11-22-33")]))
    assert (fields["cidnumber"], fields["credit"]) == ("+34600112233", "5000")
    [(_, no_mobile)] = Hotel(ucm).send(booking(guests=[guest(mobile="n/a")]))
    assert "cidnumber" not in no_mobile and no_mobile["credit"] == "5000"
