"""Operator commands against a deployed stack: find its resources, read configs, queues and logs, probe a UCM.

``pms-connector`` (cli.py) parses the arguments and prints; the logic lives here. A ``Target`` is one boto3
session (``--profile``, ``--region``) and the resources of one stack, read from its CloudFormation Outputs
(``--stack``) or given directly (``--table``, ``--environment``), as the functions see them in their
environment. ``AWS_ENDPOINT_URL`` (moto, the local runner) applies to every client, as everywhere else.

Nothing here returns a secret or a guest's personal data: configs come back with each secret replaced by
"set"/"missing", FIFO and inbound entries as action, room, time and sequence number only.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from pms_connector.config import SECRET_FIELDS, PropertyConfig, UcmSettings, merge_secrets, parse_property
from pms_connector.errors import ConfigError
from pms_connector.outbox import OutboxStore
from pms_connector.store import ConnectorStore, Cursor, InboundEntry

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_ssm import SSMClient

# Exit codes of the operator commands (docs/operator.md lists them; keep both in step).
EXIT_OK = 0
EXIT_FAILED = 1  # the operation failed: AWS error, refused by the store, declined at the prompt
EXIT_USAGE = 2  # bad arguments, unknown stack or property, invalid configuration
EXIT_UNREACHABLE = 3  # check-ucm: DNS, TCP or HTTP connection failed
EXIT_TLS = 4  # check-ucm: TLS handshake or certificate check failed
EXIT_CREDENTIALS = 5  # check-ucm: Digest login or PMS token refused, or the PMS API disabled

# An operator waits on a terminal, not on an HTTP client: longer timeouts than the functions' clients.
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=20)
WORKERS = 8  # parallel DynamoDB reads when summarising many properties
FIFO_PROBE = 64  # sequence numbers read per step of the replay search


class OperatorError(Exception):
    """A failure to report in one line, with the exit code the command ends with."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


Progress = Callable[[int, int], None]  # (done, total)


def _no_progress(_done: int, _total: int) -> None:
    return None


# ------------------------------------------------------------------------------------------ the target


class Target:
    """One boto3 session and the resources of one deployment (table, config prefixes)."""

    def __init__(self, session: boto3.session.Session, *, table_name: str | None, parameter_prefix: str,
                 secret_prefix: str, stack: str | None = None, outputs: Mapping[str, str] | None = None) -> None:
        self.session = session
        self.table_name = table_name
        self.parameter_prefix = parameter_prefix.rstrip("/")
        self.secret_prefix = secret_prefix.rstrip("/")
        self.stack = stack
        self.outputs = dict(outputs or {})
        self._dynamodb: DynamoDBClient | None = None
        self._ssm: SSMClient | None = None
        self._secrets: SecretsManagerClient | None = None

    @property
    def dynamodb(self) -> DynamoDBClient:
        if self._dynamodb is None:
            self._dynamodb = self.session.client("dynamodb", config=CLIENT_CONFIG)
        return self._dynamodb

    @property
    def ssm(self) -> SSMClient:
        if self._ssm is None:
            self._ssm = self.session.client("ssm", config=CLIENT_CONFIG)
        return self._ssm

    @property
    def secrets(self) -> SecretsManagerClient:
        if self._secrets is None:
            self._secrets = self.session.client("secretsmanager", config=CLIENT_CONFIG)
        return self._secrets

    def require_table(self) -> str:
        if not self.table_name:
            raise OperatorError("no table: pass --stack NAME (or $PMS_CONNECTOR_STACK), or --table / $TABLE_NAME",
                                EXIT_USAGE)
        return self.table_name

    def connector_store(self) -> ConnectorStore:
        return ConnectorStore(self.require_table(), client=self.dynamodb)

    def outbox_store(self) -> OutboxStore:
        return OutboxStore(self.require_table(), client=self.dynamodb)

    def parameter_name(self, property_id: str) -> str:
        return f"{self.parameter_prefix}/{property_id}"

    def secret_name(self, property_id: str) -> str:
        return f"{self.secret_prefix}/{property_id}"


def resolve_target(*, stack: str | None, profile: str | None, region: str | None, table: str | None,
                   environment: str) -> Target:
    """The deployment to work on: the stack's Outputs with ``stack``, else ``table`` and ``environment``.

    The config prefixes are the ``ConfigParameterPrefix``/``ConfigSecretPrefix`` outputs; a stack without them
    (deployed before they existed) gets them from its ``Environment`` parameter, as template.yaml builds them.
    """
    session = boto3.session.Session(profile_name=profile, region_name=region)
    if not stack:
        return Target(session, table_name=table, parameter_prefix=f"/pms-connector/{environment}/properties",
                      secret_prefix=f"pms-connector/{environment}/properties")
    cloudformation: Any = session.client("cloudformation", config=CLIENT_CONFIG)
    try:
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as exc:
        # DescribeStacks answers ValidationError for a stack that does not exist (and for a malformed name).
        if exc.response.get("Error", {}).get("Code") == "ValidationError":
            raise OperatorError(f"stack '{stack}' not found in region {session.region_name or '(none)'}",
                                EXIT_USAGE) from None
        raise
    found = stacks[0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", []) if "OutputValue" in o}
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in found.get("Parameters", [])}
    if "ConnectorTableName" not in outputs:
        raise OperatorError(f"stack '{stack}' has no output ConnectorTableName (status "
                            f"{found.get('StackStatus', '?')}): is it a pms-connector stack?", EXIT_USAGE)
    env = parameters.get("Environment") or environment
    return Target(
        session,
        table_name=outputs["ConnectorTableName"],
        parameter_prefix=outputs.get("ConfigParameterPrefix") or f"/pms-connector/{env}/properties",
        secret_prefix=outputs.get("ConfigSecretPrefix") or f"pms-connector/{env}/properties",
        stack=stack,
        outputs=outputs,
    )


# ------------------------------------------------------------------------------------ configurations


def property_documents(target: Target) -> dict[str, dict[str, Any] | None]:
    """Every property document under the parameter prefix (without secrets), by id; None when the parameter
    is not a JSON object. GetParametersByPath, 10 a page."""
    out: dict[str, dict[str, Any] | None] = {}
    paginator = target.ssm.get_paginator("get_parameters_by_path")
    for page in paginator.paginate(Path=target.parameter_prefix, Recursive=False):
        for parameter in page.get("Parameters", []):
            pid = parameter["Name"].rsplit("/", 1)[-1]
            out[pid] = _json_object(parameter.get("Value", ""))
    return dict(sorted(out.items()))


def property_document(target: Target, property_id: str) -> dict[str, Any]:
    """One property's document (without secrets); OperatorError (exit 2) when there is no such property."""
    name = target.parameter_name(property_id)
    try:
        value = target.ssm.get_parameter(Name=name)["Parameter"].get("Value", "")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("ParameterNotFound", "ValidationException"):
            raise OperatorError(f"no property '{property_id}' (no parameter {name})", EXIT_USAGE) from None
        raise
    document = _json_object(value)
    if document is None:
        raise OperatorError(f"parameter {name} is not a JSON object", EXIT_USAGE)
    return document


def property_secrets(target: Target, property_id: str) -> dict[str, Any] | None:
    """The property's secret document; None when the secret does not exist or is not a JSON object."""
    try:
        value = target.secrets.get_secret_value(SecretId=target.secret_name(property_id)).get("SecretString", "")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return None
        raise
    return _json_object(value)


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except (ValueError, TypeError):
        return None
    return value if isinstance(value, dict) else None


def _expected_secrets(document: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The secret fields this document needs (a token only with token auth, the UCM's only with a UCM)."""
    wanted: list[tuple[str, str]] = []
    for section, key in SECRET_FIELDS:
        part = document.get(section)
        if section != "ingest" and not isinstance(part, Mapping):
            continue  # an optional section that is not there needs no secret
        if section in ("httppms", "pms_server") and isinstance(part, Mapping):
            auth = part.get("auth")
            if (key == "token") != (auth == "token"):
                continue
        wanted.append((section, key))
    return wanted


def redact(document: Mapping[str, Any], secrets: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, str]]:
    """The document with every secret field removed, and each expected secret as "set" or "missing".

    A secret found in the parameter itself (where anyone with ssm:GetParameter reads it) is reported, never shown.
    """
    public = copy.deepcopy(dict(document))
    states: dict[str, str] = {}
    expected = _expected_secrets(public)
    for section, key in SECRET_FIELDS:
        part = public.get(section)
        in_parameter = isinstance(part, dict) and part.pop(key, None) is not None
        held = secrets.get(section) if secrets else None
        in_secret = isinstance(held, Mapping) and held.get(key) not in (None, "")
        label = f"{section}.{key}"
        if in_parameter:
            states[label] = "set in the SSM parameter (move it to the secret)"
        elif in_secret:
            states[label] = "set"
        elif (section, key) in expected:
            states[label] = "missing"
    ucm = public.get("ucm")
    if isinstance(ucm, dict) and isinstance(ucm.get("ca_pem"), str):
        count = ucm["ca_pem"].count("BEGIN CERTIFICATE")
        ucm["ca_pem"] = f"<PEM, {count} certificate(s)>"
    return public, states


@dataclass(frozen=True)
class Validation:
    property_id: str
    problems: list[str]  # each names the field; empty when the property is valid


def validate_property(target: Target, property_id: str, document: Mapping[str, Any] | None = None,
                      *, missing_parameter_ok: bool = False) -> tuple[Validation, PropertyConfig | None]:
    """Fetch the parameter (unless given) and the secret, merge and validate them as the functions do."""
    problems: list[str] = []
    label = f"property '{property_id}'"
    if document is None:
        try:
            document = property_document(target, property_id)
        except OperatorError as exc:
            if not missing_parameter_ok:
                raise
            return Validation(property_id, [str(exc)]), None
    secrets = property_secrets(target, property_id)
    if secrets is None:
        problems.append(f"{label}: secret {target.secret_name(property_id)}: not found or not a JSON object")
    for field_name, state in redact(document, secrets)[1].items():
        if state not in ("set", "missing"):
            problems.append(f"{label}: {field_name}: {state}")
    config: PropertyConfig | None = None
    try:
        config = parse_property(merge_secrets(document, secrets or {}))
    except ConfigError as exc:
        problems += str(exc).splitlines()
    if config is not None and config.id != property_id:
        problems.append(f"{label}: id: '{config.id}' does not match the parameter name")
        config = None
    return Validation(property_id, problems), (config if not problems else None)


def validate_properties(target: Target, property_ids: Iterable[str] | None = None,
                        progress: Progress = _no_progress) -> list[Validation]:
    """Validate the given properties (every property under the prefix when None), one secret read each."""
    if property_ids is None:
        documents: Mapping[str, dict[str, Any] | None] = property_documents(target)
    else:
        documents = dict.fromkeys(property_ids)
    out: list[Validation] = []
    total = len(documents)
    for index, (pid, document) in enumerate(documents.items(), start=1):
        if property_ids is None and document is None:
            out.append(Validation(pid, [f"property '{pid}': parameter {target.parameter_name(pid)} "
                                        "is not a JSON object"]))
        else:
            out.append(validate_property(target, pid, document, missing_parameter_ok=True)[0])
        progress(index, total)
    return out


def load_property(target: Target, property_id: str) -> PropertyConfig:
    """The property's validated configuration with its secrets; ConfigError lists every problem."""
    validation, config = validate_property(target, property_id)
    if config is None:
        raise ConfigError("\n".join(validation.problems))
    return config


# --------------------------------------------------------------------------------------- queue and outbox


@dataclass(frozen=True)
class QueueStatus:
    """A property's pmslink FIFO: newest sequence, delivery cursor and what waits for GET_REQUEST."""

    property_id: str
    newest_seq: int
    delivered_up_to: int
    pending: int
    open_batch: str | None
    last_delivery_at: int | None


@dataclass(frozen=True)
class OutboxStatus:
    """A property's UCM outbox: unfinished commands (since when) and parked ones."""

    pending_since: int | None = None  # when the oldest unfinished command was written; None: nothing pending
    next_due: int | None = None
    parked: int = 0


def queue_status(store: ConnectorStore, property_id: str) -> QueueStatus:
    """One property's queue: one Query (the tail) and one GetItem (the cursor)."""
    tail = store.fifo_tail(property_id)
    cursor = store.get_cursor(property_id)
    return QueueStatus(property_id, tail, cursor.delivered, max(0, tail - cursor.delivered), cursor.batch_id,
                       cursor.delivered_at)


def queue_statuses(target: Target, property_ids: list[str], progress: Progress = _no_progress) -> list[QueueStatus]:
    """The queues of many properties, read in parallel (two reads a property), in the order given."""
    store = target.connector_store()
    done = itertools.count(1)  # next() on a count is atomic: the workers share it
    total = len(property_ids)

    def read(pid: str) -> QueueStatus:
        status = queue_status(store, pid)
        progress(next(done), total)
        return status

    if total <= 1:
        return [read(pid) for pid in property_ids]
    with ThreadPoolExecutor(max_workers=min(WORKERS, total)) as pool:
        return list(pool.map(read, property_ids))


def outbox_statuses(target: Target) -> dict[str, OutboxStatus]:
    """Every property's outbox backlog and parked count: two queries however many properties there are.
    A property missing from the answer is idle (``OutboxStatus()``)."""
    store = target.outbox_store()
    parked = store.parked_counts()
    backlog = {m.property_id: m for m in store.backlog()}
    out: dict[str, OutboxStatus] = {}
    for pid in sorted(set(parked) | set(backlog)):
        marker = backlog.get(pid)
        out[pid] = OutboxStatus(pending_since=marker.since if marker else None,
                                next_due=marker.next_due if marker else None, parked=parked.get(pid, 0))
    return out


@dataclass(frozen=True)
class PropertySummary:
    property_id: str
    name: str
    timezone: str
    auth: str
    delivery: str
    ucm: bool
    polling: bool
    readable: bool  # False: the parameter is not a JSON object
    queue: QueueStatus
    outbox: OutboxStatus


def property_summaries(target: Target, progress: Progress = _no_progress) -> list[PropertySummary]:
    """Every property under the prefix with its queue and outbox state (no secret is read)."""
    documents = property_documents(target)
    if not documents:
        return []
    queues = queue_statuses(target, list(documents), progress)
    outboxes = outbox_statuses(target)
    out: list[PropertySummary] = []
    for (pid, document), queue in zip(documents.items(), queues, strict=True):
        doc: dict[str, Any] = document or {}
        httppms: Mapping[str, Any] = doc["httppms"] if isinstance(doc.get("httppms"), Mapping) else {}
        out.append(PropertySummary(
            property_id=pid, name=str(doc.get("name", "")), timezone=str(doc.get("timezone", "")),
            auth=str(httppms.get("auth", "")), delivery=str(httppms.get("delivery", "remove")),
            ucm=isinstance(doc.get("ucm"), Mapping), polling=isinstance(doc.get("pms_server"), Mapping),
            readable=document is not None, queue=queue, outbox=outboxes.get(pid, OutboxStatus()),
        ))
    return out


@dataclass(frozen=True)
class OutboxHold:
    """A site the dispatcher stopped sending to: its UCM refused the login or the token, its PMS API is off,
    or its TLS settings are wrong. Nothing is sent before ``until``; then the next command tests the site
    and, if it goes through, lifts the hold (a hold whose time has passed waits for that command)."""

    until: int
    reason: str | None  # the answer that held it, e.g. "[16] Auth error !" ("[None] HTTP 401": no UCM code)


@dataclass(frozen=True)
class PropertyDetail:
    property_id: str
    document: dict[str, Any]  # without secrets
    secrets: dict[str, str]  # field -> "set" / "missing" / ...
    queue: QueueStatus
    outbox: OutboxStatus
    hold: OutboxHold | None  # None: the site is not held


def outbox_hold(target: Target, property_id: str) -> OutboxHold | None:
    """The property's hold, if the dispatcher holds its site: one GetItem of the outbox meta, no lease taken.
    (Not in ``property_summaries``: it would cost one more read a property.)"""
    meta = target.outbox_store().meta(property_id)
    if meta is None or not meta.held_until:
        return None
    return OutboxHold(meta.held_until, meta.hold_reason)


def property_detail(target: Target, property_id: str) -> PropertyDetail:
    """One property's document (secrets as set/missing), queue, outbox and hold."""
    document, states = redact(property_document(target, property_id), property_secrets(target, property_id))
    return PropertyDetail(property_id, document, states, queue_status(target.connector_store(), property_id),
                          outbox_statuses(target).get(property_id, OutboxStatus()),
                          outbox_hold(target, property_id))


# ------------------------------------------------------------------------------------------------ replay

_RELATIVE = re.compile(r"^\s*(\d{1,6})\s*([smhd])\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_since(text: str, now: float) -> float:
    """A point in time as epoch seconds: ISO 8601 (without an offset: UTC) or relative ("30m", "2h", "1d")."""
    relative = _RELATIVE.match(text)
    if relative:
        return now - int(relative[1]) * _UNIT_SECONDS[relative[2].lower()]
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise OperatorError(f"--since: '{text[:40]}' is neither ISO 8601 (2026-01-31T08:00:00Z) "
                            "nor relative (30m, 2h, 1d)", EXIT_USAGE) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment.timestamp() > now:
        raise OperatorError(f"--since: {moment.isoformat()} is in the future", EXIT_USAGE)
    return moment.timestamp()


def first_seq_since(store: ConnectorStore, property_id: str, since: float) -> int | None:
    """The first FIFO record written at or after ``since`` (None: none). A binary search over the sequence
    numbers, a few dozen reads at most; a missing record (expired) counts as older than any present one."""
    lo, hi = 1, store.fifo_tail(property_id)
    found: int | None = None
    while lo <= hi:
        mid = (lo + hi) // 2
        window = store.read_fifo(property_id, after=mid - 1, limit=FIFO_PROBE)
        if not window:
            lo = mid + FIFO_PROBE
            continue
        head = window[0]
        if head.ingested_at >= since:
            found, hi = head.seq, mid - 1
        else:
            later = next((r for r in window if r.ingested_at >= since), None)
            if later is not None:
                return later.seq if found is None or later.seq < found else found
            lo = window[-1].seq + 1
    return found


@dataclass(frozen=True)
class ReplayPlan:
    property_id: str
    since: float
    from_seq: int | None  # first record written since then (None: none)
    delivered_up_to: int
    count: int  # records that will be delivered again


def plan_replay(target: Target, property_id: str, since: float) -> ReplayPlan:
    """What ``queue replay --since`` would do, without doing it."""
    store = target.connector_store()
    from_seq = first_seq_since(store, property_id, since)
    delivered = store.get_cursor(property_id).delivered
    count = max(0, delivered - from_seq + 1) if from_seq is not None else 0
    return ReplayPlan(property_id, since, from_seq, delivered, count)


def replay(target: Target, plan: ReplayPlan) -> Cursor:
    """Move the property's delivery cursor back so the next GET_REQUEST delivers from ``plan.from_seq`` again."""
    from pms_connector import fifo

    if plan.from_seq is None:
        raise OperatorError("nothing to replay", EXIT_FAILED)
    return fifo.replay(target.connector_store(), plan.property_id, plan.from_seq)


# ---------------------------------------------------------------------------------------------- inbound


@dataclass(frozen=True)
class InboundRow:
    """One request pmslink sent, without its content (charges, names and messages stay in the log)."""

    seq: int
    action: str
    room: str
    received_at: int
    published: bool


def _row(entry: InboundEntry) -> InboundRow:
    room = entry.request.get("room")
    return InboundRow(entry.seq, entry.action[:16], str(room)[:16] if room is not None else "-",
                      entry.received_at, not entry.publish_pending)


def inbound_tail(target: Target, property_id: str, limit: int) -> list[InboundRow]:
    """The newest ``limit`` entries of the property's inbound log, oldest first."""
    store = target.connector_store()
    newest = store.inbound_tail(property_id)
    return [_row(e) for e in store.list_inbound(property_id, after=max(0, newest - limit), limit=limit)]


def follow_inbound(target: Target, property_id: str, after: int, *, interval: float = 2.0,
                   sleep: Callable[[float], None] | None = None) -> Iterator[list[InboundRow]]:
    """Entries after ``after`` as they arrive, polled every ``interval`` seconds; never ends by itself."""
    store = target.connector_store()
    while True:
        (sleep or time.sleep)(interval)
        while True:
            entries = store.list_inbound(property_id, after=after, limit=100)
            if entries:
                after = entries[-1].seq
                yield [_row(e) for e in entries]
            if len(entries) < 100:
                break


# -------------------------------------------------------------------------------------------- check-ucm


@dataclass(frozen=True)
class CheckStep:
    name: str
    ok: bool | None  # None: skipped
    detail: str
    seconds: float
    exit_code: int = EXIT_OK  # the command's exit code when this step failed


def check_ucm(settings: UcmSettings) -> Iterator[CheckStep]:
    """Probe a site's UCM step by step: DNS, TCP, TLS, then the credentials with a request that names no room.

    Stops at the first failed step. Runs from where it is called: the UCM is on the hotel LAN, reached over
    the VPN from the dispatcher's subnets.
    """
    import httpx

    from pms_connector.ucm.client import UcmClient, tls_context

    url = httpx.URL(settings.base_url)
    host = url.host
    port = url.port or (443 if url.scheme == "https" else 80)
    timeout = settings.connect_timeout_seconds

    started = time.monotonic()
    try:
        addresses = sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})
    except (socket.gaierror, UnicodeError) as exc:
        yield CheckStep("dns", False, f"{host}: {getattr(exc, 'strerror', None) or exc}", _since(started),
                        EXIT_UNREACHABLE)
        return
    yield CheckStep("dns", True, f"{host} -> {', '.join(addresses)}", _since(started))

    started = time.monotonic()
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except TimeoutError:
        yield CheckStep("tcp", False, f"port {port}: no answer within {timeout:g} s (firewall, VPN down?)",
                        _since(started), EXIT_UNREACHABLE)
        return
    except OSError as exc:
        yield CheckStep("tcp", False, f"port {port}: {exc.strerror or exc}", _since(started), EXIT_UNREACHABLE)
        return
    yield CheckStep("tcp", True, f"connected to {sock.getpeername()[0]} port {port}", _since(started))

    started = time.monotonic()
    if url.scheme != "https":
        sock.close()
        yield CheckStep("tls", None, "skipped: plain http (the PMS API should be reached over https)", 0.0)
    else:
        failure: str | None = None
        try:
            context = tls_context(settings)  # the trust the dispatcher's UcmClient uses
        except ssl.SSLError:
            failure = "ucm.ca_pem is not a valid PEM certificate"
        try:
            if failure is None:
                with context.wrap_socket(sock, server_hostname=host) as tls:
                    version, certificate = tls.version(), tls.getpeercert()
        except ssl.SSLCertVerificationError as exc:
            failure = f"certificate not trusted: {exc.verify_message} (ucm.ca_pem, ucm.verify_tls)"
        except ssl.SSLError as exc:
            failure = f"handshake failed: {exc.reason or exc}"
        except OSError as exc:  # a reset or a timeout during the handshake: a service that is not TLS
            failure = f"handshake failed: {exc.strerror or type(exc).__name__}"
        finally:
            sock.close()
        if failure is not None:
            yield CheckStep("tls", False, failure, _since(started), EXIT_TLS)
            return
        detail = f"{version}, " + (_certificate_summary(certificate) if certificate else
                                   "certificate NOT verified (ucm.verify_tls: false)")
        yield CheckStep("tls", True, detail, _since(started))

    started = time.monotonic()
    with UcmClient(settings) as client:
        reply = client.probe()  # a request without an action: it names no room, reads and changes nothing
    seconds = _since(started)
    if reply.http_status in (401, 403):
        yield CheckStep("login", False, f"HTTP {reply.http_status}: Digest login refused (ucm.api_user, "
                                        "ucm.api_password: HTTPS API settings of the UCM)", seconds, EXIT_CREDENTIALS)
        return
    if reply.http_status is None:
        exit_code = EXIT_UNREACHABLE if reply.outcome == "retry" else EXIT_FAILED
        yield CheckStep("login", False, reply.text, seconds, exit_code)
        return
    if reply.http_status != 200 or reply.code is None:
        yield CheckStep("login", False, f"unexpected answer: {reply.text} (is base_url the UCM's PMS API?)",
                        seconds, EXIT_FAILED)
        return
    yield CheckStep("login", True, f"Digest login accepted (user {settings.api_user})", seconds)
    if reply.code == 16:
        yield CheckStep("token", False, "[16] Auth error: PMS token refused (ucm.pms_user, ucm.pms_password, "
                                        "ucm.token_case: PMS settings of the UCM)", 0.0, EXIT_CREDENTIALS)
        return
    if reply.code == 21:
        yield CheckStep("token", False, "[21] PMSAPI not enable: the PMS API is off on the UCM", 0.0,
                        EXIT_CREDENTIALS)
        return
    yield CheckStep("token", True, f"PMS token accepted: an empty request answered [{reply.code}] {reply.text} "
                                   "(nothing read or changed)", 0.0)


def _since(started: float) -> float:
    return time.monotonic() - started


def _certificate_summary(certificate: Mapping[str, Any]) -> str:
    subject = ", ".join(f"{k}={v}" for rdn in certificate.get("subject", ()) for k, v in rdn)
    not_after = certificate.get("notAfter")
    if not isinstance(not_after, str):
        return f"certificate {subject} trusted"
    expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), UTC)
    days = (expires - datetime.now(UTC)) // timedelta(days=1)
    return f"certificate {subject} trusted, expires {expires:%Y-%m-%d} ({days} days)"
