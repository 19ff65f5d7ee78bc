"""Room and booking state kept by the ingest transaction, with the UCM commands it implies (issue 3)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Deployment, load_event
from tests.helpers import answer, http_event, ingest_event

INGEST = "IngestFunction"
KEY = "ucm-inn-ingest-key-0123456789"


@pytest.fixture
def ucm_inn(deployment: Deployment) -> Deployment:
    deployment.add_property({
        "id": "ucm-inn", "name": "UCM Inn", "timezone": "Europe/Madrid",
        "httppms": {"auth": "token", "token": "ucm-inn-token-1"}, "ingest": {"api_key": KEY},
        "ucm": {"base_url": "https://10.9.8.7:8089", "api_user": "cdrapi", "api_password": "x", "pms_user": "admin1",
                "pms_password": "admin123", "rooms": {"101": "1101"}}})
    return deployment


def booking(uid: str, room: str, status: str = "checkin", **extra: Any) -> dict[str, Any]:
    return {"datetime": "2026-01-01T10:00:00", "action": "BOOKING", "booking_uid": uid, "status": status,
            "room": room, "account": f"a-{uid}", "arrival": "2026-01-01T14:00:00",
            "departure": "2026-01-05T12:00:00",
            "GUEST_LIST": [{"uid": "g", "name": "Ana", "surname": "García", "language": "es",
                            "passport": "P123"}], **extra}


def send(dep: Deployment, *records: dict[str, Any]) -> list[int]:
    response = dep.invoke(INGEST, ingest_event("ucm-inn", list(records), key=KEY))
    assert response["statusCode"] == 202, response["body"]
    return list(answer(response)["sequence"])


def rooms(dep: Deployment, room: str | None = None) -> tuple[int, dict[str, Any]]:
    path = "/pms/ucm-inn/rooms" + (f"/{room}" if room else "")
    route = "/pms/{property}/rooms" + ("/{room}" if room else "")
    params = {"property": "ucm-inn", **({"room": room} if room else {})}
    response = dep.invoke(INGEST, http_event("GET", path, route=route, path_parameters=params,
                                             headers={"authorization": f"Bearer {KEY}"}))
    return response["statusCode"], answer(response)


def outbox(dep: Deployment) -> list[tuple[int, str, dict[str, str]]]:
    from pms_connector.outbox import OutboxStore

    store = OutboxStore(dep.names["ConnectorTable"])
    return [(c.seq, c.action, c.fields) for c in store.pending("ucm-inn", after=0, limit=100)]


def test_a_check_in_is_state_and_a_ucm_command_in_one_request(ucm_inn: Deployment) -> None:
    [seq] = send(ucm_inn, booking("b1", "101"))
    status, room = rooms(ucm_inn, "101")
    assert status == 200
    assert [o["booking_uid"] for o in room["occupants"]] == ["b1"]
    assert room["occupants"][0]["lastname"] == "García"
    assert "P123" not in str(room)  # the passport stays in the booking, not in the room view
    assert outbox(ucm_inn) == [(seq * 100, "checkin", {
        "address": "1101", "room": "101", "account": "a-b1", "firstname": "Ana", "lastname": "García",
        "language": "ES", "datein": "2026/01/01 14:00", "dateout": "2026/01/05 12:00", "cos": "4"})]


def test_commands_follow_record_order_across_requests(ucm_inn: Deployment) -> None:
    send(ucm_inn, booking("b1", "101"), booking("b1", "102"))
    send(ucm_inn, booking("b1", "102", status="checkout"))
    assert [action for _, action, _ in outbox(ucm_inn)] == ["checkin", "mov", "checkout"]
    seqs = [seq for seq, _, _ in outbox(ucm_inn)]
    assert seqs == sorted(seqs)


def test_state_only_records_change_the_room_and_make_no_command(ucm_inn: Deployment) -> None:
    base = {"datetime": "2026-01-01T10:00:00", "room": "103"}
    send(ucm_inn, {**base, "action": "DND", "active": True}, {**base, "action": "RS", "status": "C"})
    _, room = rooms(ucm_inn, "103")
    assert (room["dnd"], room["status"]) == (True, "C")
    assert outbox(ucm_inn) == []


def test_the_rooms_listing_and_an_unknown_room(ucm_inn: Deployment) -> None:
    send(ucm_inn, booking("b1", "101"), booking("b2", "102"))
    status, listing = rooms(ucm_inn)
    assert status == 200 and [r["room"] for r in listing["rooms"]] == ["101", "102"]
    assert rooms(ucm_inn, "999")[0] == 404


def test_a_property_without_ucm_keeps_state_and_no_outbox(deployment: Deployment) -> None:
    response = deployment.invoke(INGEST, load_event("ingest-post-booking-checkin"))
    assert response["statusCode"] == 202
    room = deployment.invoke(INGEST, load_event("ingest-get-room"))
    assert room["statusCode"] == 200
    assert answer(room)["occupants"][0]["booking_uid"]


def test_a_request_racing_another_on_the_same_room_replans_and_both_land(ucm_inn: Deployment) -> None:
    """Between this request's state read and its transaction, another request checks b0 into room 104."""
    from pms_connector import aws

    raced = {"done": False}

    def competing_request(**_: Any) -> None:
        if not raced["done"]:
            raced["done"] = True
            send(ucm_inn, booking("b0", "104"))  # nested: runs to completion first

    aws.dynamodb().meta.events.register("before-call.dynamodb.TransactWriteItems", competing_request)
    send(ucm_inn, booking("b1", "104"))
    aws.dynamodb().meta.events.unregister("before-call.dynamodb.TransactWriteItems", competing_request)

    _, room = rooms(ucm_inn, "104")
    assert [o["booking_uid"] for o in room["occupants"]] == ["b0", "b1"]
    assert [action for _, action, _ in outbox(ucm_inn)] == ["checkin"]  # b1 is a sharer: no second checkin


# --- a request sent again: appended once -------------------------------------------------------------------


def fifo_uids(dep: Deployment) -> list[str]:
    from pms_connector.store import ConnectorStore

    return [r.record.get("uid") or r.record["booking_uid"]
            for r in ConnectorStore(dep.names["ConnectorTable"]).read_fifo("ucm-inn", after=0, limit=1_000)]


def dnd(n: int) -> dict[str, Any]:
    return {"datetime": "2026-01-01T10:00:00", "action": "DND", "room": f"{100 + n}", "active": True,
            "uid": f"d{n}"}


def test_the_same_body_sent_again_is_answered_as_the_first_time_and_appends_nothing(ucm_inn: Deployment) -> None:
    first = send(ucm_inn, booking("b1", "101"), dnd(1))
    assert send(ucm_inn, booking("b1", "101"), dnd(1)) == first
    assert fifo_uids(ucm_inn) == ["b1", "d1"]
    assert [a for _, a, _ in outbox(ucm_inn)] == ["checkin"]  # its UCM command once too
    send(ucm_inn, {**dnd(1), "datetime": "2026-01-01T10:00:01"})  # the same action, later: a new request
    assert fifo_uids(ucm_inn) == ["b1", "d1", "d1"]


def test_a_split_request_sent_again_after_its_first_part_appends_only_the_rest(
    ucm_inn: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """100 records on 100 rooms need several transactions; the second fails (the function died): sent
    again, the first part is not appended a second time and the rest is appended once."""
    from pms_connector.errors import StorageBusy
    from pms_connector.state import StateStore

    records = [dnd(n) for n in range(100)]
    calls = {"n": 0}
    real = StateStore.ingest

    def second_part_fails(self: StateStore, *args: Any, **kwargs: Any) -> list[int]:
        got = real(self, *args, **kwargs)  # TooManyItems is raised before anything is written
        calls["n"] += 1
        if calls["n"] == 2:
            raise StorageBusy("the function died after its first part")
        return got

    monkeypatch.setattr(StateStore, "ingest", second_part_fails)
    response = ucm_inn.invoke(INGEST, ingest_event("ucm-inn", records, key=KEY))
    assert response["statusCode"] == 503
    partial = fifo_uids(ucm_inn)
    assert 0 < len(partial) < 100 and partial == [f"d{n}" for n in range(len(partial))]
    monkeypatch.setattr(StateStore, "ingest", real)
    assert send(ucm_inn, *records) == list(range(1, 101))
    assert fifo_uids(ucm_inn) == [f"d{n}" for n in range(100)]


def test_two_identical_requests_at_once_append_once(ucm_inn: Deployment) -> None:
    import threading

    answers: list[list[int]] = []
    records = [booking("b1", "101"), dnd(2)]
    barrier = threading.Barrier(2)

    def post() -> None:
        barrier.wait()
        answers.append(send(ucm_inn, *records))

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers[0] == answers[1] == [1, 2]
    assert fifo_uids(ucm_inn) == ["b1", "d2"]
