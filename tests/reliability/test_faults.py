"""The connector under faults: AWS calls failing at random and UCMs failing at random, end to end.

The local runner runs in this process (its moto server and API still over real HTTP) so that a botocore
``before-call`` hook on the connector's own clients (DynamoDB, EventBridge, SSM, Secrets Manager) can fail
10% of their calls, seeded: throttling (ThrottlingException / ProvisionedThroughputExceededException), 500s
(InternalServerError and each service's equivalent) and read timeouts. Every UCM simulator fails 10% of
its calls too ([22] busy, HTTP 500, connection reset, a delay). Meanwhile, per property:

- the PMS sends a day of a small hotel (check-ins, sharers, moves, updates, COS, wake-ups, check-outs) in
  order, sending again whatever was answered 'retry';
- pmslink polls it with GET_REQUEST (two pollers; ``remove`` delivery, or ``confirm`` with 20% of the answers
  lost on the way back) and posts charges, sending again on 'retry' and, now and then, sending again a
  charge whose answer it "lost".

Then the AWS faults stop and the dispatcher drains the outboxes, the UCMs still failing. At the end: every
request that met a fault was answered 'retry' (HTTPPMS 100-125 or a link-level 5xx; ingest 503/500), no
valid request was refused (no HTTPPMS 2xx code, no ingest 4xx); pmslink got every record once and in
order; no charge is stored twice; every UCM shows what the PMS intended (Planner, the same oracle as
tests/integration/test_dispatcher.py) and no command reached it before an earlier one had succeeded.

Time is compressed: the sweeper runs every second, the dispatcher's retry backoff is 1-4 s and its lease
4 s (15 s in the full run; a dispatcher stopped by a fault holds its site that long), so minutes of
retries take seconds.

Below, tests of what these random faults cannot reach reliably: a call that succeeded but whose answer
was lost, a command sent again, a lease that ran out.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from pms_connector.store import ConnectorStore
from pms_connector.ucm.plan import Planner, Room
from tests.conftest import Deployment
from tests.helpers import signed
from tests.reliability.conftest import (
    Client,
    FaultInjector,
    Hotel,
    Ledger,
    LocalRun,
    Queue,
    Scale,
    Verdict,
    check,
    credentials,
    hotels,
    ingest_until_accepted,
    local_runner,
    poll_confirm,
    poll_remove,
    report,
    run_threads,
    warm_up,
)

pytestmark = pytest.mark.e2e
AWS_FAULT_RATE = 0.10
UCM_FAULT_RATE = 0.10
ROOMS = ["101", "102", "103", "104", "105", "106"]
NAMES = ["Anabel", "Zoë", "Li Wei", "O'Neil", "Ngozi", "Søren", "Мария", "محمد", "Jürgen", "Saoirse"]
# Few distinct names: the session's leak scan searches every log line for each guest name the tests used.
SURNAMES = ["García", "Øvergaard", "Nakamura", "Okafor", "Dubois", "Kowalski", "Murphy", "Rossi"]
POLLERS = 2
RESEND_RATE = 0.2  # share of the charges pmslink sends a second time (it lost the first answer)


@pytest.fixture
def site(tmp_path_factory: pytest.TempPathFactory, scale: Scale) -> Iterator[tuple[LocalRun, list[Hotel]]]:
    """The runner in this process for the fault test only: its pollers must be gone before the next test
    (they call the connector's shared clients and caches)."""
    group = hotels("flt", scale.fault_properties, delivery=lambda i: "confirm" if i % 2 == 0 else "remove",
                   ucm=True)
    with local_runner(group, tmp_path_factory.mktemp("faults"), sweep_speedup=60, lease_seconds=scale.lease_seconds,
                      backoff_base_seconds=1, backoff_cap_seconds=4) as run:
        yield run, group


# --- what the PMS sends ----------------------------------------------------------------------------------


def booking(pid: str, uid: str, room: str, name: str, surname: str, status: str = "checkin") -> dict[str, Any]:
    return {"datetime": "2026-01-01T10:00:00", "action": "BOOKING", "booking_uid": f"{pid}-{uid}", "status": status,
            "room": room, "account": f"a-{uid}", "arrival": "2026-01-01T14:00:00",
            "departure": "2026-01-05T12:00:00",
            "GUEST_LIST": [{"uid": "g", "main": True, "name": name, "surname": surname, "language": "es"}]}


def hotel_day(pid: str, count: int, rng: random.Random) -> list[dict[str, Any]]:
    """``count`` PMS records of a small hotel's day, each with a ``ref`` that tells it apart (an extra field:
    records reach pmslink as the PMS wrote them).

    Wake-ups (in 2035) only for guests in house, each with its own uid, as a PMS numbers them: a wake-up
    follows its guest on a move (when the guest was alone in the room) and ends when the room empties, so
    the PMS names the room where the wake-up is now when it changes or cancels it."""
    in_house: dict[str, str] = {}  # booking -> room
    names: dict[str, str] = {}
    wakeups: dict[str, str] = {}  # wake-up uid -> room
    records: list[dict[str, Any]] = []
    step = 0

    def leaves(uid: str, room: str) -> None:  # the room's wake-ups follow its last guest out (or end)
        del in_house[uid]
        if room not in in_house.values():
            for wake, where in list(wakeups.items()):
                if where == room:
                    del wakeups[wake]

    while len(records) < count:
        step += 1
        kind = rng.choice(["checkin", "checkin", "move", "update", "checkout", "cos", "wake", "wake", "wake"])
        uid = f"b{rng.randrange(10)}"
        room = rng.choice(ROOMS)
        name = names.setdefault(uid, rng.choice(NAMES))
        record: dict[str, Any] | None = None
        if kind == "checkin" and uid not in in_house:
            in_house[uid] = room
            record = booking(pid, uid, room, name, rng.choice(SURNAMES))
        elif kind == "move" and uid in in_house and in_house[uid] != room:
            old = in_house[uid]
            alone = list(in_house.values()).count(old) == 1
            del in_house[uid]
            in_house[uid] = room
            if alone:
                wakeups.update({wake: room for wake, where in wakeups.items() if where == old})
            record = booking(pid, uid, room, name, rng.choice(SURNAMES))
        elif kind == "update" and uid in in_house:
            record = booking(pid, uid, in_house[uid], name, rng.choice(SURNAMES))
        elif kind == "checkout" and uid in in_house:
            record = booking(pid, uid, in_house[uid], name, rng.choice(SURNAMES), status="checkout")
            leaves(uid, in_house[uid])
        elif kind == "cos":
            record = {"datetime": "2026-01-01T10:00:00", "action": "COS", "room": room,
                      "cos_pbx": rng.choice(["0", "1", "2"]), "cos_tv": "0", "cos_inet": "0"}
        elif kind == "wake" and in_house:
            mode = rng.choice(["new", "new", "change", "cancel"])
            if mode == "new" or not wakeups:
                wake, room = f"{pid}-w{step}", rng.choice(sorted(set(in_house.values())))
                wakeups[wake] = room
            else:
                wake = rng.choice(sorted(wakeups))
                room = wakeups.pop(wake) if mode == "cancel" else wakeups[wake]
            record = {"datetime": "2026-01-01T10:00:00", "action": "WAKE", "room": room,
                      "mode": "C" if mode == "cancel" else "S", "uid": wake,
                      "waketime": f"2035-01-02T0{rng.randrange(5, 9)}:{rng.choice(['00', '30'])}:00"}
        if record is not None:
            record["ref"] = f"{pid}-r{len(records) + 1}"
            records.append(record)
    return records


def pms(run: LocalRun, queue: Queue, records: list[dict[str, Any]], ledger: Ledger, deadline: float,
        rng: random.Random) -> None:
    """The hotel's PMS: its records in order, 1-3 a request, each request sent again until accepted."""
    client = Client(run.url, ledger)
    retries: Counter[str] = Counter()
    order: list[str] = []
    queue.sent_order[0] = order
    try:
        n = 0
        while n < len(records):
            batch = records[n:n + rng.randint(1, 3)]
            sequence = ingest_until_accepted(client, queue.hotel, batch, deadline=deadline, retries=retries)
            assert len(sequence) == len(batch), sequence
            with queue.lock:
                for record, seq in zip(batch, sequence, strict=True):
                    queue.sent[record["ref"]] = record
                    queue.seq_of[record["ref"]] = seq
                    order.append(record["ref"])
                queue.counts["ingest requests"] += 1 + retries["ingest"]
                queue.counts["ingest retries"] += retries["ingest"]
                retries.clear()
            n += len(batch)
    finally:
        with queue.lock:
            queue.counts["link errors"] += client.link_errors
        client.close()


# --- what pmslink posts ----------------------------------------------------------------------------------


@dataclass
class Charges:
    hotel: Hotel
    posted: dict[str, dict[str, Any]] = field(default_factory=dict)  # description -> the POST request
    counts: Counter[str] = field(default_factory=Counter)


def post_charges(run: LocalRun, charges: Charges, count: int, ledger: Ledger, deadline: float,
                 rng: random.Random) -> None:
    """pmslink posting minibar charges: each POST sent again, unchanged, until answered 0; some sent once more
    after that (as if the first answer had been lost): the answer must be the same and nothing stored twice."""
    client = Client(run.url, ledger)
    hotel = charges.hotel
    try:
        for n in range(count):
            description = f"{hotel.id} minibar {n}"
            request = {"action": "POST", "property": hotel.id, "room": rng.choice(ROOMS), "post_type": "MB",
                       "article": f"A{n % 7}", "description": description, "units": 1 + n % 3,
                       "price": round(1 + n % 5 + n % 100 / 100, 2), **credentials(hotel)}
            first = _until_ok(client, hotel, request, charges, deadline)
            charges.posted[description] = request
            if rng.random() < RESEND_RATE:
                charges.counts["sent again after success"] += 1
                again = _until_ok(client, hotel, request, charges, deadline)
                assert again == first, f"a repeated charge was answered {again}, first {first}"
    finally:
        charges.counts["link errors"] += client.link_errors
        client.close()


def _until_ok(client: Client, hotel: Hotel, request: dict[str, Any], charges: Charges, deadline: float
              ) -> dict[str, Any]:
    while True:
        charges.counts["post requests"] += 1
        answer = client.httppms(hotel, request)
        if answer is not None and answer.get("code") == 0:
            return answer
        charges.counts[f"post code {None if answer is None else answer.get('code')}"] += 1
        if time.monotonic() > deadline:
            raise AssertionError(f"{hotel.id}: a charge was not accepted before the deadline")
        time.sleep(0.01)


# --- the UCM at the end ----------------------------------------------------------------------------------


def intended_rooms(prop: Any, records: list[dict[str, Any]]) -> Planner:
    """What the PMS intended the phones to show: its records applied in order by the Planner."""
    planner = Planner(prop.ucm, lambda _uid: None, Room)
    for record in records:
        planner.apply(record)
    return planner


def ucm_mismatches(planner: Planner, state: dict[str, Any]) -> list[str]:
    problems = []
    for name in ROOMS:
        intended = planner.room(name)
        shown = intended.shown()
        guest = state["rooms"][name]["guest"]
        keys = ("firstname", "lastname", "account", "cos")
        want = None if shown is None else {k: shown.display.get(k) for k in keys}
        have = None if guest is None else {k: guest.get(k) for k in keys}
        if want != have:
            problems.append(f"room {name}: the phone shows {have}, the PMS intended {want}")
        wanted = sorted({(t[:10].replace("-", ""), t[11:16].replace(":", "")) for t in intended.wakeups.values()})
        got = sorted((w["w_date"], w["w_time"]) for w in state["wakeups"][name])
        if wanted != got:
            problems.append(f"room {name}: wake-ups {got} on the UCM, the PMS intended {wanted}")
    return problems


SUCCESS = (0, -100)


def _variants(command: Any) -> list[tuple[str, dict[str, str]]]:
    """The calls that carry out an outbox command: itself, and its reconciliation (DESIGN.md)."""
    variants = [(command.action, command.fields)]
    if command.action == "checkin":
        variants.append(("update", command.fields))
    elif command.action == "update":
        variants.append(("checkin", command.fields))
    elif command.action == "mov" and command.fallback:
        variants.append(("checkin", command.fallback))
    return variants


def _is(entry: dict[str, Any], command: Any) -> bool:
    fields = entry["fields"]
    return any(entry["action"] == action and all(fields.get(k) == v for k, v in want.items() if k in fields)
               and fields.get("address") == want.get("address") for action, want in _variants(command))


def _succeeded(entry: dict[str, Any]) -> bool:
    return entry["code"] in SUCCESS or (entry["code"] == 20 and entry["action"] == "checkout")


@dataclass
class OrderWalk:
    out_of_order: list[str] = field(default_factory=list)
    resent: int = 0  # calls for a command that had already succeeded (its completion was not recorded)
    unmatched: list[str] = field(default_factory=list)


def walk_order(commands: list[Any], log: list[dict[str, Any]]) -> OrderWalk:
    """Every call the UCM got, against the outbox in sequence order: a call for a command is out of order
    when an earlier command (not parked) had not succeeded yet."""
    walk = OrderWalk()
    commands = sorted(commands, key=lambda c: c.seq)
    skippable = {i for i, c in enumerate(commands) if c.status in ("parked", "expired")}
    head = 0
    for entry in log:
        if head < len(commands) and _is(entry, commands[head]):
            if _succeeded(entry):
                head += 1
            continue
        later = next((j for j in range(head + 1, len(commands)) if _is(entry, commands[j])), None)
        if later is not None and all(j in skippable for j in range(head, later)):
            head = later + 1 if _succeeded(entry) else later  # the commands before it were parked
            continue
        if any(_is(entry, commands[j]) for j in range(head)):
            walk.resent += 1
            continue
        description = f"{entry['action']} {entry['address']} (code {entry['code']}) while seq " \
                      f"{commands[head].seq if head < len(commands) else '-'} was pending"
        (walk.out_of_order if later is not None else walk.unmatched).append(description)
    return walk


def count_ucm_faults(sim: Any, counts: Counter[str]) -> None:
    """Count the faults the simulator picks (by kind), as it picks them."""
    admit = sim._admit

    def counting(call: Any) -> Any:
        entry, fault = admit(call)
        if fault is not None:
            kind = ("[22]" if fault.code is not None else f"http-{fault.http_status}" if fault.http_status
                    else "reset" if fault.reset else "timeout" if fault.timeout else "delay")
            counts[kind] += 1
        return entry, fault

    sim._admit = counting


def wait_for_outboxes(run: LocalRun, group: list[Hotel], deadline: float) -> dict[str, tuple[int, list[Any]]]:
    """Each property's done cursor and commands, once every command is finished (sent or parked)."""
    observer = run.observer()
    while True:
        listings = {h.id: observer.listing(h.id, limit=100_000) for h in group}
        if all(all(c.seq <= done for c in commands) for done, commands in listings.values()):
            return listings
        if time.monotonic() > deadline:
            left = {pid: sum(c.seq > done for c in commands) for pid, (done, commands) in listings.items()}
            raise AssertionError(f"UCM commands still pending at the deadline: {left}")
        time.sleep(0.5)


# --- the test --------------------------------------------------------------------------------------------


def test_under_aws_and_ucm_faults_nothing_is_lost_duplicated_or_reordered(
    site: tuple[LocalRun, list[Hotel]], scale: Scale
) -> None:
    run, group = site
    ledger = Ledger()
    warm_up(run.url, group, ledger)
    faults = FaultInjector(AWS_FAULT_RATE, seed=20261122)
    faults.install_connector_clients()
    ledger.faults = faults
    simulators = run.running.simulators
    log_start = {h.id: len(simulators[h.id].log()) for h in group}
    days = {h.id: hotel_day(h.id, scale.fault_records_per_property, random.Random(f"day/{h.id}")) for h in group}
    queues = {h.id: Queue(h, key="ref") for h in group}
    charges = {h.id: Charges(h) for h in group}
    ingest_done = {h.id: threading.Event() for h in group}
    started = time.monotonic()
    deadline = started + scale.time_budget_s

    def the_pms(hotel: Hotel) -> None:
        try:
            pms(run, queues[hotel.id], days[hotel.id], ledger, deadline, random.Random(f"pms/{hotel.id}"))
        finally:
            ingest_done[hotel.id].set()

    ucm_faults: Counter[str] = Counter()
    for index, hotel in enumerate(group):
        count_ucm_faults(simulators[hotel.id], ucm_faults)
        simulators[hotel.id].set_random_faults(UCM_FAULT_RATE, seed=index)
    faults.active = True
    try:
        workers = [lambda h=h: the_pms(h) for h in group]
        workers += [lambda h=h: post_charges(run, charges[h.id], scale.charges_per_property, ledger, deadline,
                                             random.Random(f"charges/{h.id}")) for h in group]
        workers += [lambda h=h, p=p: (poll_confirm if h.delivery == "confirm" else poll_remove)(
                        run.url, queues[h.id], p, ingest_done[h.id], ledger, deadline)
                    for h in group for p in range(POLLERS)]
        run_threads(workers, "faults")
        traffic_s = time.monotonic() - started
        # The AWS faults stop with the traffic: a dispatcher they stop holds its site for the lease, which
        # would make the drain slow, not more telling. The UCMs keep failing until their outboxes are done.
        faults.active = False
        listings = wait_for_outboxes(run, group, deadline)
    finally:
        faults.active = False
        for hotel in group:
            simulators[hotel.id].reset_faults()
    elapsed = time.monotonic() - started

    # pmslink's side: every record once, in order, as the PMS wrote it.
    verdict = Verdict()
    for hotel in group:
        check(queues[hotel.id], hotel.delivery, verdict)
    # Charges: each stored once.
    observer = run.observer()
    charge_problems = []
    stored_charges = 0
    for hotel in group:
        stored = Counter(c.description for room in ROOMS for c in observer.charges(hotel.id, room))
        stored_charges += sum(stored.values())
        posted = charges[hotel.id].posted
        twice = {d: n for d, n in stored.items() if n > 1}
        missing = set(posted) - set(stored)
        if twice or missing or set(stored) - set(posted):
            charge_problems.append(f"{hotel.id}: stored twice {twice}, missing {sorted(missing)}")
        totals = {c.description: Decimal(c.total) for room in ROOMS for c in observer.charges(hotel.id, room)}
        for description, request in posted.items():
            if totals.get(description) != (request["units"] * Decimal(str(request["price"]))).quantize(
                    Decimal("0.01")):
                charge_problems.append(f"{hotel.id}: {description} stored as {totals.get(description)}")
    # The UCMs: what the PMS intended, commands in order.
    ucm_problems: list[str] = []
    walks: dict[str, OrderWalk] = {}
    ucm_calls = 0
    parked: Counter[str] = Counter()
    for hotel in group:
        prop = run.running.properties[hotel.id]
        ucm_problems += [f"{hotel.id} {p}" for p in ucm_mismatches(intended_rooms(prop, days[hotel.id]),
                                                                    simulators[hotel.id].state())]
        log = simulators[hotel.id].log()[log_start[hotel.id]:]
        ucm_calls += len(log)
        _, commands = listings[hotel.id]
        parked.update(parked_kind(c) for c in commands if c.status == "parked")
        walks[hotel.id] = walk_order(commands, log)

    counts: Counter[str] = Counter()
    for queue in queues.values():
        counts.update(queue.counts)
    for posting in charges.values():
        counts.update(posting.counts)
    records = sum(len(q.sent) for q in queues.values())
    report("faults", scale, records=records, properties=len(group), charges=sum(len(c.posted) for c in
           charges.values()), charges_stored=stored_charges, requests=sum(ledger.answers.values()),
           requests_that_met_a_fault=ledger.faulted_requests, aws_calls=faults.calls,
           aws_faults=faults.injected, aws_faults_by_kind=dict(faults.by_kind),
           aws_faults_in_background=faults.background, ucm_calls=ucm_calls, ucm_faults=sum(ucm_faults.values()),
           ucm_faults_by_kind=dict(ucm_faults),
           ucm_commands=sum(len(c) for _, c in listings.values()), ucm_resent=sum(w.resent for w in walks.values()),
           ucm_parked=dict(parked), ingest_retries=counts["ingest retries"], answers_dropped=counts["answers dropped"],
           charges_sent_again=counts["sent again after success"], link_errors=counts["link errors"],
           lost=verdict.lost, duplicated=verdict.duplicated, reordered=verdict.reordered, altered=verdict.altered,
           ucm_out_of_order=sum(len(w.out_of_order) for w in walks.values()),
           answers_after_a_fault={k.removesuffix(" after a fault"): n for k, n in ledger.answers.items()
                                  if k.endswith(" after a fault")},
           traffic_s=traffic_s, elapsed_s=elapsed)
    assert faults.injected > 0, "no AWS fault was injected"
    assert scale.full is False or sum(ucm_faults.values()) > 0, "no UCM fault was injected"
    assert records == len(group) * scale.fault_records_per_property
    assert not ledger.violations, ledger.violations[:10]
    assert not verdict.problems, verdict.problems[:10]
    assert not charge_problems, charge_problems[:10]
    assert not ucm_problems, ucm_problems[:10]
    out_of_order = [f"{pid}: {p}" for pid, w in walks.items() for p in w.out_of_order + w.unmatched]
    assert not out_of_order, out_of_order[:10]
    # Nothing waits for an operator: every fault here is one retrying or reconciling gets past.
    assert not parked, parked


def parked_kind(command: Any) -> str:
    error = command.last_error or ""
    if command.action == "wakeup" and command.fields.get("w_action") == "0" and error.startswith("[20]"):
        return "wake-up cancel on an empty room [20]"
    if command.action == "mov" and error.startswith("[19]"):
        return "move sent again [19]"
    return f"{command.action} {error}"


# --- an AWS call that succeeded but whose answer was lost (a timeout after the write) --------------------
# The faults above fail a call before it reaches AWS. A read timeout can also come after DynamoDB applied
# the write (botocore retries it with the same ClientRequestToken, but a Lambda timeout or three timeouts in
# a row end with the write done and an error in hand). These tests lose the answer of one call that
# succeeded, through botocore's ``after-call`` event, on the handlers in process (tests/conftest.py's
# deployment on moto).


@contextmanager
def answer_lost(operation: str, *, times: int = 1) -> Iterator[list[int]]:
    """The next ``times`` DynamoDB ``operation`` calls of the connector succeed, and then time out."""
    from botocore.exceptions import ReadTimeoutError

    from pms_connector import aws

    left = [times]

    def after_call(**_: Any) -> None:
        if left[0] > 0:
            left[0] -= 1
            raise ReadTimeoutError(endpoint_url="https://dynamodb (the answer was lost)")

    event = f"after-call.dynamodb.{operation}"
    aws.dynamodb().meta.events.register(event, after_call)
    try:
        yield left
    finally:
        aws.dynamodb().meta.events.unregister(event, after_call)
    assert left[0] == 0, f"{operation} was not called"


RESORT = "demo-resort"  # tests/conftest.py's demo properties: demo-hotel delivers in remove mode, this one confirm


def _resort_request(request: dict[str, Any]) -> dict[str, Any]:
    from tests.conftest import local_stamp
    from tests.helpers import RESORT_TOKEN

    return {"datetime": local_stamp("America/New_York"), "property": RESORT, "usertoken": RESORT_TOKEN, **request}


def _msgtxt(n: int) -> dict[str, Any]:
    return {"datetime": "2026-01-01T10:00:00", "action": "MSGTXT", "room": "101", "uid": f"m{n}", "text": "hello"}


def _httppms(deployment: Deployment, body: dict[str, Any]) -> dict[str, Any]:
    from tests.helpers import answer, httppms_event

    return answer(deployment.invoke("HttppmsFunction", httppms_event(body)))


def _ingest(deployment: Deployment, pid: str, records: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    from tests.helpers import DEMO_INGEST_KEY, RESORT_INGEST_KEY, answer, ingest_event

    key = RESORT_INGEST_KEY if pid == RESORT else DEMO_INGEST_KEY
    response = deployment.invoke("IngestFunction", ingest_event(pid, records, key=key))
    return response["statusCode"], answer(response)


def test_a_charge_stored_before_its_answer_was_lost_is_stored_once(deployment: Deployment) -> None:
    charge = signed({"action": "POST", "property": "demo-hotel", "room": "101", "post_type": "MB",
                     "article": "Water", "units": 2, "price": 1.5})
    with answer_lost("TransactWriteItems"):
        first = _httppms(deployment, charge)
    again = _httppms(deployment, charge)  # pmslink sends the same request again
    stored = ConnectorStore(deployment.names["ConnectorTable"]).charges("demo-hotel", "101")
    assert 100 <= first["code"] <= 125, first
    assert again["code"] == 0, again
    assert [c.total for c in stored] == ["3.00"]


def test_confirm_delivery_loses_nothing_when_cursor_writes_succeed_but_their_answers_are_lost(
    deployment: Deployment,
) -> None:
    assert _ingest(deployment, RESORT, [_msgtxt(n) for n in range(5)])[0] == 202
    received: list[str] = []
    confirm: str | None = None
    answers = []
    while len(answers) < 10:  # each request's cursor write succeeds, its answer is lost; pmslink sends again
        request = {"action": "GET_REQUEST", **({"confirm": confirm} if confirm else {})}
        with answer_lost("UpdateItem"):
            answers.append(_httppms(deployment, _resort_request(request))["code"])
        got = _httppms(deployment, _resort_request(request))
        if "ACTION_LIST" not in got:
            break  # the last batch is confirmed and nothing is left
        received += [r["uid"] for r in got["ACTION_LIST"]]
        confirm = got["batch"]
    assert all(100 <= code <= 125 for code in answers), answers
    assert received == [f"m{n}" for n in range(5)]


def test_an_ingest_whose_answer_was_lost_after_the_write_is_not_queued_twice(deployment: Deployment) -> None:
    records = [_msgtxt(1), _msgtxt(2)]
    with answer_lost("TransactWriteItems"):
        status, _ = _ingest(deployment, "demo-hotel", records)
    assert status == 503  # 'retry': the PMS sends the same body again
    assert _ingest(deployment, "demo-hotel", records)[0] == 202
    got = _httppms(deployment, signed({"action": "GET_REQUEST", "property": "demo-hotel"}))
    assert [r["uid"] for r in got.get("ACTION_LIST", [])] == ["m1", "m2"]


def test_remove_delivery_skips_nothing_when_a_cursor_move_succeeds_but_its_answer_is_lost(
    deployment: Deployment,
) -> None:
    assert _ingest(deployment, "demo-hotel", [_msgtxt(n) for n in range(3)])[0] == 202
    with answer_lost("UpdateItem"):
        first = _httppms(deployment, signed({"action": "GET_REQUEST", "property": "demo-hotel"}))
    again = _httppms(deployment, signed({"action": "GET_REQUEST", "property": "demo-hotel"}))
    # Either answer may carry the records (the first, once it learns its move was applied), never neither.
    got = [r["uid"] for answer in (first, again) for r in answer.get("ACTION_LIST", [])]
    assert got == ["m0", "m1", "m2"], (first, again)


# --- the dispatcher: commands sent again, a lease that runs out -------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class UcmSite:
    """One property's outbox on moto and its UCM simulator; the records go through the Planner."""

    sim: Any
    store: Any
    prop: Any
    clock: _Clock
    planner: Planner

    def pms(self, *records: dict[str, Any]) -> None:
        before = len(self.planner.commands)
        for record in records:
            self.planner.apply(record)
        fallbacks = {i - before: f for i, f in self.planner.fallbacks.items() if i >= before}
        self.store.enqueue(self.prop.id, self.planner.commands[before:], fallbacks=fallbacks)

    def dispatch(self, owner: str, client: Any = None) -> Any:
        from pms_connector.dispatcher import dispatch_property
        from pms_connector.ucm.client import UcmClient

        with UcmClient(self.prop.ucm) as own:
            return dispatch_property(self.store, self.prop, client or own, owner=owner, clock=self.clock)

    def parked(self) -> list[tuple[str, str | None]]:
        return [(c.action, c.last_error) for c in self.store.listing(self.prop.id)[1] if c.status == "parked"]


@pytest.fixture
def ucm_site() -> Iterator[UcmSite]:
    import boto3
    from moto import mock_aws

    from pms_connector.config import parse_property
    from pms_connector.local.template import Template
    from pms_connector.outbox import OutboxStore
    from pms_connector.ucm.simulator import UcmSimulator
    from tests.conftest import TEMPLATE

    with UcmSimulator(api_user="cdrapi", api_password="site-api-pass", pms_user="admin1",
                      pms_password="site-pms-pass", addresses=ROOMS) as sim, mock_aws():
        args = next(iter(Template(TEMPLATE).table_definitions().values()))
        boto3.client("dynamodb").create_table(**{**args, "TableName": "reliability-site"})
        clock = _Clock()
        prop = parse_property({
            "id": "ucm-site", "name": "Site", "timezone": "Europe/Madrid",
            "httppms": {"auth": "token", "token": "site-token-123"}, "ingest": {"api_key": "k" * 20},
            "ucm": {"base_url": sim.url, "api_user": "cdrapi", "api_password": "site-api-pass",
                    "pms_user": "admin1", "pms_password": "site-pms-pass", "ca_pem": sim.ca_pem,
                    "read_timeout_seconds": 2}})
        yield UcmSite(sim, OutboxStore("reliability-site", clock=clock), prop, clock,
                      Planner(prop.ucm, lambda _uid: None, Room))


def _wake(room: str, uid: str, at: str = "07:00", mode: str = "S") -> dict[str, Any]:
    return {"datetime": "2026-01-01T10:00:00", "action": "WAKE", "room": room, "mode": mode, "uid": uid,
            "waketime": f"2035-01-02T{at}:00"}


def test_a_moved_guests_wake_up_cancel_on_the_old_room_is_not_parked(ucm_site: UcmSite) -> None:
    ucm_site.pms(booking("site", "b1", "101", "Anabel", "Alone"), _wake("101", "w1"))
    ucm_site.pms(booking("site", "b1", "102", "Anabel", "Alone"))  # moves: mov, cancel on 101, set on 102
    while ucm_site.dispatch("d1").sent:
        pass
    state = ucm_site.sim.state()
    assert state["rooms"]["102"]["guest"] is not None and state["wakeups"]["102"]  # the UCM is right...
    assert ucm_site.parked() == []  # ...and nothing should wait for an operator


def test_a_move_sent_again_after_its_completion_was_lost_is_not_parked(ucm_site: UcmSite) -> None:
    from pms_connector.dispatcher import LEASE_SECONDS
    from pms_connector.errors import StorageBusy

    ucm_site.pms(booking("site", "b1", "101", "Anabel", "Mover"))
    assert ucm_site.dispatch("d1").ok == 1
    ucm_site.pms(booking("site", "b1", "102", "Anabel", "Mover"))
    finish = ucm_site.store.finish

    def lost(*args: Any, **kwargs: Any) -> bool:
        ucm_site.store.finish = finish
        raise StorageBusy("storage unavailable (InternalServerError), retry later")

    ucm_site.store.finish = lost
    with pytest.raises(StorageBusy):  # the UCM moved the guest; the dispatcher could not record it
        ucm_site.dispatch("d1")
    ucm_site.clock.now += LEASE_SECONDS + 1  # its lease runs out; the next sweep sends the mov again
    ucm_site.dispatch("d2")
    assert ucm_site.sim.state()["rooms"]["102"]["guest"] is not None
    assert ucm_site.parked() == []


def test_a_dispatcher_whose_lease_ran_out_sends_nothing_more(ucm_site: UcmSite) -> None:
    from pms_connector.dispatcher import LEASE_SECONDS
    from pms_connector.outbox import LeaseLost
    from pms_connector.ucm.client import UcmClient

    ucm_site.pms(booking("site", "h1", "103", "Jürgen", "Early"),  # c1
                 booking("site", "g1", "101", "Ngozi", "Guest"),  # c2: check-in on 101
                 booking("site", "g1", "101", "Ngozi", "Guest", status="checkout"))  # c3: check-out of 101
    with UcmClient(ucm_site.prop.ucm) as real:

        class SlowUcm:
            """Answers after LEASE_SECONDS + 1 (a slow site); the second dispatcher runs while c2 is on its way."""

            def send(self, command: Any, **kwargs: Any) -> Any:
                if command.action == "checkin" and command.room == "103":
                    ucm_site.clock.now += LEASE_SECONDS + 1
                elif command.action == "checkin" and command.room == "101":
                    ucm_site.dispatch("d2")  # the doorbell or the sweeper, on the expired lease: c2, c3
                return real.send(command, **kwargs)

        with contextlib.suppress(LeaseLost):
            ucm_site.dispatch("d1", SlowUcm())
    log = [(e["action"], e["address"]) for e in ucm_site.sim.log() if e["code"] in SUCCESS]
    assert ucm_site.sim.state()["rooms"]["101"]["guest"] is None, log  # the guest checked out
