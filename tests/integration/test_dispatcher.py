"""Outbox + dispatcher + UCM client against the UCM simulator (HTTPS, digest) and moto: what the phone shows."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from pms_connector.config import PropertyConfig, parse_property
from pms_connector.dispatcher import DispatchResult, dispatch_property
from pms_connector.outbox import OutboxStore
from pms_connector.ucm.client import UcmClient
from pms_connector.ucm.plan import Booking, Planner, Room
from pms_connector.ucm.simulator import UcmSimulator

ADDRESSES = ["101", "102", "103", "104"]
_ids = itertools.count()


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def sim() -> Iterator[UcmSimulator]:
    with UcmSimulator(api_user="cdrapi", api_password="api-pass", pms_user="admin1", pms_password="admin123",
                      addresses=ADDRESSES) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def aws() -> Iterator[None]:
    from moto import mock_aws

    with mock_aws():
        yield


class Site:
    """One property: its config, its outbox on moto, a client to the simulator, in-memory room state."""

    def __init__(self, sim: UcmSimulator, **ucm: Any) -> None:
        import boto3

        from pms_connector.local.template import Template
        from tests.conftest import TEMPLATE

        self.sim = sim
        self.clock = Clock()
        args = next(iter(Template(TEMPLATE).table_definitions().values()))
        table = f"dispatch-{next(_ids)}"
        boto3.client("dynamodb").create_table(**{**args, "TableName": table})
        self.store = OutboxStore(table, clock=self.clock)
        self.prop: PropertyConfig = parse_property({
            "id": f"site-{next(_ids)}", "name": "Site", "timezone": "Europe/Madrid",
            "httppms": {"auth": "token", "token": "site-token-123"}, "ingest": {"api_key": "k" * 20},
            "ucm": {"base_url": sim.url, "api_user": "cdrapi", "api_password": "api-pass", "pms_user": "admin1",
                    "pms_password": "admin123", "ca_pem": sim.ca_pem, "read_timeout_seconds": 2, **ucm}})
        self.client = UcmClient(self.prop.ucm)  # type: ignore[arg-type]
        self.bookings: dict[str, Booking] = {}
        self.rooms: dict[str, Room] = {}

    def pms(self, *records: dict[str, Any]) -> list[int]:
        planner = Planner(self.prop.ucm, self.bookings.get, lambda r: self.rooms.get(r, Room(r)))
        for record in records:
            planner.apply(record)
        for uid in planner.changed_bookings:
            self.bookings[uid] = planner.bookings[uid]  # type: ignore[assignment]
        for name in planner.changed_rooms:
            self.rooms[name] = planner.rooms[name]
        return self.store.enqueue(self.prop.id, planner.commands, fallbacks=planner.fallbacks)

    def dispatch(self, owner: str = "d1") -> DispatchResult:
        return dispatch_property(self.store, self.prop, self.client, owner=owner, clock=self.clock)

    def guest(self, address: str) -> dict[str, Any] | None:
        return self.sim.state()["rooms"][address]["guest"]  # type: ignore[no-any-return]


@pytest.fixture
def site(sim: UcmSimulator, aws: None) -> Iterator[Site]:
    sim.reset_faults()
    for address in ADDRESSES:  # a clean PBX for every test
        if sim.state()["rooms"][address]["checked_in"]:
            _force_checkout(sim, address)
        sim.set_room_status(address, "ok")
    sim.set_pmsapi_enabled(True)
    s = Site(sim)
    yield s
    s.client.close()


def _force_checkout(sim: UcmSimulator, address: str) -> None:
    from pms_connector.config import UcmSettings
    from pms_connector.ucm.commands import UcmCheckout

    settings = UcmSettings(base_url=sim.url, api_user="cdrapi", api_password="api-pass", pms_user="admin1",
                           pms_password="admin123", ca_pem=sim.ca_pem)
    with UcmClient(settings) as client:
        client.send(UcmCheckout(address=address, room=address))


def booking(uid: str, room: str, status: str = "checkin", name: str = "Zoë", surname: str = "O'Brien-Ñúñez",
            **extra: Any) -> dict[str, Any]:
    return {"datetime": "2026-01-01T10:00:00", "action": "BOOKING", "booking_uid": uid, "status": status,
            "room": room, "account": f"a-{uid}", "arrival": "2026-01-01T14:00:00",
            "departure": "2026-01-05T12:00:00", "GUEST_LIST": [{"uid": "g", "name": name, "surname": surname,
                                                                "language": "es"}], **extra}


def test_a_check_in_shows_the_guest_on_the_phone(site: Site) -> None:
    site.pms(booking("b1", "101"))
    result = site.dispatch()
    assert (result.sent, result.ok) == (1, 1)
    guest = site.guest("101")
    assert guest is not None
    assert (guest["firstname"], guest["lastname"], guest["language"]) == ("Zoë", "O'Brien-Ñúñez", "ES")


@pytest.mark.parametrize(("name", "surname"), [("渡辺", "さくら"), ("محمد", "الأحمد"), ("Jean-Luc", "D'Artagnan")])
def test_names_in_any_script_reach_the_ucm_intact(site: Site, name: str, surname: str) -> None:
    site.pms(booking("b1", "102", name=name, surname=surname))
    site.dispatch()
    guest = site.guest("102")
    assert guest is not None
    assert (guest["firstname"], guest["lastname"]) == (name, surname)


def test_move_update_and_checkout_keep_the_phone_right(site: Site) -> None:
    site.pms(booking("b1", "101"))
    site.pms(booking("b1", "103", departure="2026-01-09T12:00:00"))
    site.pms(booking("b1", "103", status="checkout"))
    result = site.dispatch()
    assert result.ok == 4  # checkin, mov, update, checkout
    assert site.guest("101") is None and site.guest("103") is None


def test_a_retryable_failure_blocks_later_commands_until_it_succeeds(site: Site) -> None:
    site.pms(booking("b1", "101"))
    site.pms(booking("b1", "101", status="checkout"))
    site.sim.fail_next(1, code=22)
    first = site.dispatch()
    assert (first.sent, first.retried) == (1, 1)
    assert site.guest("101") is None  # the checkout did not overtake the failed check-in
    assert site.dispatch().sent == 0  # not due yet
    site.clock.now = first.next_due or 0
    second = site.dispatch()
    assert second.ok == 2
    calls = [entry["action"] for entry in site.sim.log() if entry["address"] == "101"][-3:]
    assert calls == ["checkin", "checkin", "checkout"]


def test_after_max_attempts_a_command_is_parked_and_later_ones_go_on(site: Site) -> None:
    site.prop = site.prop.model_copy(update={"ucm": site.prop.ucm.model_copy(update={"max_attempts": 2})})  # type: ignore[union-attr]
    site.pms(booking("b1", "101"))
    site.pms(booking("b2", "102"))
    site.sim.fail_next(5, http_status=500, action="checkin")
    first = site.dispatch()
    assert first.retried == 1
    site.clock.now = first.next_due or 0
    site.sim.reset_faults()
    site.sim.fail_next(1, http_status=500)
    second = site.dispatch()
    assert (second.parked, second.ok) == (1, 1)
    assert site.guest("101") is None and site.guest("102") is not None


def test_an_address_error_is_parked_at_once(site: Site) -> None:
    site.pms(booking("b1", "999"))  # not an extension of this PBX
    site.pms(booking("b2", "104"))
    result = site.dispatch()
    assert (result.parked, result.ok) == (1, 1)


def test_already_checked_in_is_reconciled_with_an_update(site: Site) -> None:
    site.pms(booking("b1", "101", name="First"))
    site.dispatch()
    site.bookings.clear()  # the connector forgot; the PBX did not
    site.rooms.clear()
    site.pms(booking("b9", "101", name="Second"))
    result = site.dispatch()
    assert result.ok == 1
    guest = site.guest("101")
    assert guest is not None and guest["firstname"] == "Second"


def test_an_update_for_a_room_the_ucm_does_not_know_checks_in(site: Site) -> None:
    site.pms(booking("b1", "102"))
    site.dispatch()
    _force_checkout(site.sim, "102")  # the PBX lost the guest
    site.pms(booking("b1", "102", name="Again"))
    assert site.dispatch().ok == 1
    guest = site.guest("102")
    assert guest is not None and guest["firstname"] == "Again"


def test_names_too_long_for_the_ucm_are_shortened_not_dropped(sim: UcmSimulator, aws: None) -> None:
    long_site = Site(sim, name_max_length=64)
    long_site.pms(booking("b1", "104", name="Maximilian-Alexander-Bartholomew-Fitzgerald"))
    result = long_site.dispatch()
    assert result.ok == 1
    guest = long_site.guest("104")
    assert guest is not None and guest["firstname"].startswith("Maximilian-Alexander")
    assert 0 < len(guest["firstname"]) <= 32
    _force_checkout(sim, "104")


def test_auth_error_holds_the_site_and_a_later_probe_resumes(site: Site) -> None:
    site.pms(booking("b1", "101"))
    site.sim.fail_next(1, code=16)
    held = site.dispatch()
    assert held.held and held.sent == 1
    assert site.dispatch().sent == 0  # held: nothing is sent
    site.clock.now = held.next_due or 0
    assert site.dispatch().ok == 1


def test_a_second_dispatcher_finds_the_lease_taken(site: Site) -> None:
    site.pms(booking("b1", "101"))
    assert site.store.acquire(site.prop.id, "other", now=int(site.clock.now), lease_seconds=60) is not None
    assert site.dispatch("d1").busy
    site.clock.now += 61  # the other dispatcher died: its lease expires
    assert site.dispatch("d1").ok == 1


def test_the_sweep_finds_due_properties_in_one_query(site: Site) -> None:
    site.pms(booking("b1", "101"))
    due = dict(site.store.due_properties(int(site.clock.now)))
    assert site.prop.id in due
    site.dispatch()
    assert site.prop.id not in dict(site.store.due_properties(int(site.clock.now)))


def test_a_dispatched_command_costs_at_most_3_aws_calls_and_1_http_request_when_warm(site: Site) -> None:
    from tests.conftest import CallCounter

    site.pms(booking("b1", "101"))
    site.dispatch()  # warms the digest nonce
    site.pms(booking("b1", "101", status="checkout"))
    counter = CallCounter()
    site.store.client.meta.events.register("before-call.*.*", counter)
    requests_before = len(site.sim.log())
    site.dispatch()
    site.store.client.meta.events.unregister("before-call.*.*", counter)
    assert counter.calls == ["dynamodb.UpdateItem", "dynamodb.Query", "dynamodb.TransactWriteItems"]
    assert len(site.sim.log()) - requests_before == 1


def test_operators_list_retry_and_park_commands(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    from pms_connector.cli import main

    base = ["--property", site.prop.id, "--table", site.store.table]
    site.pms(booking("b1", "999"))  # parks: no such extension
    site.dispatch()
    assert main(["outbox", "list", *base]) == 0
    listing = capsys.readouterr().out
    assert "parked" in listing and "[18]" in listing
    assert "Zoë" not in listing  # no guest names on an operator's terminal

    parked_seq = site.store.listing(site.prop.id)[1][0].seq
    assert main(["outbox", "retry", *base, "--seq", str(parked_seq)]) == 0
    assert site.dispatch().parked == 1  # still no such extension, parked again

    site.pms(booking("b2", "101"))
    head = site.store.listing(site.prop.id)[1][-1].seq
    assert main(["outbox", "park", *base, "--seq", str(head), "--reason", "room closed"]) == 0
    assert site.dispatch().sent == 0
    assert main(["outbox", "park", *base, "--seq", "1"]) == 1  # not the next pending command


def test_a_day_of_a_small_hotel_under_random_faults_ends_as_the_pms_intended(site: Site) -> None:
    """Check-ins, sharers, moves, updates, COS changes, wake-ups and checkouts on four rooms, with the UCM
    failing about a third of the calls (22, HTTP 500, resets, delays). At the end the PBX shows exactly what
    the PMS intended, and every command reached it in outbox order."""
    import random

    rng = random.Random(20261122)
    rooms = ["101", "102", "103", "104"]
    in_house: dict[str, str] = {}
    names = ["Ana", "Zoë", "Li Wei", "O'Neil", "Ngozi", "Søren", "Мария", "محمد"]
    events: list[dict[str, Any]] = []
    for step in range(60):
        kind = rng.choice(["checkin", "checkin", "move", "update", "checkout", "cos", "wake", "wake"])
        uid = f"b{rng.randrange(8)}"
        room = rng.choice(rooms)
        if kind == "checkin" and uid not in in_house:
            in_house[uid] = room
            events.append(booking(uid, room, name=names[int(uid[1:])], surname=f"S{step}"))
        elif kind == "move" and uid in in_house:
            in_house[uid] = room
            events.append(booking(uid, room, name=names[int(uid[1:])], surname=f"M{step}"))
        elif kind == "update" and uid in in_house:
            events.append(booking(uid, in_house[uid], name=names[int(uid[1:])], surname=f"U{step}"))
        elif kind == "checkout" and uid in in_house:
            events.append(booking(uid, in_house.pop(uid), status="checkout", name=names[int(uid[1:])]))
        elif kind == "cos":
            events.append({"datetime": "2026-01-01T10:00:00", "action": "COS", "room": room,
                           "cos_pbx": rng.choice(["0", "1", "2"]), "cos_tv": "0", "cos_inet": "0"})
        elif kind == "wake" and in_house:  # the PMS sets wake-ups for guests in house
            events.append({"datetime": "2026-01-01T10:00:00", "action": "WAKE",
                           "room": rng.choice(sorted(in_house.values())),
                           "mode": rng.choice(["S", "S", "C"]), "uid": f"w{rng.randrange(3)}",
                           "waketime": f"2035-01-02T0{rng.randrange(5, 9)}:{rng.choice(['00', '30'])}:00"})
    log_start = len(site.sim.log())
    site.sim.set_random_faults(0.3, seed=7)
    for event in events:
        site.pms(event)
        site.dispatch()
    for _ in range(200):  # time passes: retries become due until the outbox is empty
        if not site.store.pending(site.prop.id, after=site.store.listing(site.prop.id)[0], limit=1):
            break
        site.clock.now += 901
        site.dispatch()
    site.sim.reset_faults()

    done, commands = site.store.listing(site.prop.id, limit=1000)
    assert all(c.seq <= done for c in commands), "commands left undone"
    assert [c for c in commands if c.status == "parked"] == []
    state = site.sim.state()
    for name in rooms:
        intended = site.rooms.get(name, Room(name))
        shown = intended.shown()
        guest = state["rooms"][name]["guest"]
        if shown is None:
            assert guest is None, name
        else:
            assert guest is not None, name
            assert {k: guest[k] for k in ("firstname", "lastname", "account", "cos")} == \
                {k: shown.display.get(k) for k in ("firstname", "lastname", "account", "cos")}, name
        wanted = sorted({(t[:10].replace("-", ""), t[11:16].replace(":", "")) for t in intended.wakeups.values()})
        assert sorted((w["w_date"], w["w_time"]) for w in state["wakeups"][name]) == wanted, name
    # In order: the successful calls are the outbox's commands, in outbox order.
    succeeded = [(e["action"], e["address"]) for e in site.sim.log()[log_start:] if e["code"] in (0, -100)]
    assert succeeded == [(c.action, c.fields["address"]) for c in commands]


def test_a_command_enqueued_while_the_last_one_is_sent_is_sent_in_the_same_run(site: Site) -> None:
    """finish() finds the new command's due marker, keeps the lease and the run goes on (no lost lease)."""
    site.pms(booking("b1", "101"))
    original_send = site.client.send

    def send_and_enqueue(command: Any, **kwargs: Any) -> Any:
        reply = original_send(command, **kwargs)
        if command.action == "checkin":
            site.client.send = original_send  # type: ignore[method-assign]
            site.pms(booking("b2", "102"))  # the PMS checks in another guest meanwhile
        return reply

    site.client.send = send_and_enqueue  # type: ignore[method-assign]
    result = site.dispatch()
    assert result.ok == 2
    assert site.guest("102") is not None
    assert site.store.acquire(site.prop.id, "someone-else", now=int(site.clock.now), lease_seconds=5) is not None


def test_a_wake_up_whose_time_passed_while_the_ucm_was_away_is_never_sent_late(site: Site) -> None:
    site.pms(booking("b1", "101"), {"datetime": "2026-01-01T10:00:00", "action": "WAKE", "room": "101",
                                    "mode": "S", "uid": "w1", "waketime": "2027-01-15T12:00:00"})
    site.sim.fail_next(1, code=22, action="wakeup")  # the UCM is busy; the retry comes after the wake-up time
    first = site.dispatch()
    assert first.retried == 1
    site.clock.now = 1_800_000_000 + 86_400 * 3  # days later
    site.dispatch()
    _, commands = site.store.listing(site.prop.id)
    assert [(c.action, c.status) for c in commands] == [("checkin", "pending"), ("wakeup", "expired")]
    assert site.store.parked_counts() == {}  # not an operator's problem: the result check reports F
    assert [e["action"] for e in site.sim.log() if e["address"] == "101"][-2:] == ["checkin", "wakeup"]
    assert site.sim.state()["wakeups"]["101"] == []
