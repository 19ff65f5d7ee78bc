"""What the reliability tests share: their scale, the local runner (as its own process, or in this one), a
fault injector for the connector's AWS calls, PMS and pmslink clients that keep score, and the one-line
report of each test.

In this process (``pms_connector.local.runner.running``), botocore event hooks can be registered on the
connector's own clients; moto's server still answers over real HTTP, and the API is still served over real
HTTP to the clients here. Each request carries an ``X-Reliability-Request`` header; the runner's request
handling is wrapped so that a fault injected while a request is being served is charged to that request,
and the test can check how that request was answered.

Scale: quick by default (the default test run); full-size with ``PMS_RELIABILITY_FULL=1`` (``make
reliability``). Each test prints one summary line (again at the end of the run) and appends it as JSON to
``$PMS_RELIABILITY_REPORT`` when that is set.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import reset_caches
from tests.e2e.test_local_runner import learn
from tests.helpers import signed

FULL = os.environ.get("PMS_RELIABILITY_FULL", "") not in ("", "0")
REQUEST_HEADER = "X-Reliability-Request"
HTTP_TIMEOUT_S = 30.0


# --- scale and report ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """How big a run is. Quick: a few seconds per test, in the default test run. Full: the issue's size."""

    full: bool
    properties: int
    records_per_property: int  # FIFO test, per delivery mode
    ingest_threads: int  # per property
    pollers: int  # GET_REQUEST pollers per property
    max_batch: int  # records per ingest request: 1..max_batch, at random
    fault_properties: int  # fault test: properties (each with a UCM simulator)
    fault_records_per_property: int  # fault test: PMS records per property (bookings, COS, wake-ups)
    charges_per_property: int  # fault test: POST requests per property
    lease_seconds: int  # fault test: the dispatcher's lease (a dispatcher stopped by a fault holds its site)
    time_budget_s: float  # a run that takes longer than this fails instead of hanging

    @property
    def records(self) -> int:
        return self.properties * self.records_per_property

    @property
    def mode(self) -> str:
        return "full" if self.full else "quick"


QUICK = Scale(full=False, properties=3, records_per_property=24, ingest_threads=3, pollers=2, max_batch=5,
              fault_properties=3, fault_records_per_property=24, charges_per_property=8, lease_seconds=4,
              time_budget_s=120)
FULL_SIZE = Scale(full=True, properties=5, records_per_property=2_000, ingest_threads=8, pollers=4, max_batch=10,
                  fault_properties=5, fault_records_per_property=200, charges_per_property=100, lease_seconds=15,
                  time_budget_s=900)


@pytest.fixture(scope="session")
def scale() -> Scale:
    return FULL_SIZE if FULL else QUICK


_REPORTED: list[str] = []


def report(test: str, scale: Scale, **measured: Any) -> str:
    """Print one summary line for ``test``; append it as JSON to $PMS_RELIABILITY_REPORT when set."""
    parts = []
    for key, value in measured.items():
        shown = value
        if isinstance(value, float):
            shown = f"{value:.1f}"
        elif isinstance(value, Mapping):
            shown = "{" + ", ".join(f"{k}: {v}" for k, v in sorted(value.items())) + "}"
        parts.append(f"{key}={shown}")
    line = f"reliability [{scale.mode}] {test}: " + ", ".join(parts)
    print("\n" + line)
    _REPORTED.append(line)
    path = os.environ.get("PMS_RELIABILITY_REPORT")
    if path:
        entry = {"test": test, "mode": scale.mode, "at": datetime.now(UTC).isoformat(timespec="seconds"),
                 **{k: dict(v) if isinstance(v, Mapping) else v for k, v in measured.items()}}
        with Path(path).open("a", encoding="utf-8") as out:
            out.write(json.dumps(entry, sort_keys=True, default=str) + "\n")
    return line


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The reliability summaries again at the end of the run, where `make reliability` shows them."""
    if _REPORTED:
        terminalreporter.section("reliability")
        for line in _REPORTED:
            terminalreporter.write_line(line)


# --- properties ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hotel:
    """One property of a reliability run and the credentials its clients use."""

    id: str
    delivery: str
    password: str
    ingest_key: str
    ucm: bool = False
    user: str = "pmslink"

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": self.id, "name": f"Reliability {self.id}", "timezone": "Europe/Madrid",
            "httppms": {"auth": "md5", "user": self.user, "password": self.password, "delivery": self.delivery},
            "ingest": {"api_key": self.ingest_key},
        }
        if self.ucm:  # the runner starts a UCM simulator for it (rooms 101-120, 201-220, 301-320)
            doc["ucm"] = {"base_url": "https://ucm-simulator", "api_user": "cdrapi",
                          "api_password": f"{self.id}-api-pass", "pms_user": "admin1",
                          "pms_password": f"{self.id}-pms-pass", "read_timeout_seconds": 3}
        return doc


def hotels(prefix: str, count: int, *, delivery: Callable[[int], str], ucm: bool = False) -> list[Hotel]:
    return [Hotel(id=f"{prefix}-{i}", delivery=delivery(i), password=f"{prefix}-{i}-md5-secret",
                  ingest_key=f"{prefix}-{i}-ingest-key-0123456789", ucm=ucm) for i in range(1, count + 1)]


def write_properties(hotels_: list[Hotel], directory: Path) -> Path:
    import yaml

    path = directory / "properties.yaml"
    path.write_text(yaml.safe_dump([h.document() for h in hotels_], allow_unicode=True), encoding="utf-8")
    return path


# --- the local runner, as `pms-connector local` in its own process -----------------------------------------


@contextmanager
def runner_processes(groups: Mapping[str, list[Hotel]], directory: Path) -> Iterator[dict[str, str]]:
    """One ``pms-connector local`` per group of properties, as a user starts it (tests/e2e's ``start``),
    started side by side; yields their URLs by group. Each runs in its own process and interpreter: on two
    cores two runners do twice the work, and the clients' threads here do not compete with them for a GIL."""
    from tests.e2e.test_local_runner import free_port, start, stop

    processes: dict[str, Any] = {}
    urls: dict[str, str] = {}

    def launch(name: str, hotels_: list[Hotel]) -> None:
        (directory / name).mkdir(parents=True, exist_ok=True)
        port = free_port()
        processes[name], _ = start(write_properties(hotels_, directory / name), port)
        urls[name] = f"http://127.0.0.1:{port}"

    try:
        run_threads([lambda n=n, h=h: launch(n, h) for n, h in groups.items()], "runner-start")
        yield urls
    finally:
        run_threads([lambda p=p: stop(p) for p in processes.values()], "runner-stop")


# --- the local runner, in this process -------------------------------------------------------------------

_request = threading.local()  # the X-Reliability-Request of the request this thread is serving


def serving_request() -> str | None:
    return getattr(_request, "id", None)


@dataclass
class LocalRun:
    url: str
    moto_url: str
    running: Any  # pms_connector.local.runner.Running
    table: str

    def observer(self) -> Any:
        """An OutboxStore (a StateStore) on the runner's table through a client no fault reaches."""
        import boto3

        from pms_connector.state import StateStore

        client = boto3.session.Session().client("dynamodb", endpoint_url=self.moto_url, region_name="us-east-1",
                                                aws_access_key_id="local", aws_secret_access_key="local")
        return StateStore(self.table, client=client)


@contextmanager
def local_runner(hotels_: list[Hotel], directory: Path, *, sweep_speedup: float = 1.0,
                 lease_seconds: int | None = None, backoff_base_seconds: int | None = None,
                 backoff_cap_seconds: int | None = None) -> Iterator[LocalRun]:
    """``pms-connector local`` in this process for these properties; everything it changed is put back after.

    ``sweep_speedup`` runs the rate rules (the sweeper) that many times faster; ``lease_seconds`` and
    ``backoff_*`` shorten the dispatcher's lease and retry backoff: the fault test compresses time so that
    minutes of retries take seconds."""
    import boto3
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

    from pms_connector import dispatcher, sites
    from pms_connector.local import pollers, runner

    path = write_properties(hotels_, directory)
    saved_env = dict(os.environ)
    saved_session = boto3.DEFAULT_SESSION  # created meanwhile with the runner's credentials and endpoint
    saved_providers = dict(DEFAULT_PROVIDERS)
    original_handle = runner.LocalApi.handle

    def handle(self: Any, method: str, target: str, headers: Mapping[str, str], body: bytes,
               source_ip: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
        _request.id = next((v for k, v in headers.items() if k.lower() == REQUEST_HEADER.lower()), None)
        try:
            return original_handle(self, method, target, headers, body, source_ip)
        finally:
            _request.id = None

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner.LocalApi, "handle", handle)
        if sweep_speedup != 1.0:
            patch.setattr(pollers, "schedules", functools.partial(pollers.schedules, speedup=sweep_speedup))
        if lease_seconds is not None:
            patch.setattr(dispatcher, "LEASE_SECONDS", lease_seconds)
        if backoff_base_seconds is not None:
            patch.setattr(dispatcher, "BACKOFF_BASE_SECONDS", backoff_base_seconds)
        if backoff_cap_seconds is not None:
            patch.setattr(dispatcher, "BACKOFF_CAP_SECONDS", backoff_cap_seconds)
        reset_caches()
        try:
            with runner.running(path, port=0) as run:
                from aws_lambda_powertools.utilities import parameters

                # The providers the config reads use, created now (pointing at this moto) so hooks can reach them.
                DEFAULT_PROVIDERS["ssm"] = parameters.SSMProvider()
                DEFAULT_PROVIDERS["secrets"] = parameters.SecretsProvider()
                yield LocalRun(run.url, run.moto_url, run, os.environ["TABLE_NAME"])
        finally:
            for hotel in hotels_:
                cached = sites._clients.pop(hotel.id, None)
                if cached is not None:
                    cached[1].close()
            DEFAULT_PROVIDERS.clear()
            DEFAULT_PROVIDERS.update(saved_providers)
            os.environ.clear()
            os.environ.update(saved_env)
            boto3.DEFAULT_SESSION = saved_session
            reset_caches()


# --- faults in the connector's AWS calls ------------------------------------------------------------------

# Per service: (throttling codes, 500 code). The 500s' codes are each service's own.
_SERVICE_CODES: dict[str, tuple[tuple[str, ...], str]] = {
    "dynamodb": (("ThrottlingException", "ProvisionedThroughputExceededException"), "InternalServerError"),
    "eventbridge": (("ThrottlingException",), "InternalException"),
    "ssm": (("ThrottlingException",), "InternalServerError"),
    "secrets-manager": (("ThrottlingException",), "InternalServiceError"),
}
FAULT_KINDS = ("throttling", "http-500", "timeout")


class FaultInjector:
    """Fails a seeded random share of the connector's AWS calls before they are sent, through botocore's
    ``before-call`` event: throttling (400 ThrottlingException / ProvisionedThroughputExceededException),
    a 500 (InternalServerError or the service's equivalent) or a read timeout (ReadTimeoutError).

    A fault while a request is served is charged to that request (``by_request``); the others (dispatcher,
    sweeper, wake-up supervisor) count as background."""

    def __init__(self, rate: float, seed: int) -> None:
        self.rate = rate
        self.active = False
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.calls = 0
        self.by_kind: Counter[str] = Counter()
        self.by_operation: Counter[str] = Counter()
        self.by_request: dict[str, list[str]] = {}
        self.background = 0

    def install(self, *clients: Any) -> None:
        for client in clients:
            client.meta.events.register("before-call.*.*", self._before_call)

    def install_connector_clients(self) -> None:
        """The clients the connector's functions share in this process: DynamoDB, EventBridge, config reads."""
        from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

        from pms_connector import aws

        self.install(aws.dynamodb(), aws.events(), DEFAULT_PROVIDERS["ssm"].client,
                     DEFAULT_PROVIDERS["secrets"].client)

    @property
    def injected(self) -> int:
        return sum(self.by_kind.values())

    def _before_call(self, event_name: str, **kwargs: Any) -> None:
        if not self.active:
            return
        _, service, operation = event_name.split(".", 2)
        with self._lock:
            self.calls += 1
            if self._rng.random() >= self.rate:
                return
            kind = self._rng.choice(FAULT_KINDS)
            throttles, server_error = _SERVICE_CODES.get(service, (("ThrottlingException",), "InternalFailure"))
            code = self._rng.choice(throttles) if kind == "throttling" else server_error
            self.by_kind[kind] += 1
            self.by_operation[f"{service}.{operation}"] += 1
            request = serving_request()
            if request is None:
                self.background += 1
            else:
                self.by_request.setdefault(request, []).append(kind)
        raise _fault(kind, code, operation)


def _fault(kind: str, code: str, operation: str) -> Exception:
    from botocore.exceptions import ClientError, ReadTimeoutError

    if kind == "timeout":
        return ReadTimeoutError(endpoint_url="http://injected-fault")
    status = 400 if kind == "throttling" else 500
    return ClientError({"Error": {"Code": code, "Message": "injected by the reliability test"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


# --- clients that keep score ------------------------------------------------------------------------------

_request_ids = itertools.count(1)


@dataclass
class Ledger:
    """Every answer the clients got, and every answer that breaks the rules."""

    faults: FaultInjector | None = None
    answers: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    faulted_requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, kind: str, request_id: str, status: int | None, code: int | None, *,
             allowed_refusals: tuple[int, ...] = ()) -> None:
        """Check one answer: a request that met an injected fault must be answered 'retry' (HTTPPMS 100-125,
        or a link-level 5xx; 503 for the ingest API); no answer may refuse a valid request."""
        faulted = self.faults is not None and request_id in self.faults.by_request
        label = f"{kind} {status}" + ("" if code is None else f"/{code}") + (" after a fault" if faulted else "")
        problem = None
        if kind == "ingest":
            if status is not None and 400 <= status < 500:
                problem = "a valid ingest request refused with a 4xx"
            elif faulted and status != 503:
                problem = "an ingest request that met an AWS fault not answered 503"
        else:
            refused = code is not None and 200 <= code <= 225 and code not in allowed_refusals
            if status == 200 and refused:
                problem = "a valid HTTPPMS request refused with a 2xx code"
            elif status is not None and 400 <= status < 500:
                problem = "a valid HTTPPMS request answered with an HTTP 4xx"
            elif faulted and status == 200 and not (code is not None and 100 <= code <= 125):
                problem = "an HTTPPMS request that met an AWS fault not answered with a code in 100-125"
        with self._lock:
            self.answers[label] += 1
            self.faulted_requests += faulted
            if problem:
                kinds = self.faults.by_request.get(request_id) if self.faults else None
                self.violations.append(f"{problem}: {label} (request {request_id}, faults {kinds})")


SIGNATURE_REUSE_S = 30.0
_signatures: dict[str, tuple[float, dict[str, str]]] = {}
_signatures_lock = threading.Lock()


def credentials(hotel: Hotel) -> dict[str, str]:
    """``datetime``, ``user`` and the MD5 ``usertoken`` for a request to ``hotel``, signed afresh every 30 s
    (well within the 300 s window). One token per half minute rather than per second: the session's leak
    scan searches every log line for every token the tests sent, and a full run sends thousands."""
    with _signatures_lock:
        signed_at, fields = _signatures.get(hotel.id, (0.0, {}))
        if time.monotonic() - signed_at > SIGNATURE_REUSE_S:
            body = signed({}, user=hotel.user, password=hotel.password)
            fields = {k: body[k] for k in ("datetime", "user", "usertoken")}
            _signatures[hotel.id] = (time.monotonic(), fields)
        return dict(fields)


class Client:
    """One thread's HTTP client to the runner; every request is tagged and its answer checked."""

    def __init__(self, url: str, ledger: Ledger) -> None:
        self.http = httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_S)
        self.ledger = ledger
        self.link_errors = 0

    def close(self) -> None:
        self.http.close()

    def _post(self, path: str, body: Any, headers: dict[str, str]) -> tuple[str, httpx.Response | None]:
        request_id = f"r{next(_request_ids)}"
        learn(body, headers.get("Authorization"))  # for the leak scan, when the runner is another process
        try:
            response = self.http.post(path, json=body, headers={**headers, REQUEST_HEADER: request_id})
        except httpx.TransportError:
            self.link_errors += 1
            return request_id, None
        return request_id, response

    def ingest(self, hotel: Hotel, records: list[dict[str, Any]]) -> list[int] | None:
        """The sequence numbers of the records, or None when the connector said 'send again'."""
        request_id, response = self._post(f"/pms/{hotel.id}/events", records,
                                          {"Authorization": f"Bearer {hotel.ingest_key}"})
        if response is None:
            return None
        self.ledger.note("ingest", request_id, response.status_code, None)
        if response.status_code != 202:
            return None
        return list(response.json()["sequence"])

    def httppms(self, hotel: Hotel, request: dict[str, Any], *, allowed_refusals: tuple[int, ...] = ()
                ) -> dict[str, Any] | None:
        """The HTTPPMS answer body, or None for a link-level failure (no answer, HTTP 5xx)."""
        body = request if "usertoken" in request else {**request, "property": hotel.id, **credentials(hotel)}
        request_id, response = self._post("/httppms", body, {})
        if response is None:
            return None
        answer = response.json() if response.headers.get("content-type", "").startswith("application/json") \
            else None
        code = answer.get("code") if isinstance(answer, dict) else None
        self.ledger.note(str(request.get("action")), request_id, response.status_code, code,
                         allowed_refusals=allowed_refusals)
        if response.status_code != 200 or not isinstance(answer, dict):
            return None
        return answer


def ingest_until_accepted(client: Client, hotel: Hotel, records: list[dict[str, Any]], *, deadline: float,
                          retries: Counter[str]) -> list[int]:
    """What the PMS does: send again on 'retry' (503/500, no answer) until accepted."""
    while True:
        sequence = client.ingest(hotel, records)
        if sequence is not None:
            return sequence
        retries["ingest"] += 1
        if time.monotonic() > deadline:
            raise AssertionError(f"{hotel.id}: ingest not accepted before the deadline")
        time.sleep(0.01)


def run_threads(workers: list[Callable[[], None]], name: str) -> None:
    """Run the workers in threads; re-raise the first failure once all have stopped."""
    errors: list[BaseException] = []

    def guarded(work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as exc:  # reported after join
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(w,), name=f"{name}-{i}", daemon=True)
               for i, w in enumerate(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


# --- the PMS side and pmslink side of a property's FIFO ---------------------------------------------------

DROP_RATE = 0.2  # confirm mode: share of the answers the client never gets
EMPTY_POLL_PAUSE_S = 0.3  # pmslink polls every few seconds when its last answer was empty; here faster


@dataclass
class Queue:
    """One property's side of the test: what the PMS sent, what pmslink got."""

    hotel: Hotel
    key: str = "uid"  # the record field that tells records apart
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> record as sent
    seq_of: dict[str, int] = field(default_factory=dict)  # key -> sequence number from the 202
    sent_order: dict[int, list[str]] = field(default_factory=dict)  # ingest thread -> keys, in sending order
    chunks: list[tuple[int, list[str]]] = field(default_factory=list)  # remove: (poller, keys) per answer
    batches: dict[str, list[str]] = field(default_factory=dict)  # confirm: batch id -> keys
    pending: str | None = None  # confirm: the last batch received and not yet confirmed
    received: list[dict[str, Any]] = field(default_factory=list)  # every record, as delivered (first receipt)
    counts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


def warm_up(url: str, hotels_: list[Hotel], ledger: Ledger) -> None:
    """One request of each kind per property before the clock starts: the runner's first requests load
    clients and configurations (a cold start), which is not what this test measures."""
    client = Client(url, ledger)
    try:
        for hotel in hotels_:
            assert client.http.get(f"/pms/{hotel.id}/inbound",
                                   headers={"Authorization": f"Bearer {hotel.ingest_key}"}).status_code == 200
            assert client.httppms(hotel, {"action": "GET_REQUEST"}) == {"code": 0, "description": "OK"}
    finally:
        client.close()


def poll_remove(url: str, queue: Queue, poller: int, ingest_done: threading.Event, ledger: Ledger,
                 deadline: float) -> None:
    client = Client(url, ledger)
    try:
        while time.monotonic() < deadline:
            drained_before = ingest_done.is_set()
            answer = client.httppms(queue.hotel, {"action": "GET_REQUEST"})
            with queue.lock:
                queue.counts["get requests"] += 1
            if answer is None or answer.get("code") != 0:
                with queue.lock:
                    queue.counts[f"get code {None if answer is None else answer.get('code')}"] += 1
                continue
            records = answer.get("ACTION_LIST") or []
            if not records:
                if drained_before:
                    return  # every record was accepted before this answer said the queue is empty
                time.sleep(EMPTY_POLL_PAUSE_S)
                continue
            with queue.lock:
                queue.chunks.append((poller, [str(r.get(queue.key)) for r in records]))
                queue.received.extend(records)
    finally:
        with queue.lock:
            queue.counts["link errors"] += client.link_errors
        client.close()


def poll_confirm(url: str, queue: Queue, poller: int, ingest_done: threading.Event, ledger: Ledger,
                  deadline: float) -> None:
    """One of pmslink's pollers: confirms the last batch the consumer received; loses some answers."""
    rng = random.Random(f"{queue.hotel.id}/poller/{poller}")
    client = Client(url, ledger)
    try:
        while time.monotonic() < deadline:
            with queue.lock:
                confirm = queue.pending
            drained_before = ingest_done.is_set()
            request: dict[str, Any] = {"action": "GET_REQUEST"}
            if confirm:
                request["confirm"] = confirm
            # 208: a confirm that another poller's answer made stale (the consumer moved on meanwhile).
            answer = client.httppms(queue.hotel, request, allowed_refusals=(208,))
            with queue.lock:
                queue.counts["get requests"] += 1
            if rng.random() < DROP_RATE:
                with queue.lock:
                    queue.counts["answers dropped"] += 1
                continue  # lost on the way back: pmslink never saw it
            code = None if answer is None else answer.get("code")
            if answer is None or code != 0:
                with queue.lock:
                    queue.counts[f"get code {code}"] += 1
                    if code == 208 and queue.pending == confirm:
                        queue.pending = None
                continue
            records = answer.get("ACTION_LIST") or []
            with queue.lock:
                if confirm is not None and queue.pending == confirm:
                    queue.pending = None  # the server took the confirm
                if records:
                    batch = str(answer.get("batch"))
                    uids = [str(r.get(queue.key)) for r in records]
                    if batch in queue.batches:
                        queue.counts["batches answered again"] += 1
                        assert queue.batches[batch] == uids, f"batch {batch} changed between answers"
                    else:
                        queue.batches[batch] = uids
                        queue.received.extend(records)
                    queue.pending = batch
                    continue
                done = drained_before and queue.pending is None
            if done:
                return
            time.sleep(EMPTY_POLL_PAUSE_S)
    finally:
        with queue.lock:
            queue.counts["link errors"] += client.link_errors
        client.close()


@dataclass
class Verdict:
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    altered: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, kind: str, count: int, what: str) -> None:
        if count:
            setattr(self, kind, getattr(self, kind) + count)
            self.problems.append(what)


def check(queue: Queue, mode: str, verdict: Verdict) -> None:
    """Lost, duplicated, out of order, altered: what pmslink got against what the PMS sent."""
    pid = queue.hotel.id
    seqs = sorted(queue.seq_of.values())
    assert seqs == list(range(1, len(seqs) + 1)), f"{pid}: the 202 answers' sequence numbers have gaps or repeats"
    answers = list(queue.batches.values()) if mode == "confirm" else [uids for _, uids in queue.chunks]
    got = [uid for uids in answers for uid in uids]
    counted = Counter(got)
    verdict.add("lost", len(set(queue.sent) - set(counted)), f"{pid}: {len(set(queue.sent) - set(counted))} lost")
    twice = sum(n - 1 for n in counted.values() if n > 1)
    verdict.add("duplicated", twice, f"{pid}: {twice} delivered more than once")
    unknown = set(counted) - set(queue.sent)
    verdict.add("altered", len(unknown), f"{pid}: {len(unknown)} records nobody sent")
    # Each answer is a run of consecutive sequence numbers; the answers tile the sequence.
    runs = sorted([queue.seq_of[u] for u in uids] for uids in answers if all(u in queue.seq_of for u in uids))
    bad_runs = sum(1 for run in runs if run != list(range(run[0], run[0] + len(run))))
    verdict.add("reordered", bad_runs, f"{pid}: {bad_runs} answers not in sequence order")
    gaps = sum(1 for a, b in itertools.pairwise(runs) if b[0] != a[-1] + 1)
    verdict.add("reordered", gaps, f"{pid}: {gaps} gaps or overlaps between answers")
    if mode == "remove":  # one poller never gets older records after newer ones
        last: dict[int, int] = {}
        backwards = 0
        for poller, uids in queue.chunks:
            first = queue.seq_of.get(uids[0], 0)
            backwards += first <= last.get(poller, 0)
            last[poller] = queue.seq_of.get(uids[-1], 0)
        verdict.add("reordered", backwards, f"{pid}: {backwards} answers older than the poller's previous one")
    behind = sum(1 for uids in queue.sent_order.values()
                 for a, b in itertools.pairwise(uids) if queue.seq_of[a] > queue.seq_of[b])
    verdict.add("reordered", behind, f"{pid}: {behind} records queued before one their PMS thread sent earlier")
    altered = sum(1 for r in queue.received
                  if r != {**queue.sent.get(str(r.get(queue.key)), {}), "property": pid})
    verdict.add("altered", altered, f"{pid}: {altered} records not as the PMS wrote them")
