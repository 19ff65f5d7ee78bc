"""`pms-connector local`: the whole connector on a laptop, no AWS account, no Docker.

1. moto's server on a free loopback port stands in for DynamoDB, EventBridge, SSM and Secrets Manager
   (every boto3 client finds it through AWS_ENDPOINT_URL);
2. the template's tables and bus are created from template.yaml, the properties file is validated and
   published to SSM + Secrets Manager exactly as on AWS;
3. an HTTP server serves the template's HttpApi routes, turning each request into an API Gateway
   (payload 2.0) proxy event for the function's handler, loaded unchanged from its CodeUri.

Each function gets a small pool of "containers" (separate module instances, one request at a time each),
as Lambda runs them, so concurrent requests behave as they would on AWS.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import queue
import secrets
import shlex
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlsplit

from pms_connector.config import PropertyConfig, load_properties_file

CONTAINERS_PER_FUNCTION = 4
MOTO_LOCK = threading.Lock()  # one AWS request at a time inside moto (see moto_server)
MAX_REQUEST_BYTES = 10 * 1024 * 1024  # API Gateway HTTP API's own limit
OPENAPI_PATH = "/openapi.json"  # the API's OpenAPI document, served by the local runner only


@dataclass
class LocalContext:
    """The parts of the Lambda context object that Powertools reads."""

    function_name: str
    aws_request_id: str
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"
    deadline: float = 0.0

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


class FunctionPool:
    """A few independently loaded copies of one function's handler, each serving one request at a time."""

    def __init__(self, template: Any, logical_id: str, size: int, timeout_s: float) -> None:
        self.logical_id = logical_id
        self.timeout_s = timeout_s
        self._idle: queue.Queue[Callable[[dict[str, Any], Any], dict[str, Any]]] = queue.Queue()
        for index in range(size):
            self._idle.put(template.load_handler(logical_id, instance=index))

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        handler = self._idle.get()
        try:
            context = LocalContext(function_name=f"local-{self.logical_id}", aws_request_id=str(uuid.uuid4()),
                                   deadline=time.monotonic() + self.timeout_s)
            return handler(event, context)
        finally:
            self._idle.put(handler)


def build_event(method: str, target: str, headers: Mapping[str, str], body: bytes,
                route_path: str, path_parameters: dict[str, str], source_ip: str) -> dict[str, Any]:
    """An API Gateway HTTP API payload 2.0 event, as API Gateway would send it."""
    parts = urlsplit(target)
    now = datetime.now(UTC)
    lowered = {k.lower(): v for k, v in headers.items()}
    text: str | None
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode("ascii"), True
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {route_path}",
        "rawPath": parts.path,
        "rawQueryString": parts.query,
        "headers": lowered,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": lowered.get("host", "localhost"),
            "http": {"method": method, "path": parts.path, "protocol": "HTTP/1.1", "sourceIp": source_ip,
                     "userAgent": lowered.get("user-agent", "")},
            "requestId": uuid.uuid4().hex,
            "routeKey": f"{method} {route_path}",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": encoded,
    }
    if body:
        event["body"] = text
    if parts.query:
        event["queryStringParameters"] = dict(parse_qsl(parts.query, keep_blank_values=True))
    if path_parameters:
        event["pathParameters"] = path_parameters
    return event


class LocalApi:
    """Routes HTTP requests to the template's functions."""

    def __init__(self, template: Any, containers: int = CONTAINERS_PER_FUNCTION) -> None:
        self.routes = template.routes()
        functions = template.functions()
        timeout = float(template.doc.get("Globals", {}).get("Function", {}).get("Timeout", 10))
        self.pools = {lid: FunctionPool(template, lid, containers, timeout) for lid in functions
                      if any(r.function == lid for r in self.routes)}
        self._openapi: bytes | None = None

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes,
               source_ip: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
        path = urlsplit(target).path
        if method.upper() == "GET" and path == OPENAPI_PATH:
            return 200, {"Content-Type": "application/json; charset=utf-8"}, self.openapi()
        allowed = []
        for route in self.routes:
            params = route.match(method, path)
            if params is not None:
                event = build_event(method, target, headers, body, route.path, params, source_ip)
                return _proxy_result(self.pools[route.function].invoke(event))
            if route.pattern.fullmatch(path):
                allowed.append(route.method)
        if allowed:
            return 405, {"Content-Type": "application/json", "Allow": ", ".join(allowed)}, \
                b'{"message":"Method Not Allowed"}'
        return 404, {"Content-Type": "application/json"}, b'{"message":"Not Found"}'

    def openapi(self) -> bytes:
        """The API's OpenAPI document (docs/openapi.json), generated once from the code."""
        if self._openapi is None:
            from pms_connector.openapi import document, render

            self._openapi = render(document()).encode("utf-8")
        return self._openapi


def _proxy_result(result: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode("utf-8")
    headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
    return int(result.get("statusCode", 200)), headers, raw


def make_http_server(api: LocalApi, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        server_version = "pms-connector-local"
        protocol_version = "HTTP/1.1"
        # Headers and body go out as two writes: with Nagle's algorithm the body waits for the client's
        # delayed ACK (~40 ms on Linux) on every request.
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_REQUEST_BYTES:
                self._reply(413, {"Content-Type": "application/json"}, b'{"message":"Request Entity Too Large"}')
                self.close_connection = True
                return
            body = self.rfile.read(length) if length else b""
            try:
                status, headers, raw = api.handle(self.command, self.path, dict(self.headers.items()), body,
                                                  self.client_address[0])
            except Exception:
                logging.getLogger("pms_connector.local").exception("handler crashed")
                status, headers, raw = 500, {"Content-Type": "application/json"}, \
                    b'{"message":"Internal Server Error"}'
            self._reply(status, headers, raw)

        def _reply(self, status: int, headers: Mapping[str, str], raw: bytes) -> None:
            self.send_response(status)
            for key, value in headers.items():
                if key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:
            if os.environ.get("PMS_CONNECTOR_ACCESS_LOG"):
                sys.stderr.write("%s - %s\n" % (self.address_string(), format % args))  # noqa: UP031

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        # socketserver's default listen backlog is 5: a burst of new connections (a PMS and pmslink with
        # several threads each) overflowed it and some were reset. API Gateway takes them all.
        request_queue_size = 128

    return Server((host, port), Handler)


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's server on a free loopback port; yields its URL.

    Each AWS request is handled under one lock: real AWS applies a request (a conditional update, a
    transaction) atomically, and moto's in-memory backends do not, so concurrent requests from the
    runner's containers would otherwise race inside moto and break guarantees the code relies on.
    """
    from moto.moto_server.threaded_moto_server import MotoRequestHandler  # type: ignore[attr-defined]
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    dispatcher = DomainDispatcherApplication(create_backend_app)

    def atomic(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        with MOTO_LOCK:
            return list(dispatcher(environ, start_response))

    class Handler(MotoRequestHandler):
        disable_nagle_algorithm = True  # as the API's server: no delayed-ACK wait on every AWS call

    server = make_server("127.0.0.1", 0, atomic, threaded=True, request_handler=Handler)
    thread = threading.Thread(target=server.serve_forever, name="moto", daemon=True)
    restore = faster_dynamodb()
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        restore()


def faster_dynamodb() -> Callable[[], None]:
    """Take two O(items in the table) costs out of moto's DynamoDB; returns the undo of this patch. (The
    tests' in-process moto uses it too: tests/conftest.py's deployment.)

    moto deep-copies every table a transaction touches before applying it (its rollback), and a Query
    walks every item of the table to find its partition: ~0.4 s and ~0.1 s per call at 10,000 items, so a
    runner got slower with every write. Here a transaction keeps a copy of only the items it names and puts
    them back (and drops the stream records it wrote) when it fails, and a Query on the table's own key
    walks only its partition. Same answers; safe because both run under one lock (moto_server also applies
    one request at a time, MOTO_LOCK; in-process tests may call moto from several threads). Also: moto's
    server lists its own package directory (~200 stat calls) to route every request; the list is read once
    here.
    """
    import copy as real_copy
    import importlib

    # Patched through Any: these are moto's internals, not its API.
    backends: Any = importlib.import_module("moto.backends")
    models: Any = importlib.import_module("moto.dynamodb.models")
    dynamo_type: Any = importlib.import_module("moto.dynamodb.models.dynamo_type")
    table_class: Any = importlib.import_module("moto.dynamodb.models.table").Table

    original = models.DynamoDBBackend.transact_write_items

    class _KeepTables:
        """moto's ``copy`` while a transaction runs: tables are not copied, anything else is."""

        @staticmethod
        def deepcopy(value: Any, memo: Any = None) -> Any:
            return value if isinstance(value, table_class) else real_copy.deepcopy(value, memo)

    lock = threading.RLock()

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        with lock:
            _transact_write_items(self, transact_items)

    def _transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        saved: list[tuple[Any, Any, Any, Any]] = []  # (table, hash key, range key, item before or None)
        streams: dict[int, tuple[Any, int]] = {}
        for entry in transact_items[:100]:
            kind, op = next(iter(entry.items()))
            table = self.tables.get(op.get("TableName")) if isinstance(op, dict) else None
            key = op.get("Item" if kind == "Put" else "Key") if table is not None else None
            if table is None or not isinstance(key, dict) or table.hash_key_attr not in key:
                continue
            hash_key = dynamo_type.DynamoType(key[table.hash_key_attr])
            range_key = dynamo_type.DynamoType(key[table.range_key_attr]) if table.range_key_attr in key else None
            if table.has_range_key and range_key is None:
                continue
            saved.append((table, hash_key, range_key, real_copy.deepcopy(table.get_item(hash_key, range_key))))
            if table.stream_shard is not None:
                streams[id(table)] = (table.stream_shard, len(table.stream_shard.items))
        models.copy = _KeepTables
        try:
            original(self, transact_items)
        except Exception:
            for table, hash_key, range_key, before in reversed(saved):
                partition = table.items[hash_key] if range_key is not None else table.items
                slot = range_key if range_key is not None else hash_key
                if before is None:
                    partition.pop(slot, None)
                else:
                    partition[slot] = before
            for shard, length in streams.values():
                del shard.items[length:]
            raise
        finally:
            models.copy = real_copy

    original_query = table_class.query

    def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return _query(self, hash_key, *args, **kwargs)

    def _query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
        if index_name is not None or hash_key is None or not self.has_range_key:
            return original_query(self, hash_key, *args, **kwargs)
        items = list(self.items.get(hash_key, {}).values())  # the partition, not the table
        comparison: Any = args[0] if len(args) > 1 else None
        bounds: Any = args[1] if len(args) > 1 else ()
        if comparison == "BETWEEN" and len(bounds) == 2 and all(getattr(b, "type", None) == "S" for b in bounds):
            # moto compares every key of the partition in Python before applying the limit: a poll of a
            # long FIFO cost O(records ever queued). Same items, chosen by plain string comparison first.
            low, high = bounds[0].value, bounds[1].value
            items = sorted((i for i in items if low <= i.range_key.value <= high), key=lambda i: i.range_key.value)
        self.all_items = lambda: items
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            del self.all_items

    original_modules = backends.list_of_moto_modules
    modules = list(original_modules())

    models.DynamoDBBackend.transact_write_items = transact_write_items
    table_class.query = query
    backends.list_of_moto_modules = lambda: iter(modules)

    def restore() -> None:
        models.DynamoDBBackend.transact_write_items = original
        table_class.query = original_query
        backends.list_of_moto_modules = original_modules

    return restore


def point_at(endpoint: str) -> None:
    """Every boto3 client created from now on talks to moto at ``endpoint`` with dummy credentials."""
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="local",
        AWS_SECRET_ACCESS_KEY="local",  # noqa: S106 - moto ignores credentials
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCOUNT_ID_ENDPOINT_MODE="disabled",
    )
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)


@dataclass
class Running:
    url: str
    moto_url: str
    server: ThreadingHTTPServer
    properties: dict[str, PropertyConfig]
    simulators: dict[str, Any]
    pollers: dict[str, Any] = field(default_factory=dict)


SIMULATOR_HOST = "ucm-simulator"  # ucm.base_url "https://ucm-simulator": the runner starts one for the property
DEMO_ADDRESSES = [str(r) for floor in (1, 2, 3) for r in range(floor * 100 + 1, floor * 100 + 21)]


def start_simulators(properties: Mapping[str, PropertyConfig], progress: Callable[[str], Any]) -> dict[str, Any]:
    from pms_connector.ucm.simulator import UcmSimulator

    simulators: dict[str, Any] = {}
    for pid, prop in properties.items():
        ucm = prop.ucm
        if ucm is None or urlsplit(ucm.base_url).hostname != SIMULATOR_HOST:
            continue
        addresses = sorted(set(ucm.rooms.values())) or [ucm.address(r) for r in DEMO_ADDRESSES]
        simulator = UcmSimulator(api_user=ucm.api_user, api_password=ucm.api_password.get_secret_value(),
                                 pms_user=ucm.pms_user, pms_password=ucm.pms_password.get_secret_value(),
                                 addresses=addresses, token_case=ucm.token_case)
        simulator.start()
        simulators[pid] = simulator
        progress(f"UCM simulator for {pid} on {simulator.url} (state: {simulator.url}/state, "
                 f"CA: {simulator.ca_path})")
    return simulators


PMS_SIMULATOR_HOST = "pms-simulator"  # pms_server.url "http://pms-simulator": a simulated PMS to poll


def start_pms_simulators(properties: Mapping[str, PropertyConfig], progress: Callable[[str], Any]
                         ) -> dict[str, Any]:
    """A simulated PMS (serving GET_REQUEST) for each property in polling mode pointed at the placeholder,
    with a demo check-in and wake-up queued so the first poll has something to bring in."""
    from pms_connector.auth import local_now
    from pms_connector.pms.simulator import PmsSimulator

    simulators: dict[str, Any] = {}
    for pid, prop in properties.items():
        server = prop.pms_server
        if server is None or urlsplit(server.url).hostname != PMS_SIMULATOR_HOST:
            continue
        simulator = PmsSimulator(property_id=pid, auth=server.auth, user=server.user,
                                 password=server.password.get_secret_value() if server.password else None,
                                 token=server.token.get_secret_value() if server.token else None,
                                 zone=prop.timezone)
        simulator.start()
        now = local_now(prop.zone)
        tomorrow = (datetime.now(prop.zone) + timedelta(days=1)).strftime("%Y-%m-%dT07:00:00")
        simulator.queue(
            {"datetime": now, "action": "BOOKING", "booking_uid": "polled-1", "status": "checkin", "room": "201",
             "account": "2001", "arrival": now, "departure": tomorrow,
             "GUEST_LIST": [{"uid": "g1", "main": True, "name": "Ana", "surname": "García", "language": "es"}]},
            {"datetime": now, "action": "WAKE", "room": "201", "mode": "S", "uid": "polled-w1", "waketime": tomorrow})
        simulators[pid] = simulator
        progress(f"PMS simulator for {pid} on {simulator.url} (state: {simulator.url}state)")
    return simulators


def _on_pms_simulator(prop: PropertyConfig, simulator: Any) -> PropertyConfig:
    if simulator is None or prop.pms_server is None:
        return prop
    return prop.model_copy(update={"pms_server": prop.pms_server.model_copy(update={"url": simulator.url})})


def _on_simulator(prop: PropertyConfig, simulator: Any) -> PropertyConfig:
    if simulator is None or prop.ucm is None:
        return prop
    ucm = prop.ucm.model_copy(update={"base_url": simulator.url, "ca_pem": simulator.ca_pem})
    return prop.model_copy(update={"ucm": ucm})


@contextmanager
def running(properties_path: str | Path, *, template_path: str | Path | None = None, host: str = "127.0.0.1",
            port: int = 3000, progress: Callable[[str], Any] = lambda _m: None) -> Iterator[Running]:
    """Start moto, provision, serve the API in a background thread; stop everything on exit."""
    from pms_connector.local.provision import create_resources, push_properties
    from pms_connector.local.template import Template, find_template

    properties = load_properties_file(properties_path)  # a bad file fails here, before anything starts
    template = Template(template_path or find_template())
    with moto_server() as moto_url:
        point_at(moto_url)
        progress(f"moto server on {moto_url}")
        names = create_resources(template)
        progress(f"created {', '.join(f'{k} ({v})' for k, v in names.items())} from {template.path.name}")
        environment: dict[str, str] = {}
        for spec in template.functions().values():
            environment.update(spec.environment)
        os.environ.update(environment)
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # no EMF blobs in a terminal
        simulators = start_simulators(properties, progress)
        properties = {pid: _on_simulator(prop, simulators.get(pid)) for pid, prop in properties.items()}
        pms_simulators = start_pms_simulators(properties, progress)
        properties = {pid: _on_pms_simulator(prop, pms_simulators.get(pid)) for pid, prop in properties.items()}
        push_properties(properties, parameter_prefix=environment["CONFIG_PARAMETER_PREFIX"],
                        secret_prefix=environment["CONFIG_SECRET_PREFIX"], progress=progress)
        server = make_http_server(LocalApi(template), host, port)
        thread = threading.Thread(target=server.serve_forever, name="local-api", daemon=True)
        thread.start()
        from pms_connector.local.pollers import one_time_schedules, schedules, stream_doorbell

        doorbell = stream_doorbell(template, names["ConnectorTable"])
        pollers = [p for p in [doorbell, *schedules(template), one_time_schedules(template)] if p is not None]
        for poller in pollers:
            poller.start()
        progress(f"pollers: {', '.join(p.name for p in pollers) or 'none'}")
        bound_host, bound_port = str(server.server_address[0]), int(server.server_address[1])
        try:
            yield Running(f"http://{bound_host}:{bound_port}", moto_url, server, properties, simulators,
                          {p.name: p for p in pollers})
        finally:
            for poller in pollers:
                poller.stop()
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
            for simulator in [*simulators.values(), *pms_simulators.values()]:
                simulator.stop()


def usage(url: str, properties: Mapping[str, PropertyConfig], now: datetime | None = None,
          simulators: Mapping[str, Any] | None = None) -> str:
    """Ready-to-paste curl commands for each property, with valid credentials for the current time."""
    from pms_connector.auth import local_now, sign_request

    lines = [f"pms-connector is running on {url}", ""]
    for prop in properties.values():
        stamp = local_now(prop.zone, now)
        record = {"datetime": stamp, "action": "BOOKING", "property": prop.id,
                  "booking_uid": f"demo-{secrets.token_hex(3)}", "status": "checkin", "room": "101",
                  "account": "1001", "arrival": stamp, "departure": stamp,
                  "GUEST_LIST": [{"uid": "g1", "main": True, "name": "Ana", "surname": "García",
                                  "language": "es"}]}
        get_request, authorization = sign_request(prop, {"action": "GET_REQUEST"}, now)
        auth_args = f" -H {shlex.quote('Authorization: ' + authorization)}" if authorization else ""
        settings = prop.httppms
        key = prop.ingest.api_key.get_secret_value()
        lines += [
            f"# {prop.name} ({prop.id}, {prop.timezone}, auth {settings.auth}, delivery {settings.delivery})",
            "# 1. the PMS pushes a check-in:",
            f"curl -s -X POST {url}/pms/{prop.id}/events -H 'Authorization: Bearer {key}' "
            f"-H 'Content-Type: application/json' -d {shlex.quote(json.dumps(record, ensure_ascii=False))}",
            "# 2. pmslink polls it with GET_REQUEST"
            + (f" (MD5 token valid ±{settings.md5_window_seconds} s; `pms-connector token` makes a fresh one)"
               if settings.auth == "md5" else "") + ":",
            f"curl -s -X POST {url}/httppms{auth_args} -H 'Content-Type: application/json' "
            f"-d {shlex.quote(json.dumps(get_request))}",
            "",
        ]
    for pid, simulator in (simulators or {}).items():
        lines += [f"# 3. the guest on {pid}'s simulated UCM (what the phone shows):",
                  f"curl -s --cacert {shlex.quote(str(simulator.ca_path))} {simulator.url}/state", ""]
    for prop in properties.values():
        if prop.pms_server is not None:
            lines += [f"# {prop.id} is in polling mode: the connector polls its PMS at {prop.pms_server.url} "
                      "(every minute, then every poll_interval_seconds); what the PMS holds and received:",
                      f"curl -s {prop.pms_server.url.rstrip('/')}/state", ""]
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)


def serve(properties_path: str | Path, *, port: int, host: str = "127.0.0.1",
          template_path: str | Path | None = None, out: TextIO = sys.stdout) -> None:
    """Run until Ctrl-C (the README's first command)."""

    def say(message: str) -> None:
        print(message, file=out, flush=True)

    with running(properties_path, template_path=template_path, host=host, port=port, progress=say) as run:
        try:  # from before "Press Ctrl-C" is printed: a Ctrl-C right after it stops cleanly too
            say("")
            say(usage(run.url, run.properties, simulators=run.simulators))
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            say("\nstopping…")
    say("stopped.")
