"""The per-property FIFO on moto: ordering, no loss, no duplicates, under interleavings and threads."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pms_connector import fifo
from pms_connector.errors import UnknownBatch
from pms_connector.store import ConnectorStore

_ids = itertools.count()


@pytest.fixture(scope="module")
def aws() -> Iterator[None]:
    from moto import mock_aws

    with mock_aws():
        yield


@pytest.fixture
def table(aws: None) -> TableFactory:
    return TableFactory()


class TableFactory:
    """A fresh copy of the template's table per use: moto deep-copies a whole table on every transaction,
    so one table shared by hundreds of examples would make each example slower than the last."""

    def __call__(self) -> str:
        import boto3

        from pms_connector.local.template import Template
        from tests.conftest import TEMPLATE

        args = next(iter(Template(TEMPLATE).table_definitions().values()))
        name = f"fifo-{next(_ids)}"
        client = boto3.client("dynamodb")
        for old in client.list_tables()["TableNames"]:
            if old.startswith("fifo-"):
                client.delete_table(TableName=old)
        client.create_table(**{**args, "TableName": name})
        return name


def fresh_property() -> str:
    return f"prop-{next(_ids)}"


def record(n: int) -> dict[str, Any]:
    return {"datetime": "2026-01-01T10:00:00", "action": "DND", "room": str(n), "active": True, "n": n}


def received(delivery: fifo.Delivery) -> list[int]:
    return [r.record["n"] for r in delivery.records]


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("ingest"), st.integers(min_value=1, max_value=7)),
        st.tuples(st.just("get"), st.integers(min_value=1, max_value=5)),
    ),
    max_size=25,
)
HYPOTHESIS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@HYPOTHESIS
@given(ops=OPS)
def test_remove_delivery_matches_a_simple_queue(table: TableFactory, ops: list[tuple[str, int]]) -> None:
    store, pid = ConnectorStore(table()), fresh_property()
    model: list[int] = []  # what is still pending, oldest first
    delivered: list[int] = []
    counter = itertools.count(1)
    for op, n in ops:
        if op == "ingest":
            batch = [next(counter) for _ in range(n)]
            store.append_fifo(pid, [record(i) for i in batch], retention_seconds=3600)
            model.extend(batch)
        else:
            got = received(fifo.get_request(store, pid, mode="remove", confirm=None, now=time.time(), limit=n))
            assert got == model[:n]
            del model[:n]
            delivered.extend(got)
    rest = received(fifo.get_request(store, pid, mode="remove", confirm=None, now=time.time()))
    assert delivered + rest == list(range(1, next(counter)))


@HYPOTHESIS
@given(ops=OPS, drops=st.lists(st.booleans(), min_size=30, max_size=30))
def test_confirm_delivery_loses_nothing_when_answers_are_lost(
    table: TableFactory, ops: list[tuple[str, int]], drops: list[bool]
) -> None:
    """A client that loses some answers (never confirms them) still gets every record, in order, once confirmed."""
    store, pid = ConnectorStore(table()), fresh_property()
    counter = itertools.count(1)
    confirmed: list[int] = []
    last_seen: fifo.Delivery | None = None  # the last answer the client actually received
    lost = iter(drops)
    for op, n in ops:
        if op == "ingest":
            store.append_fifo(pid, [record(next(counter)) for _ in range(n)], retention_seconds=3600)
            continue
        confirm = last_seen.batch_id if last_seen and last_seen.batch_id else None
        answer = fifo.get_request(store, pid, mode="confirm", confirm=confirm, now=time.time(), limit=n)
        if confirm:
            assert last_seen is not None
            confirmed.extend(received(last_seen))
            last_seen = None
        if next(lost, False):
            continue  # the answer never reached the client: it will be answered again
        last_seen = answer
    # Drain: confirm whatever is outstanding until the queue is empty.
    for _ in range(100):
        confirm = last_seen.batch_id if last_seen and last_seen.batch_id else None
        answer = fifo.get_request(store, pid, mode="confirm", confirm=confirm, now=time.time())
        if confirm:
            assert last_seen is not None
            confirmed.extend(received(last_seen))
        last_seen = answer
        if not answer.records:
            break
    assert confirmed == list(range(1, next(counter)))


def test_a_batch_is_answered_again_until_confirmed(table: TableFactory) -> None:
    store, pid = ConnectorStore(table()), fresh_property()
    store.append_fifo(pid, [record(i) for i in range(1, 6)], retention_seconds=3600)
    first = fifo.get_request(store, pid, mode="confirm", confirm=None, now=time.time(), limit=3)
    again = fifo.get_request(store, pid, mode="confirm", confirm=None, now=time.time(), limit=3)
    assert (received(first), first.batch_id) == (received(again), again.batch_id) == ([1, 2, 3], first.batch_id)
    with pytest.raises(UnknownBatch):
        fifo.get_request(store, pid, mode="confirm", confirm="b0-nope", now=time.time())
    nxt = fifo.get_request(store, pid, mode="confirm", confirm=first.batch_id, now=time.time(), limit=3)
    assert received(nxt) == [4, 5]


def test_replay_delivers_archived_records_again(table: TableFactory) -> None:
    store, pid = ConnectorStore(table()), fresh_property()
    store.append_fifo(pid, [record(i) for i in range(1, 6)], retention_seconds=3600)
    assert received(fifo.get_request(store, pid, mode="remove", confirm=None, now=time.time())) == [1, 2, 3, 4, 5]
    fifo.replay(store, pid, from_seq=3)
    assert received(fifo.get_request(store, pid, mode="remove", confirm=None, now=time.time())) == [3, 4, 5]


def test_expired_records_are_passed_over_not_delivered(table: TableFactory) -> None:
    now = time.time()
    store, pid = ConnectorStore(table(), clock=lambda: now), fresh_property()
    store.append_fifo(pid, [record(1), record(2)], retention_seconds=60)
    store.append_fifo(pid, [record(3)], retention_seconds=3600)
    later = now + 120
    assert received(fifo.get_request(store, pid, mode="remove", confirm=None, now=later)) == [3]
    assert store.get_cursor(pid).delivered == 3


@pytest.fixture(scope="module")
def served_table() -> Iterator[tuple[str, str]]:
    """The template's table on moto's server (atomic per request, like DynamoDB), for threaded tests."""
    import boto3

    from pms_connector.local.provision import create_resources
    from pms_connector.local.runner import moto_server
    from pms_connector.local.template import Template
    from tests.conftest import TEMPLATE

    with moto_server() as endpoint:
        session = boto3.session.Session()
        client = session.client("dynamodb", endpoint_url=endpoint)
        names = create_resources(Template(TEMPLATE), _EndpointSession(session, endpoint))
        del client
        yield endpoint, names["ConnectorTable"]


class _EndpointSession:
    def __init__(self, session: Any, endpoint: str) -> None:
        self.session, self.endpoint = session, endpoint

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.endpoint)


def test_concurrent_get_requests_never_share_or_skip_a_record(served_table: tuple[str, str]) -> None:
    """4 pollers and 2 writers on one property: every record delivered exactly once, in order per poller."""
    import boto3

    endpoint, table = served_table
    client = boto3.session.Session().client("dynamodb", endpoint_url=endpoint)
    pid = fresh_property()
    writers, per_writer, batch = 2, 60, 6
    received_by: dict[int, list[tuple[int, int]]] = {i: [] for i in range(4)}
    errors: list[BaseException] = []
    done_writing = threading.Event()

    def write(w: int) -> None:
        from pms_connector.errors import StorageBusy

        store = ConnectorStore(table, client=client)
        try:
            for start in range(0, per_writer, batch):
                for _ in range(20):  # a PMS answered 503 (too many concurrent writers) sends again
                    try:
                        store.append_fifo(pid, [{**record(w * 1000 + start + k), "w": w} for k in range(batch)],
                                          retention_seconds=3600)
                        break
                    except StorageBusy:
                        time.sleep(0.05)
        except BaseException as exc:
            errors.append(exc)

    def poll(p: int) -> None:
        store = ConnectorStore(table, client=client)
        idle = 0
        try:
            while idle < 5:
                try:
                    got = fifo.get_request(store, pid, mode="remove", confirm=None, now=time.time(), limit=7)
                except fifo.DeliveryConflict:
                    continue
                received_by[p].extend((r.seq, r.record["n"]) for r in got.records)
                idle = idle + 1 if (not got.records and done_writing.is_set()) else 0
        except BaseException as exc:
            errors.append(exc)

    pollers = [threading.Thread(target=poll, args=(p,)) for p in range(4)]
    writing = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in pollers + writing:
        t.start()
    for t in writing:
        t.join()
    done_writing.set()
    for t in pollers:
        t.join(timeout=60)

    assert not errors, errors
    seqs = sorted(seq for got in received_by.values() for seq, _ in got)
    assert seqs == list(range(1, writers * per_writer + 1))  # nothing lost, nothing twice
    for got in received_by.values():
        assert [seq for seq, _ in got] == sorted(seq for seq, _ in got)  # each poller sees FIFO order
    by_seq = dict(pair for got in received_by.values() for pair in got)
    for w in range(writers):  # each writer's records keep their relative order
        mine = [n for _, n in sorted(by_seq.items()) if n // 1000 == w]
        assert mine == sorted(mine)
