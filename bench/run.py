"""The connector's benchmark: one table of what a request costs (AWS calls, handler time, cold import) and
what the local runner sustains end to end, printed and written as JSON.

    python bench/run.py                              # full run, a few minutes
    python bench/run.py --quick                      # tiny sizes, under 30 s (tests/unit/test_bench.py)
    python bench/run.py --json bench/results.json    # also write the table as JSON

bench/README.md says what each row means and how it is measured. Nothing here talks to AWS: the handlers run
unchanged on moto (in process), as in tests/integration; the end-to-end rows use the local runner
(`pms-connector local`) over HTTP, as in tests/e2e. The measuring code is the tests' own (tests/conftest.py,
tests/helpers.py, tests/unit/test_cold_import.py, tests/e2e/test_local_runner.py), imported, not copied.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import importlib.util
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Row:
    """One line of the table. ``detail`` (JSON only) keeps the raw figures behind ``value``."""

    measure: str
    value: float
    unit: str
    note: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Sizes:
    invocations: int          # warm handler invocations timed per operation (and as many bare replays)
    idle_properties: int      # properties with an empty outbox behind the idle sweep
    cold_import_runs: int     # fresh interpreters per module, best taken
    clients: int              # concurrent PMS clients of the throughput row
    requests_per_client: int  # single-record ingest requests each client sends
    latency_events: int       # samples of each end-to-end latency
    warm: int = 3             # untimed invocations first: config read and cached, clients and Digest nonce warm
    side_by_side: bool = False  # cold import and end-to-end run beside the handlers: faster, figures meaningless


FULL = Sizes(invocations=100, idle_properties=1000, cold_import_runs=7, clients=8, requests_per_client=100,
             latency_events=200)
QUICK = Sizes(invocations=1, idle_properties=20, cold_import_runs=1, clients=2, requests_per_client=5,
              latency_events=3, warm=1, side_by_side=True)


_STARTED = time.perf_counter()


def progress(message: str) -> None:
    print(f"[bench {time.perf_counter() - _STARTED:5.0f} s] {message}", file=sys.stderr, flush=True)


# --- the handlers on moto: AWS calls per operation, handler time against the same calls made bare ----------
#
# Two copies of the deployment live in one moto: the handlers' in us-east-1 and a bare one in us-west-2 (same
# template, same properties). Every AWS call made in the first (by the handlers, and by the untimed setup and
# preparation steps) is recorded with its parameters and made again, with the same parameters, by plain boto3
# clients in the second, right after it: the two copies move through the same states, every conditional write
# succeeds (or fails) in both alike, and handler and bare calls are timed in alternation, so the machine's
# noise falls on both.

BARE_REGION = "us-west-2"


@dataclass
class AwsCall:
    service: str  # boto3's name: "dynamodb", "events"
    operation: str  # "TransactWriteItems"
    params: dict[str, Any]
    error: str | None = None  # the error code the call met, if any: the replay must meet the same


@dataclass(frozen=True)
class HttpCall:
    target: str  # path and query of a request to the UCM simulator


class Recorder:
    """Counts AWS calls with the tests' CallCounter (botocore ``before-call``), as tests/conftest.py's
    ``aws_calls`` fixture does, and keeps each call's parameters (``provide-client-params``) and each UCM
    request so that they can be replayed. Hooks every client created while ``recording()`` is active."""

    def __init__(self) -> None:
        from tests.conftest import CallCounter

        self.counter = CallCounter()
        self.calls: list[AwsCall | HttpCall] = []
        self.on = False
        self.thread = threading.get_ident()  # the handlers' (with --quick other sections run in other threads)

    def _recording(self) -> bool:
        return self.on and threading.get_ident() == self.thread

    def _before_call(self, event_name: str, **kwargs: Any) -> None:
        if self._recording():
            self.counter(event_name, **kwargs)

    def _client_params(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if self._recording():
            self.calls.append(AwsCall(model.service_model.service_name, model.name, copy.deepcopy(params)))

    def _after_call(self, parsed: dict[str, Any], **_: Any) -> None:
        if self._recording() and "Error" in parsed and self.calls and isinstance(self.calls[-1], AwsCall):
            self.calls[-1].error = parsed["Error"].get("Code")

    def take(self) -> tuple[list[str], list[AwsCall | HttpCall]]:
        counted, calls = list(self.counter.calls), self.calls
        self.counter.reset()
        self.calls = []
        return counted, calls

    @contextlib.contextmanager
    def recording(self) -> Iterator[Recorder]:
        """Hook every botocore client created meanwhile (the connector's, Powertools' parameter providers', the
        setup's) and every request httpx sends (only the dispatcher's UCM client sends any in process)."""
        import botocore.loaders
        import botocore.session
        import httpx

        create_client, handle_request = botocore.session.Session.create_client, httpx.HTTPTransport.handle_request
        # Every new boto3 session reads botocore's JSON service models again (a second for SSM's); sharing one
        # loader reads each once per run. Only client creation gets faster, and that is never timed.
        loader = botocore.loaders.create_loader()

        def hooked_client(session: botocore.session.Session, *args: Any, **kwargs: Any) -> Any:
            session.register_component("data_loader", loader)
            client = create_client(session, *args, **kwargs)
            client.meta.events.register("before-call.*.*", self._before_call)
            client.meta.events.register("provide-client-params.*.*", self._client_params)
            client.meta.events.register("after-call.*.*", self._after_call)
            return client

        def recorded_request(transport: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
            if self._recording():
                self.calls.append(HttpCall(request.url.raw_path.decode("ascii")))
            return handle_request(transport, request)

        with mock.patch.object(botocore.session.Session, "create_client", hooked_client), \
                mock.patch.object(httpx.HTTPTransport, "handle_request", recorded_request):
            yield self


@contextlib.contextmanager
def function_variables(values: dict[str, str]) -> Iterator[None]:
    """The functions' variables, as the tests' monkeypatch sets them: only these keys change and are put back
    (mock.patch.dict would clear the whole environment for a moment, under --quick's other threads)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@functools.cache
def _template(kind: type, path: Path) -> Any:
    return kind(path)  # read once per run: parsing template.yaml is a quarter of a second


@functools.cache
def _bare_session(kind: type) -> Any:
    return kind(region_name=BARE_REGION)  # one session for every bare client: service models loaded once


class WithoutStreams:
    """The template as create_resources reads it, its tables without their stream. No handler reads a stream
    (the doorbell is an event here), and moto keeps every stream record in the table object, which it
    deep-copies for each item of a transaction: a stream history would make moto slower at every call."""

    def __init__(self, template: Any) -> None:
        self.template = template

    def __getattr__(self, name: str) -> Any:
        return getattr(self.template, name)

    def table_definitions(self) -> dict[str, dict[str, Any]]:
        return {logical_id: {k: v for k, v in args.items() if k != "StreamSpecification"}
                for logical_id, args in self.template.table_definitions().items()}


@contextlib.contextmanager
def moto_deployment() -> Iterator[Any]:
    """template.yaml's resources on moto with the demo properties published: tests/conftest.py's
    ``deployment`` fixture, outside pytest."""
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS
    from moto import mock_aws
    from tests import conftest

    from pms_connector.config import parse_properties
    from pms_connector.local.provision import create_resources, push_properties
    from pms_connector.local.template import Template

    with mock_aws():
        template = _template(Template, conftest.TEMPLATE)
        env: dict[str, str] = {}
        for spec in template.functions().values():
            env.update(spec.environment)
        with function_variables(env):
            names = create_resources(WithoutStreams(template))
            push_properties(parse_properties(conftest.demo_documents()),
                            parameter_prefix=env["CONFIG_PARAMETER_PREFIX"], secret_prefix=env["CONFIG_SECRET_PREFIX"])
            conftest.reset_caches()
            # The providers Powertools' get_parameter/get_secret use, created now so that they are hooked too.
            DEFAULT_PROVIDERS["ssm"] = parameters.SSMProvider()
            DEFAULT_PROVIDERS["secrets"] = parameters.SecretsProvider()
            try:
                yield conftest.Deployment(template, names, env)
            finally:
                _forget_ucm_clients()
                conftest.reset_caches()


def _forget_ucm_clients() -> None:
    from pms_connector import sites

    for _, client in sites._clients.values():  # the warm per-site clients would outlive the deployment
        client.close()
    sites._clients.clear()


UCM_LOGINS = {"api_user": "cdrapi", "api_password": "api-pass", "pms_user": "admin1", "pms_password": "admin123"}
UCM_ADDRESSES = ["101"]


class Bare:
    """The second copy of the deployment and the plain clients that replay recorded calls on it: boto3 clients
    with default settings (moto in process behind them) and, for the UCM, an httpx client with Digest auth
    talking to a simulator of its own."""

    def __init__(self, deployment: Any) -> None:
        import boto3
        from tests.conftest import demo_documents

        from pms_connector.config import parse_properties
        from pms_connector.local.provision import create_resources, push_properties

        self.session = _bare_session(boto3.session.Session)
        create_resources(WithoutStreams(deployment.template), session=self.session)
        push_properties(parse_properties(demo_documents()), parameter_prefix=deployment.env["CONFIG_PARAMETER_PREFIX"],
                        secret_prefix=deployment.env["CONFIG_SECRET_PREFIX"], session=self.session)
        self.clients: dict[str, Any] = {}
        self.stack = contextlib.ExitStack()
        self.http: Any = None

    def __enter__(self) -> Bare:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def replay(self, calls: list[AwsCall | HttpCall]) -> None:
        from botocore import xform_name
        from botocore.exceptions import ClientError

        for call in calls:
            if isinstance(call, HttpCall):
                self._ucm().get(call.target).raise_for_status()
                continue
            client = self.clients.get(call.service) or self.clients.setdefault(
                call.service, self.session.client(call.service))  # type: ignore[call-overload]
            try:
                getattr(client, xform_name(call.operation))(**call.params)
                error = None
            except ClientError as exc:
                error = exc.response["Error"].get("Code")
            if error != call.error:
                raise RuntimeError(f"replayed {call.service}.{call.operation} met {error}, the handler's {call.error}")

    def _ucm(self) -> Any:
        if self.http is None:
            import ssl

            import httpx

            from pms_connector.ucm.simulator import UcmSimulator

            sim = self.stack.enter_context(UcmSimulator(**UCM_LOGINS, addresses=UCM_ADDRESSES))
            self.http = self.stack.enter_context(httpx.Client(
                base_url=sim.url, trust_env=False, verify=ssl.create_default_context(cadata=sim.ca_pem),
                auth=httpx.DigestAuth(UCM_LOGINS["api_user"], UCM_LOGINS["api_password"])))
        return self.http


@dataclass
class Scene:
    """One deployment set up for an operation: what ``prepare`` and ``event`` need."""

    deployment: Any
    sizes: Sizes
    property_id: str = "demo-hotel"


@dataclass(frozen=True)
class Operation:
    key: str
    label: str
    function: str  # the template's logical id
    event: Callable[[Scene, int], dict[str, Any]]  # invocation i's event
    expect: Callable[[Any], bool]  # the answer a user would see, so that a broken handler is not timed
    prepare: Callable[[Scene, int], None] = lambda scene, i: None  # untimed, before invocation i
    setup: Callable[[Scene], contextlib.AbstractContextManager[None]] = lambda scene: contextlib.nullcontext()
    share: float = 1.0  # of sizes.invocations: the slow ones (moto's big transactions) are timed fewer times


def _empty_table(scene: Scene, i: int) -> None:
    """Before each invocation, an empty table: moto deep-copies the whole table once for each item of a
    transaction (its rollback copy), so a table growing over the run would make moto's time grow, not the
    handler's."""
    from pms_connector import aws

    client, table = aws.dynamodb(), scene.deployment.names["ConnectorTable"]
    keys = [{"pk": item["pk"], "sk": item["sk"]}
            for page in client.get_paginator("scan").paginate(TableName=table, ProjectionExpression="pk, sk")
            for item in page["Items"]]
    for start in range(0, len(keys), 25):
        client.batch_write_item(RequestItems={table: [{"DeleteRequest": {"Key": key}}
                                                      for key in keys[start:start + 25]]})


def _wake(i: int) -> dict[str, Any]:
    from tests.integration.test_aws_calls import wake

    return wake(i)


def _dnd(i: int) -> dict[str, Any]:
    return {"datetime": "2026-01-01T10:00:00", "action": "DND", "room": str(101 + i % 20), "active": i % 2 == 0}


CHECK_IN = {"datetime": "2026-01-01T10:00:00", "action": "BOOKING", "booking_uid": "bench-1", "status": "checkin",
            "room": "101", "account": "a-1", "arrival": "2026-01-01T14:00:00", "departure": "2026-01-05T12:00:00",
            "GUEST_LIST": [{"uid": "g", "name": "Zoë", "surname": "Ruiz", "language": "es"}]}


def _ingest(pid: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    from tests.helpers import RESORT_INGEST_KEY, ingest_event

    return ingest_event(pid, records, **({"key": RESORT_INGEST_KEY} if pid == "demo-resort" else {}))


def _get_request(scene: Scene, i: int) -> dict[str, Any]:
    from tests.helpers import httppms_event, signed

    return httppms_event(signed({"action": "GET_REQUEST", "property": "demo-hotel"}))


def _queue(count: int) -> Callable[[Scene, int], None]:
    """An empty table, then ``count`` records ingested for demo-hotel (DND on one room: no UCM command)."""
    def prepare(scene: Scene, i: int) -> None:
        _empty_table(scene, i)
        records = [{**_dnd(n), "room": "101"} for n in range(count)]
        answer = scene.deployment.invoke("IngestFunction", _ingest("demo-hotel", records))
        assert answer["statusCode"] == 202, answer
    return prepare


def _listed(count: int) -> Callable[[Any], bool]:
    def expect(answer: Any) -> bool:
        return len(json.loads(answer["body"]).get("ACTION_LIST", [])) == count
    return expect


@contextlib.contextmanager
def _ucm_site(scene: Scene) -> Iterator[None]:
    """A property whose UCM is a simulator (HTTPS, Digest), as test_sweeper.py's least-privilege test."""
    from tests.conftest import property_document

    from pms_connector.ucm.simulator import UcmSimulator

    with UcmSimulator(**UCM_LOGINS, addresses=UCM_ADDRESSES) as sim:
        scene.property_id = "bench-site"
        scene.deployment.add_property(property_document(id="bench-site", ucm={
            "base_url": sim.url, **UCM_LOGINS, "ca_pem": sim.ca_pem}))
        yield


def _enqueue_command(scene: Scene, i: int) -> None:
    """An empty table, then one command in the property's outbox: a check-in, then a check-out, and so on."""
    from tests.integration.test_sweeper import outbox

    _empty_table(scene, i)
    command = (("checkin", {"address": "101", "room": "101", "firstname": "Ana", "lastname": "Ruiz"}) if i % 2 == 0
               else ("checkout", {"address": "101", "room": "101"}))
    outbox(scene.deployment).enqueue(scene.property_id, [command])


def _doorbell(scene: Scene, i: int) -> dict[str, Any]:
    from tests.integration.test_sweeper import stream_event

    return stream_event(scene.property_id)


@contextlib.contextmanager
def _idle_properties(scene: Scene) -> Iterator[None]:
    """Properties that all had work and finished it: test_sweeper.py's 1,000-property setup."""
    from tests.integration.test_sweeper import clone_history, finish_one, outbox

    store = outbox(scene.deployment)
    finish_one(store, "idle-0000")
    clone_history(store, "idle-0000", [f"idle-{n:04d}" for n in range(1, scene.sizes.idle_properties)])
    yield


OPERATIONS = [
    Operation("ingest_1", "ingest, 1 BOOKING check-in (property with a UCM)", "IngestFunction",
              lambda scene, i: _ingest("demo-hotel", [CHECK_IN]), lambda a: a["statusCode"] == 202,
              prepare=_empty_table),
    Operation("ingest_98", "ingest, 98 WAKE records", "IngestFunction",
              lambda scene, i: _ingest("demo-resort", [_wake(n) for n in range(98)]), lambda a: a["statusCode"] == 202,
              prepare=_empty_table, share=0.5),
    Operation("get_request_0", "GET_REQUEST, 0 records", "HttppmsFunction", _get_request, _listed(0)),
    Operation("get_request_1", "GET_REQUEST, 1 record", "HttppmsFunction", _get_request, _listed(1),
              prepare=_queue(1)),
    Operation("get_request_100", "GET_REQUEST, 100 records", "HttppmsFunction", _get_request, _listed(100),
              prepare=_queue(100), share=0.5),
    Operation("dispatch", "dispatched UCM command", "DispatcherFunction", _doorbell,
              lambda a: a == {"batchItemFailures": []}, prepare=_enqueue_command, setup=_ucm_site),
    Operation("idle_sweep", "idle sweep", "SweeperFunction", lambda scene, i: {"source": "aws.scheduler"},
              lambda a: a["due"] == 0, setup=_idle_properties),
]


@dataclass
class Measured:
    handler: list[float] = field(default_factory=list)  # seconds of each timed handler invocation
    bare: list[float] = field(default_factory=list)  # seconds of the same calls replayed bare
    counted: list[list[str]] = field(default_factory=list)  # AWS calls of each, as the tests count them
    ucm_requests: list[int] = field(default_factory=list)


def measure_operation(operation: Operation, sizes: Sizes) -> Measured:
    """Warm up, then ``sizes.invocations`` times: prepare (untimed), invoke the handler (timed), replay its calls
    bare on the second copy (timed)."""
    from tests.conftest import FakeContext

    measured = Measured()
    with Recorder().recording() as recorder, moto_deployment() as deployment, Bare(deployment) as bare:
        scene = Scene(deployment, sizes)
        recorder.on = True
        with operation.setup(scene):
            recorder.on = False
            bare.replay(recorder.take()[1])
            handler = deployment.handler(operation.function)
            for i in range(sizes.warm + max(1, round(sizes.invocations * operation.share))):
                recorder.on = True
                operation.prepare(scene, i)
                event = operation.event(scene, i)
                recorder.on = False
                bare.replay(recorder.take()[1])
                recorder.on = True
                started = time.perf_counter()
                answer = handler(event, FakeContext())
                handled = time.perf_counter() - started
                recorder.on = False
                if not operation.expect(answer):
                    raise RuntimeError(f"{operation.label}: unexpected answer {answer!r}")
                counted, calls = recorder.take()
                started = time.perf_counter()
                bare.replay(calls)
                replayed = time.perf_counter() - started
                if i >= sizes.warm:
                    measured.handler.append(handled)
                    measured.bare.append(replayed)
                    measured.counted.append(counted)
                    measured.ucm_requests.append(sum(isinstance(c, HttpCall) for c in calls))
    return measured


def measure_handlers(sizes: Sizes) -> list[Row]:
    """Per operation: its AWS calls (one row) and its handler time against the same calls made bare (another)."""
    call_rows, time_rows = [], []
    for operation in OPERATIONS:
        label = operation.label
        if operation.key == "idle_sweep":
            label = f"idle sweep, {sizes.idle_properties:,} properties"
        progress(f"handler on moto: {label}")
        measured = measure_operation(operation, sizes)
        lists = Counter(tuple(c) for c in measured.counted)
        usual = list(lists.most_common(1)[0][0])
        ucm = max(measured.ucm_requests)
        note = " ".join(c.split(".", 1)[1] for c in usual) + (f" (+{ucm} UCM request)" if ucm else "")
        if len(lists) > 1:
            note += f"; varies: {sorted({len(c) for c in lists})}"
        call_rows.append(Row(f"AWS calls: {label}", len(usual), "calls", note,
                             {"calls": usual, "distinct": [list(c) for c in lists], "ucm_requests": ucm}))
        handler_ms, bare_ms = statistics.median(measured.handler) * 1000, statistics.median(measured.bare) * 1000
        time_rows.append(Row(
            f"handler / bare boto3{' + httpx' if ucm else ''}: {label}", round(handler_ms / bare_ms, 2), "x",
            f"{handler_ms:.1f} ms vs {bare_ms:.1f} ms, medians of {len(measured.bare)}",
            {"handler_ms": round(handler_ms, 3), "bare_ms": round(bare_ms, 3), "invocations": len(measured.bare),
             "handler_p90_ms": round(_percentile(measured.handler, 0.9) * 1000, 3),
             "bare_p90_ms": round(_percentile(measured.bare, 0.9) * 1000, 3)}))
    return call_rows + time_rows


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


# --- cold import ----------------------------------------------------------------------------------------------


def measure_cold_import(sizes: Sizes) -> list[Row]:
    """tests/unit/test_cold_import.py's method: fresh interpreters with Lambda's environment, interleaved."""
    from tests.unit.test_cold_import import API_FUNCTIONS, FUNCTIONS, LAMBDA_ENV, best_times, env_of, load_code

    progress(f"cold import: {len(FUNCTIONS)} handlers, best of {sizes.cold_import_runs}")
    codes = {"boto3": ("import boto3", LAMBDA_ENV), **{f"{f} handler": (load_code(f), env_of(f)) for f in FUNCTIONS},
             **{f"{f} handler, ApiTracing on": (load_code(f), env_of(f, "on")) for f in API_FUNCTIONS}}
    times = best_times(codes, runs=sizes.cold_import_runs)
    boto3 = times.pop("boto3")
    rows = [Row("cold import: import boto3", round(boto3 * 1000, 1), "ms",
                f"the reference of the ratios below, best of {sizes.cold_import_runs}")]
    for name, seconds in times.items():
        rows.append(Row(f"cold import: {name}", round(seconds / boto3, 2), "x import boto3",
                        f"{seconds * 1000:.0f} ms", {"ms": round(seconds * 1000, 1)}))
    return rows


# --- end to end over the local runner -------------------------------------------------------------------------

BENCH_KEY = "bench-ingest-key-{n}-0123456789"
BENCH_TOKEN = "bench-token-{n}-0123456789"  # noqa: S105 - the bench's own properties, made up
POLLED = "poll"  # bench-poll: the property of the ingest -> GET_REQUEST row, apart from the throughput ones


def bench_properties(path: Path, clients: int) -> None:
    """tests/fixtures/properties.yaml's demo-hotel (its UCM simulated by the runner) and one hotel without a UCM
    per concurrent client, as that many PMSs pushing at once."""
    import yaml
    from tests.e2e.test_local_runner import PROPERTIES

    documents = [d for d in yaml.safe_load(PROPERTIES.read_text(encoding="utf-8")) if d["id"] == "demo-hotel"]
    documents += [{"id": f"bench-{n}", "name": f"Bench {n}", "timezone": "Europe/Madrid",
                   "httppms": {"auth": "token", "token": BENCH_TOKEN.format(n=n)},
                   "ingest": {"api_key": BENCH_KEY.format(n=n)}} for n in [*range(clients), POLLED]]
    path.write_text(yaml.safe_dump(documents, allow_unicode=True), encoding="utf-8")


def ingest_throughput(url: str, clients: int, requests: int) -> tuple[float, list[float]]:
    """Records per second accepted when ``clients`` PMSs (one property each) post one record per request."""
    import httpx

    barrier = threading.Barrier(clients + 1)
    latencies: list[float] = []
    failures: list[str] = []

    def client(n: int) -> None:
        headers = {"Authorization": f"Bearer {BENCH_KEY.format(n=n)}"}
        with httpx.Client(base_url=url, timeout=30, headers=headers) as http:
            http.post(f"/pms/bench-{n}/events", json=_dnd(0)).raise_for_status()  # config cached
            barrier.wait()
            for i in range(requests):
                started = time.perf_counter()
                response = http.post(f"/pms/bench-{n}/events", json=_dnd(i))
                latencies.append(time.perf_counter() - started)
                if response.status_code != 202:
                    failures.append(f"{response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} ingest request(s) failed: {failures[0]}")
    return clients * requests / elapsed, latencies


def ingest_to_get_request(runner: Any, events: int) -> list[float]:
    """Seconds from posting a record until a poller (GET_REQUEST back to back, as pmslink would at its interval)
    receives it. The property has no UCM, so nothing but ingest and GET_REQUEST runs."""
    import httpx

    seen: dict[str, float] = {}
    arrived = threading.Condition()
    stop = threading.Event()

    def poller() -> None:
        body = {"action": "GET_REQUEST", "property": f"bench-{POLLED}", "usertoken": BENCH_TOKEN.format(n=POLLED)}
        with httpx.Client(base_url=runner.url, timeout=30) as http:
            while not stop.is_set():
                stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
                answer = http.post("/httppms", json={**body, "datetime": stamp}).json()
                now = time.perf_counter()
                with arrived:
                    for record in answer.get("ACTION_LIST", []):
                        seen.setdefault(record.get("uid"), now)
                    arrived.notify_all()
                stop.wait(0.002)

    thread = threading.Thread(target=poller, daemon=True)
    thread.start()
    latencies = []
    try:
        key = BENCH_KEY.format(n=POLLED)
        for i in range(-2, events):  # two unmeasured events first
            uid = f"lat-{i}"
            record = {"datetime": "2026-01-01T10:00:00", "action": "MSGTXT", "room": "101", "uid": uid,
                      "text": "Your taxi is waiting at the door"}
            started = time.perf_counter()
            response = runner.ingest(f"bench-{POLLED}", record, key=key)
            assert response.status_code == 202, response.text
            with arrived:
                if not arrived.wait_for(lambda uid=uid: uid in seen, timeout=10):
                    raise RuntimeError(f"record {uid} never reached GET_REQUEST")
            if i >= 0:
                latencies.append(seen[uid] - started)
    finally:
        stop.set()
        thread.join(timeout=10)
    return latencies


def _latency_rows(name: str, latencies: list[float]) -> list[Row]:
    ms = sorted(x * 1000 for x in latencies)
    detail = {"events": len(ms), "p50_ms": round(statistics.median(ms), 1),
              "p95_ms": round(_percentile(ms, 0.95), 1), "max_ms": round(ms[-1], 1)}
    return [Row(f"{name} latency p50", detail["p50_ms"], "ms", f"{len(ms)} events, one at a time", detail),
            Row(f"{name} latency p95", detail["p95_ms"], "ms"),
            Row(f"{name} latency max", detail["max_ms"], "ms")]


def measure_end_to_end(sizes: Sizes) -> list[Row]:
    """The local runner (moto server, HTTP API, stream doorbell, UCM simulator) started as `make run` does."""
    from tests.e2e.test_latency import ingest_to_ucm
    from tests.e2e.test_local_runner import Runner, free_port, start

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        properties = Path(folder) / "properties.yaml"
        bench_properties(properties, sizes.clients)
        progress("local runner: starting")
        process, banner = start(properties, free_port())
        try:
            port = next(line for line in banner if "is running on" in line).rsplit(":", 1)[1]
            runner = Runner(process, f"http://127.0.0.1:{port}", banner)
            for clients in sorted({1, sizes.clients}):
                progress(f"local runner: ingest throughput, {clients} client(s)")
                rate, latencies = ingest_throughput(runner.url, clients, sizes.requests_per_client)
                rows.append(Row(f"ingest throughput, {clients} concurrent client{'s' * (clients > 1)}",
                                round(rate, 1), "events/s",
                                f"{clients * sizes.requests_per_client} one-record requests, request p50 "
                                f"{statistics.median(latencies) * 1000:.0f} ms",
                                {"clients": clients, "requests": clients * sizes.requests_per_client,
                                 "request_p50_ms": round(statistics.median(latencies) * 1000, 1),
                                 "request_p95_ms": round(_percentile(latencies, 0.95) * 1000, 1)}))
            progress("local runner: ingest -> GET_REQUEST")
            rows += _latency_rows("ingest -> GET_REQUEST", ingest_to_get_request(runner, sizes.latency_events))
            progress("local runner: ingest -> UCM")
            rows += _latency_rows("ingest -> UCM", ingest_to_ucm(runner, sizes.latency_events))
            runner.http.close()
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except Exception:
                process.kill()
                raise
    return rows


# --- cost -----------------------------------------------------------------------------------------------------


def _sibling(name: str) -> ModuleType:
    """bench/<name>.py (bench is scripts, not a package)."""
    module_name = f"bench_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def measure_cost() -> list[Row]:
    cost = _sibling("cost")
    hotel = cost.Hotel()
    result = cost.report(hotel)
    return [Row("cost per hotel-month (connector)", result["connector_per_property_month"], "US$",
                f"bench/cost.py: {hotel.rooms} rooms, poll every {hotel.poll_seconds:g} s, "
                f"{hotel.events_per_day:,} events/day, {hotel.properties} hotels/deployment; "
                f"VPN +${result['vpn_per_property_month']:.2f}",
                {"vpn_per_property_month": result["vpn_per_property_month"], "hotel": hotel.__dict__})]


# --- the table ------------------------------------------------------------------------------------------------


def run(sizes: Sizes) -> list[Row]:
    """Every section, one after the other (--quick: side by side, as its figures only show the bench works)."""
    if not sizes.side_by_side:
        return [*measure_handlers(sizes), *measure_cold_import(sizes), *measure_end_to_end(sizes), *measure_cost()]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2) as pool:
        cold_import = pool.submit(measure_cold_import, sizes)
        end_to_end = pool.submit(measure_end_to_end, sizes)
        handlers = measure_handlers(sizes)
        return [*handlers, *cold_import.result(), *end_to_end.result(), *measure_cost()]


def shown(row: Row) -> str:
    """The value as the table prints it."""
    if isinstance(row.value, int):
        return str(row.value)
    return f"{row.value:,.2f}" if row.unit.startswith("x") or row.unit == "US$" else f"{row.value:,.1f}"


def render(rows: list[Row]) -> str:
    cells = [("measure", "value", "unit", "note")]
    cells += [(r.measure, shown(r), r.unit, r.note) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(3)]
    lines = []
    for n, (measure, value, unit, note) in enumerate(cells):
        lines.append(f"{measure:<{widths[0]}}  {value:>{widths[1]}}  {unit:<{widths[2]}}  {note}".rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 4)
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    return {"measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "platform": platform.platform(),
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "packages": {p: version(p) for p in ("boto3", "botocore", "moto", "aws-lambda-powertools")}}


def document(rows: list[Row], sizes: Sizes, seconds: float) -> dict[str, Any]:
    return {**machine(), "mode": "quick" if sizes == QUICK else "full", "sizes": asdict(sizes),
            "runtime_seconds": round(seconds, 1), "rows": [asdict(r) for r in rows]}


@contextlib.contextmanager
def stdout_to_devnull() -> Iterator[None]:
    """The handlers log JSON lines and EMF metrics to stdout, as in Lambda: still written, so their cost is in
    the times, but not over the table."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the bench works, measures little")
    parser.add_argument("--json", type=Path, help="also write the table and the machine it ran on to this file")
    args = parser.parse_args(argv)
    if str(ROOT) not in sys.path:  # the measuring code is the tests' (tests/ is a package of the repository)
        sys.path.insert(0, str(ROOT))
    import tests.conftest  # noqa: F401 - fake AWS credentials and region before any client exists

    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    with stdout_to_devnull():
        rows = run(sizes)
    doc = document(rows, sizes, time.perf_counter() - started)
    print(f"pms-connector bench ({doc['mode']}), {doc['measured_at']}, {doc['platform']}, {doc['cpus']} CPUs, "
          f"Python {doc['python']}, {doc['runtime_seconds']:.0f} s\n")
    print(render(rows))
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
