"""FIFO under concurrency, over real HTTP against the local runner (moto's server behind it).

Per property, several PMS threads push records through the ingest API (1 to 5 records a request, 10 in the
full run) while several pmslink pollers take them with GET_REQUEST. At the end, per property: every record
accepted (202) was delivered, none twice, each answer in sequence order and the answers tiling the sequence
with no gap or overlap, each PMS thread's records in the order it sent them, and every record exactly as
the PMS wrote it.

- ``remove`` delivery: the pollers compete for the queue (no answer is lost: the spec's remove mode loses
  records when an answer is lost, which is what ``confirm`` is for).
- ``confirm`` delivery: the pollers are one consumer (pmslink) sharing the batch to confirm, and a random 20%
  of the answers are dropped by the client, as if lost on the way: still nothing lost. A batch answered again
  (because its answer was lost or not confirmed yet) is the same batch: records are counted by batch id.
  With several pollers, a confirm can go stale (another poller's answer moved the consumer on); the
  connector answers it 208 (unknown batch), which is counted and allowed here only.

Quick by default (3 properties x 24 records per mode, 3 ingest threads and 2 pollers each);
``PMS_RELIABILITY_FULL=1`` runs the issue's 5 properties x 2,000 records (10,000 per delivery mode) with 8
ingest threads and 4 pollers per property. The two modes run at once, each against its own
``pms-connector local`` process: the runner serialises moto's requests and is bound by one interpreter's
GIL, so two of them use the two cores CI machines have.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.reliability.conftest import (
    Client,
    Hotel,
    Ledger,
    Queue,
    Scale,
    Verdict,
    check,
    hotels,
    ingest_until_accepted,
    poll_confirm,
    poll_remove,
    report,
    run_threads,
    runner_processes,
    warm_up,
)

pytestmark = pytest.mark.e2e


def _record(uid: str, n: int) -> dict[str, Any]:
    return {"datetime": "2026-01-01T10:00:00", "action": "MSGTXT", "room": str(101 + n % 20), "uid": uid,
            "text": "Your table is ready"}  # the leak scan learns each text: one for all


def _ingest(url: str, queue: Queue, thread: int, count: int, scale: Scale, ledger: Ledger, deadline: float
            ) -> None:
    rng = random.Random(f"{queue.hotel.id}/{thread}")
    client = Client(url, ledger)
    uids: list[str] = []
    queue.sent_order[thread] = uids
    retries: Counter[str] = Counter()
    try:
        n = 0
        while n < count:
            size = min(rng.randint(1, scale.max_batch), count - n)
            records = [_record(f"t{thread}-{n + k}", n + k) for k in range(size)]
            sequence = ingest_until_accepted(client, queue.hotel, records, deadline=deadline, retries=retries)
            assert len(sequence) == size, sequence
            assert sequence == list(range(sequence[0], sequence[0] + size)), f"not consecutive: {sequence}"
            with queue.lock:
                for record, seq in zip(records, sequence, strict=True):
                    queue.sent[record["uid"]] = record
                    queue.seq_of[record["uid"]] = seq
                    uids.append(record["uid"])
                queue.counts["ingest requests"] += 1 + retries["ingest"]
                queue.counts["ingest retries"] += retries["ingest"]
                retries.clear()
            n += size
    finally:
        with queue.lock:
            queue.counts["link errors"] += client.link_errors
        client.close()


@dataclass
class Outcome:
    mode: str
    records: int = 0
    elapsed_s: float = 0.0
    verdict: Verdict = field(default_factory=Verdict)
    ledger: Ledger = field(default_factory=Ledger)
    counts: Counter[str] = field(default_factory=Counter)


def run_mode(url: str, hotels_: list[Hotel], mode: str, scale: Scale) -> Outcome:
    """The PMS threads and the pollers of every property against one runner, then the verdict."""
    outcome = Outcome(mode)
    queues = [Queue(h) for h in hotels_]
    warm_up(url, hotels_, outcome.ledger)
    started = time.monotonic()
    deadline = started + scale.time_budget_s
    ingest_done = {q.hotel.id: threading.Event() for q in queues}

    def pms(queue: Queue) -> None:
        per_thread = [scale.records_per_property // scale.ingest_threads] * scale.ingest_threads
        per_thread[0] += scale.records_per_property - sum(per_thread)
        try:
            run_threads([lambda t=t, n=n: _ingest(url, queue, t, n, scale, outcome.ledger, deadline)
                         for t, n in enumerate(per_thread)], f"ingest-{queue.hotel.id}")
        finally:
            ingest_done[queue.hotel.id].set()

    poll = poll_confirm if mode == "confirm" else poll_remove
    workers = [lambda q=q: pms(q) for q in queues]
    workers += [lambda q=q, p=p: poll(url, q, p, ingest_done[q.hotel.id], outcome.ledger, deadline)
                for q in queues for p in range(scale.pollers)]
    run_threads(workers, f"fifo-{mode}")
    outcome.elapsed_s = time.monotonic() - started
    for queue in queues:
        check(queue, mode, outcome.verdict)
        outcome.counts.update(queue.counts)
    outcome.records = sum(len(q.sent) for q in queues)
    return outcome


def test_fifo_under_concurrency_loses_duplicates_and_reorders_nothing(
    tmp_path_factory: pytest.TempPathFactory, scale: Scale
) -> None:
    """Both delivery modes at once, each against its own `pms-connector local` (one core each)."""
    by_mode = {mode: hotels(f"fifo-{mode[0]}", scale.properties, delivery=lambda _i, m=mode: m)
               for mode in ("remove", "confirm")}
    outcomes: dict[str, Outcome] = {}
    with runner_processes(by_mode, tmp_path_factory.mktemp("fifo")) as urls:

        def one(mode: str) -> None:
            outcomes[mode] = run_mode(urls[mode], by_mode[mode], mode, scale)

        run_threads([lambda m=m: one(m) for m in by_mode], "fifo")

    for mode, outcome in outcomes.items():
        counts, verdict = outcome.counts, outcome.verdict
        report(f"fifo-{mode}", scale, records=outcome.records, properties=scale.properties,
               ingest_threads=scale.ingest_threads * scale.properties, pollers=scale.pollers * scale.properties,
               ingest_requests=counts["ingest requests"], ingest_retries_503=counts["ingest retries"],
               get_requests=counts["get requests"], conflicts_101=counts["get code 101"],
               answers_dropped=counts["answers dropped"], batches_answered_again=counts["batches answered again"],
               stale_confirms_208=counts["get code 208"], link_errors=counts["link errors"],
               lost=verdict.lost, duplicated=verdict.duplicated, reordered=verdict.reordered,
               altered=verdict.altered, elapsed_s=outcome.elapsed_s,
               records_per_s=outcome.records / outcome.elapsed_s)
    for mode, outcome in outcomes.items():
        assert outcome.records == scale.records, \
            f"{mode}: only {outcome.records} of {scale.records} records were accepted in time"
        assert not outcome.ledger.violations, (mode, outcome.ledger.violations[:10])
        assert not outcome.verdict.problems, (mode, outcome.verdict.problems[:20])
