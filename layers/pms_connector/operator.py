"""Operator commands against a deployed stack: find its resources, read configs, queues and logs, probe a UCM.

``pms-connector`` (cli.py) parses the arguments and prints; the logic lives here. A ``Target`` is one boto3
session (``--profile``, ``--region``) and the resources of one stack, read from its CloudFormation Outputs
(``--stack``) or given directly (``--table``, ``--environment``), as the functions see them in their
environment. ``AWS_ENDPOINT_URL`` (moto, the local runner) applies to every client, as everywhere else.

``check_ucm`` is the one implementation of ``property check-ucm``: the CLI runs it from the operator's machine
(``--from-here``, or without a stack), and the dispatcher function runs it inside the connector's VPC when
invoked with ``{"check_ucm": ID}`` (``probe_property``, answered as a ``UcmCheck`` document that
``remote_check_ucm`` reads back), since a UCM is reachable only from there.

Nothing here returns a secret or a guest's personal data: configs come back with each secret replaced by
"set"/"missing", FIFO and inbound entries as action, room, time and sequence number only.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import os
import random
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from pms_connector.config import (
    PROPERTY_ID_PATTERN,
    SECRET_FIELDS,
    PropertyConfig,
    UcmSettings,
    merge_secrets,
    parse_property,
)
from pms_connector.errors import ConfigError
from pms_connector.outbox import DUE_PK, PARKED_PK, OutboxCommand, OutboxStore
from pms_connector.store import ConnectorStore, Cursor, InboundEntry
from pms_connector.wakeups import schedule_name

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
# The dispatcher answers a check-ucm invocation within its 60 s timeout (template.yaml): wait a little longer
# than that, and retry once at most (a probe reads and changes nothing, but each try is a full wait).
PROBE_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=5, read_timeout=75)
WORKERS = 8  # parallel DynamoDB reads when summarising many properties
FIFO_PROBE = 64  # sequence numbers read per step of the replay search
PAGE = 100  # log entries or commands read per query when listing many
DISPATCHER = "DispatcherFunction"  # the dispatcher's logical id in template.yaml


class OperatorError(Exception):
    """A failure to report in one line, with the exit code the command ends with."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


Progress = Callable[[int, int | None], None]  # (done, total; None while the total is not known yet)


def _no_progress(_done: int, _total: int | None) -> None:
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
        self._cloudformation: Any = None
        self._lambda: Any = None

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

    @property
    def cloudformation(self) -> Any:
        if self._cloudformation is None:
            self._cloudformation = self.session.client("cloudformation", config=CLIENT_CONFIG)
        return self._cloudformation

    @property
    def lambda_client(self) -> Any:
        if self._lambda is None:
            self._lambda = self.session.client("lambda", config=PROBE_CLIENT_CONFIG)
        return self._lambda

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


def property_documents(target: Target, progress: Progress = _no_progress) -> dict[str, dict[str, Any] | None]:
    """Every property document under the parameter prefix (without secrets), by id; None when the parameter
    is not a JSON object. GetParametersByPath, 10 a page: ``progress`` gets the count after each page."""
    out: dict[str, dict[str, Any] | None] = {}
    paginator = target.ssm.get_paginator("get_parameters_by_path")
    for page in paginator.paginate(Path=target.parameter_prefix, Recursive=False):
        for parameter in page.get("Parameters", []):
            pid = parameter["Name"].rsplit("/", 1)[-1]
            out[pid] = _json_object(parameter.get("Value", ""))
        progress(len(out), None)
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
        documents: Mapping[str, dict[str, Any] | None] = property_documents(target, progress)
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
    documents = property_documents(target, progress)
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


def first_seq_since(store: ConnectorStore, property_id: str, since: float,
                    progress: Progress = _no_progress) -> int | None:
    """The first FIFO record written at or after ``since`` (None: none). A binary search over the sequence
    numbers, a few dozen reads at most; a missing record (expired) counts as older than any present one.
    ``progress`` counts the reads against their bound (the search may end sooner)."""
    lo, hi = 1, store.fifo_tail(property_id)
    # Each step leaves at most half of [lo, hi] (the jumps past a window leave less): a plain binary search's
    # bound, the bit length of the range.
    bound, reads = max(1, hi.bit_length()), 0
    found: int | None = None
    while lo <= hi:
        mid = (lo + hi) // 2
        window = store.read_fifo(property_id, after=mid - 1, limit=FIFO_PROBE)
        reads += 1
        progress(reads, max(bound, reads))
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


def plan_replay(target: Target, property_id: str, since: float, progress: Progress = _no_progress) -> ReplayPlan:
    """What ``queue replay --since`` would do, without doing it."""
    store = target.connector_store()
    from_seq = first_seq_since(store, property_id, since, progress)
    delivered = store.get_cursor(property_id).delivered
    count = max(0, delivered - from_seq + 1) if from_seq is not None else 0
    return ReplayPlan(property_id, since, from_seq, delivered, count)


def replay(target: Target, plan: ReplayPlan) -> Cursor:
    """Move the property's delivery cursor back so the next GET_REQUEST delivers from ``plan.from_seq`` again."""
    from pms_connector import fifo

    if plan.from_seq is None:
        raise OperatorError("nothing to replay", EXIT_FAILED)
    return fifo.replay(target.connector_store(), plan.property_id, plan.from_seq)


@dataclass(frozen=True)
class FifoRow:
    """One record of a property's pmslink FIFO as an operator sees it: action and room, never the record
    itself (it holds the guests' personal data)."""

    seq: int
    state: str  # delivered | pending
    action: str
    room: str
    ingested_at: int


def fifo_listing(target: Target, property_id: str, *, after: int | None, limit: int,
                 progress: Progress = _no_progress) -> list[FifoRow]:
    """Up to ``limit`` FIFO records after ``after`` (default: the last ``limit`` delivered and what follows),
    oldest first, read ``PAGE`` sequence numbers a query."""
    store = target.connector_store()
    delivered = store.get_cursor(property_id).delivered
    start = after if after is not None else max(0, delivered - limit)
    end = min(start + limit, store.fifo_tail(property_id))
    rows: list[FifoRow] = []
    position = start
    while position < end:
        step = min(PAGE, end - position)
        records = store.read_fifo(property_id, after=position, limit=step)
        rows += [FifoRow(r.seq, "delivered" if r.seq <= delivered else "pending", str(r.record.get("action", "?")),
                         str(r.record.get("room", "-")), r.ingested_at) for r in records]
        # From the last record read, not the end of the window: a query cut short (1 MB) loses nothing.
        position = records[-1].seq if records else position + step
        progress(min(position, end) - start, end - start)
    return rows


# ------------------------------------------------------------------------------------------ outbox list


@dataclass(frozen=True)
class OutboxRow:
    """One UCM command as an operator sees it: action, address and outcome, never its fields (they hold the
    guest's name)."""

    seq: int
    state: str  # pending | done | parked
    action: str
    address: str
    attempts: int
    last_error: str | None


def _outbox_row(command: OutboxCommand, done: int) -> OutboxRow:
    state = command.status if command.status == "parked" else ("done" if command.seq <= done else "pending")
    return OutboxRow(command.seq, state, command.action, str(command.fields.get("address", "-")),
                     command.attempts, command.last_error)


def outbox_listing(target: Target, property_id: str, limit: int,
                   progress: Progress = _no_progress) -> list[OutboxRow]:
    """The newest ``limit`` commands of the property's outbox, oldest first.

    Up to ``PAGE`` is the store's one newest-first query. Past that, the older ones are those among the
    ``limit - PAGE`` sequence numbers before the newest page, read ``PAGE`` a query, oldest first (fewer
    than ``limit`` where expired commands left gaps)."""
    store = target.outbox_store()
    done, newest = store.listing(property_id, limit=min(limit, PAGE))
    progress(len(newest), limit)
    if limit <= PAGE or len(newest) < PAGE:
        return [_outbox_row(c, done) for c in newest]
    first = newest[0].seq
    position = max(0, first - 1 - (limit - len(newest)))
    older: list[OutboxCommand] = []
    while position < first - 1:
        page = [c for c in store.pending(property_id, after=position, limit=min(PAGE, first - 1 - position))
                if c.seq < first]
        if not page:
            break
        older += page
        position = page[-1].seq
        progress(len(older) + len(newest), limit)
    return [_outbox_row(c, done) for c in [*older, *newest]]


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


def inbound_tail(target: Target, property_id: str, limit: int, progress: Progress = _no_progress) -> list[InboundRow]:
    """The entries among the newest ``limit`` sequence numbers of the property's inbound log, oldest first,
    read ``PAGE`` a query (``progress``: sequence numbers read of ``limit``)."""
    store = target.connector_store()
    newest = store.inbound_tail(property_id)
    start = position = max(0, newest - limit)
    rows: list[InboundRow] = []
    while position < newest:
        step = min(PAGE, newest - position)
        entries = [e for e in store.list_inbound(property_id, after=position, limit=step) if e.seq <= newest]
        rows += [_row(e) for e in entries]
        # From the last entry read: a query cut short (1 MB of requests) loses nothing. A page of expired
        # entries only (filtered out by the store) moves on by the window.
        position = entries[-1].seq if entries else position + step
        progress(min(position, newest) - start, newest - start)
    return rows


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

_PROPERTY_ID = re.compile(PROPERTY_ID_PATTERN)
_STEP_STATES = (True, False, None)


@dataclass(frozen=True)
class CheckStep:
    name: str
    ok: bool | None  # None: skipped
    detail: str
    seconds: float
    exit_code: int = EXIT_OK  # the command's exit code when this step failed


def check_ucm(settings: UcmSettings, *, deadline: float | None = None) -> Iterator[CheckStep]:
    """Probe a site's UCM step by step: DNS, TCP, TLS, then the credentials with a request that names no room.

    Stops at the first failed step. Runs from where it is called: the UCM is on the hotel LAN, reached over
    the VPN from the dispatcher's subnets. ``deadline`` (``time.monotonic()``) caps every network wait, so a
    function answers before its own timeout however slow the UCM is.
    """
    import httpx

    from pms_connector.ucm.client import UcmClient, tls_context

    url = httpx.URL(settings.base_url)
    host = url.host
    port = url.port or (443 if url.scheme == "https" else 80)
    timeout = settings.connect_timeout_seconds
    if deadline is not None:
        timeout = max(0.1, min(timeout, deadline - time.monotonic()))

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
        # A request without an action: it names no room, reads and changes nothing.
        reply = client.probe(timeout_s=None if deadline is None else deadline - time.monotonic())
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


@dataclass(frozen=True)
class UcmCheck:
    """A whole check-ucm run as one document: what the dispatcher answers and ``--json`` prints.

    Either the steps (stopping at the first failure) or, when the check could not start, ``error`` (unknown
    property, no ``ucm`` section, configuration unreadable) or ``problems`` (the configuration is invalid,
    each problem naming its field, as ``property validate`` lists them). Never a secret, the token or guest
    data: the steps say which setting is wrong, not its value.
    """

    property_id: str
    base_url: str | None
    checked_from: str
    steps: list[CheckStep] = field(default_factory=list)
    error: str | None = None
    problems: list[str] = field(default_factory=list)
    error_code: int = EXIT_OK  # the exit code of ``error`` / ``problems``

    @property
    def exit_code(self) -> int:
        """0 when every step passed; else the failed step's (or the error's) exit code (docs/operator.md)."""
        if self.error is not None or self.problems:
            return self.error_code or EXIT_FAILED
        return next((step.exit_code for step in self.steps if step.ok is False), EXIT_OK)

    def to_json(self) -> dict[str, Any]:
        return {"property": self.property_id, "base_url": self.base_url, "checked_from": self.checked_from,
                "steps": [{**asdict(step), "seconds": round(step.seconds, 6)} for step in self.steps],
                "error": self.error, "problems": list(self.problems), "exit_code": self.exit_code}

    @classmethod
    def from_json(cls, document: Any) -> UcmCheck:
        """The check a dispatcher answered; ValueError when the document is not one (only its known fields
        are kept, so nothing else it might hold reaches the terminal)."""
        if not isinstance(document, Mapping) or not isinstance(document.get("property"), str) \
                or not isinstance(document.get("steps"), list) or not isinstance(document.get("exit_code"), int):
            raise ValueError("not a check-ucm report")
        steps = []
        for step in document["steps"]:
            if not isinstance(step, Mapping) or step.get("ok") not in _STEP_STATES:
                raise ValueError("not a check-ucm step")
            steps.append(CheckStep(str(step["name"]), step["ok"], str(step["detail"]), float(step["seconds"]),
                                   int(step["exit_code"])))
        error = document.get("error")
        problems = document.get("problems") or []
        base_url = document.get("base_url")
        return cls(document["property"], str(base_url) if base_url is not None else None,
                   str(document.get("checked_from", "the dispatcher function")), steps,
                   str(error) if error is not None else None, [str(p) for p in problems],
                   int(document["exit_code"]) if error is not None or problems else EXIT_OK)


def function_target() -> Target:
    """The deployment a function runs in, from its settings (the environment template.yaml gives it)."""
    from pms_connector.settings import get_settings

    settings = get_settings()
    return Target(boto3.session.Session(), table_name=settings.table_name,
                  parameter_prefix=settings.config_parameter_prefix, secret_prefix=settings.config_secret_prefix)


def probe_property(property_id: object, *, checked_from: str, seconds_left: float | None = None,
                   target: Target | None = None) -> UcmCheck:
    """check-ucm run where this code runs (the dispatcher function, in the VPC): the property's configuration
    read and validated as ``property validate`` does, then ``check_ucm`` on its UCM settings.

    The configuration is read fresh, not from the functions' config cache, so a credential just fixed is
    the one tested. Never raises for what the property or its UCM do: every outcome is a ``UcmCheck``.
    """
    if not isinstance(property_id, str) or not _PROPERTY_ID.fullmatch(property_id):
        shown = str(property_id)[:64]
        return UcmCheck(shown, None, checked_from, error=f"no property '{shown}' (not a property id)",
                        error_code=EXIT_USAGE)
    deadline = None if seconds_left is None else time.monotonic() + seconds_left
    try:
        validation, config = validate_property(target or function_target(), property_id)
    except OperatorError as exc:  # no such parameter
        return UcmCheck(property_id, None, checked_from, error=str(exc), error_code=exc.exit_code)
    except (ClientError, BotoCoreError) as exc:  # the function's role or an endpoint: the operator's to fix
        return UcmCheck(property_id, None, checked_from, error=f"configuration unreadable from the function: {exc}",
                        error_code=EXIT_FAILED)
    if config is None:
        return UcmCheck(property_id, None, checked_from, problems=validation.problems, error_code=EXIT_USAGE)
    if config.ucm is None:
        return UcmCheck(property_id, None, checked_from, error=f"property '{config.id}' has no ucm section: "
                                                               "nothing to check", error_code=EXIT_USAGE)
    return UcmCheck(property_id, config.ucm.base_url, checked_from, list(check_ucm(config.ucm, deadline=deadline)))


def dispatcher_function(target: Target) -> str:
    """The name of the stack's dispatcher function: its ``DispatcherFunctionName`` output if the stack has one,
    else the physical id of its ``DispatcherFunction`` resource (one DescribeStackResource)."""
    if not target.stack:
        raise OperatorError("check-ucm runs in the stack's VPC only with --stack (or --from-here)", EXIT_USAGE)
    return _stack_resource(target, "DispatcherFunctionName", DISPATCHER)


def _stack_resource(target: Target, output: str, logical_id: str, hint: str = "") -> str:
    """The physical name of one of the stack's resources: its output when the stack has it, else the
    resource's physical id (one DescribeStackResource: stacks deployed before the output existed)."""
    assert target.stack
    if target.outputs.get(output):
        return target.outputs[output]
    try:
        detail = target.cloudformation.describe_stack_resource(
            StackName=target.stack, LogicalResourceId=logical_id)["StackResourceDetail"]
    except ClientError as exc:
        # DescribeStackResource answers ValidationError for a logical id the stack does not have.
        if exc.response.get("Error", {}).get("Code") == "ValidationError":
            raise OperatorError(f"stack '{target.stack}' has no {logical_id} resource: is it a pms-connector "
                                f"stack?{hint}", EXIT_USAGE) from None
        raise
    name = detail.get("PhysicalResourceId")
    if not name:
        raise OperatorError(f"stack '{target.stack}': {logical_id} is not created "
                            f"({detail.get('ResourceStatus')})", EXIT_USAGE)
    return str(name)


def remote_check_ucm(target: Target, property_id: str) -> UcmCheck:
    """check-ucm run by the stack's dispatcher function, inside the connector's VPC: one synchronous
    ``lambda:InvokeFunction`` with ``{"check_ucm": property_id}``.

    OperatorError: the function does not exist (exit 2), may not be invoked (1), failed (its ``FunctionError``:
    a timeout, a crash; 1), or answered something that is not a check (a dispatcher deployed before it could
    check, 1). Its answer's own outcome is in the ``UcmCheck``.
    """
    name = dispatcher_function(target)
    try:
        answer = target.lambda_client.invoke(FunctionName=name, InvocationType="RequestResponse",
                                             Payload=json.dumps({"check_ucm": property_id}).encode())
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code == "ResourceNotFoundException":
            raise OperatorError(f"dispatcher function '{name}' not found in region "
                                f"{target.session.region_name or '(none)'}", EXIT_USAGE) from None
        if code in ("AccessDeniedException", "AccessDenied"):
            raise OperatorError(f"not allowed to invoke the dispatcher function '{name}': check-ucm needs "
                                "lambda:InvokeFunction on it (or --from-here)", EXIT_FAILED) from None
        raise
    body = answer["Payload"].read()
    if answer.get("FunctionError"):
        failure = _json_object(body.decode("utf-8", errors="replace")) or {}
        kind = str(failure.get("errorType") or answer["FunctionError"])
        message = " ".join(str(failure.get("errorMessage", "")).split())[:200]
        raise OperatorError(f"the dispatcher function '{name}' failed ({kind}: {message or 'no message'}); its "
                            f"log group /aws/lambda/{name} tells more", EXIT_FAILED)
    try:
        return UcmCheck.from_json(json.loads(body))
    except (ValueError, TypeError, KeyError):
        raise OperatorError(f"the dispatcher function '{name}' did not answer with a check (deployed before it "
                            "could check a UCM? deploy the stack again, or use --from-here)", EXIT_FAILED) from None


# ------------------------------------------------------------------------------------------------ retire

# Every partition a property's items live in, by what follows "{pid}#" in its pk, and where the code writes
# it. A deleted property stack leaves them all in the table; the ones marked "no TTL" never go by themselves.
# tests/integration/test_retire.py scans the package for keys like f"{pid}#fifo" and fails on one not listed here.
PROPERTY_PARTITIONS: dict[str, str] = {
    "fifo": "store.py, state.py, supervisor.py: pmslink's FIFO records and the delivery archive (TTL)",
    "inbound": "store.py, supervisor.py: the inbound log, what pmslink sent (TTL)",
    "dedupe": "store.py: each inbound request's first answer (TTL)",
    "request": "state.py: an ingest request's marker (TTL: a day)",
    "booking": "state.py: a booking's state and its last BOOKING record (TTL only once checked out or cancelled)",
    "room": "state.py: a room's state and its occupants' display names (no TTL)",
    "wakeup": "state.py, supervisor.py: a wake-up's supervision (TTL)",
    "outbox": "state.py, outbox.py: UCM commands (TTL)",
    "charges": "store.py: the charges posted on a room, one partition a room: {pid}#charges#{room} (TTL)",
    "meta": "store.py (sk fifo: delivery cursor), outbox.py (outbox: done cursor, lease, hold), polling.py "
            "(poll: forward cursor, lease) (no TTL)",
}
CHARGES = "charges"
# The outbox's shared partitions (outbox.py) hold one due marker (sk = pid) and parked markers (sk = pid#seq)
# a property: OutboxStore.retire drops them.
BATCH_WRITE = 25  # DynamoDB's limit of requests in one BatchWriteItem (moto does not enforce it: we must)
BATCH_ATTEMPTS = 8  # tries of the items DynamoDB leaves unprocessed (throttling), with exponential backoff
BACKOFF_SECONDS, BACKOFF_CAP_SECONDS = 0.05, 5.0
SCHEDULE_GROUP = "WakeupScheduleGroup"  # its logical id in template.yaml
CHARGE_ACTIONS = ("POST", "CALL")  # the inbound requests that post a charge (httppms.py)
ItemKey = dict[str, Any]


def property_configured(target: Target, property_id: str) -> bool:
    """Whether the property's config is still in Parameter Store (its stack not deleted yet): one GetParameter."""
    if not _PROPERTY_ID.fullmatch(property_id):
        raise OperatorError(f"'{property_id[:64]}' is not a property id", EXIT_USAGE)
    try:
        target.ssm.get_parameter(Name=target.parameter_name(property_id))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ParameterNotFound":
            return False
        raise
    return True


def schedule_group(target: Target, explicit: str | None = None) -> str | None:
    """The stack's wake-up schedule group: ``explicit`` if given, else its ``WakeupScheduleGroupName`` output,
    else the physical id of its ``WakeupScheduleGroup`` resource (one DescribeStackResource). None without a
    stack or a name: the schedules are then not looked for."""
    if explicit or not target.stack:
        return explicit or None
    return _stack_resource(target, "WakeupScheduleGroupName", SCHEDULE_GROUP, hint=" (or --schedule-group NAME)")


@dataclass(frozen=True)
class RetirePlan:
    """What ``property retire`` finds of a property: counts for the operator, keys for the deletes.

    Nothing in it is guest data: counts, room names (in the charges partitions' names) and schedule names
    (hashes). The keys (booking uids, request hashes) and sequence numbers are kept for the deletes, never
    printed (``to_json`` leaves them out)."""

    property_id: str
    live: bool  # its config is still in Parameter Store
    items: dict[str, int]  # by partition, after "{pid}#" ("charges#101": one a room)
    due_marker: bool
    parked_markers: int
    schedule_group: str | None  # None: schedules not looked for
    schedules: int
    undelivered: int  # FIFO records pmslink has not received (after the delivery cursor, unexpired)
    in_flight: int  # of those, in confirm delivery's open batch (answered, not confirmed)
    delivered_up_to: int
    keys: list[ItemKey] = field(default_factory=list, repr=False, compare=False)
    schedule_names: list[str] = field(default_factory=list, repr=False, compare=False)
    undelivered_seqs: list[int] = field(default_factory=list, repr=False, compare=False)

    @property
    def nothing_to_do(self) -> bool:
        return not self.keys and not self.due_marker and not self.parked_markers and not self.schedule_names

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for private in ("keys", "schedule_names", "undelivered_seqs"):
            out.pop(private)
        return out


@dataclass(frozen=True)
class RetireResult:
    """What ``property retire`` did (``--json`` prints it as it is)."""

    property_id: str
    live: bool
    nothing_to_do: bool
    deleted: dict[str, int]  # items by partition, as in ``RetirePlan.items``
    due_marker: bool
    parked_markers: int
    schedule_group: str | None
    schedules_deleted: int
    undelivered: int
    exported: int
    export_file: str | None
    discarded: int  # undelivered records deleted without an export (--discard-undelivered)


def _partition(target: Target, pk: str, projection: str = "pk, sk",
               names: Mapping[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """Every item of one partition, ``projection`` only, paginated (strongly consistent)."""
    kwargs: dict[str, Any] = {"TableName": target.require_table(), "KeyConditionExpression": "pk = :pk",
                              "ExpressionAttributeValues": {":pk": {"S": pk}}, "ProjectionExpression": projection,
                              "ConsistentRead": True}
    if names:
        kwargs["ExpressionAttributeNames"] = dict(names)
    while True:
        page = target.dynamodb.query(**kwargs)
        yield from page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _key(item: Mapping[str, Any]) -> ItemKey:
    return {"pk": item["pk"], "sk": item["sk"]}


def _charge_room(item: Mapping[str, Any]) -> str | None:
    """The room of an inbound entry that posted a charge (POST, a priced CALL), from its request."""
    if item.get("action", {}).get("S") not in CHARGE_ACTIONS or "request" not in item:
        return None
    request = _json_object(item["request"]["S"]) or {}
    room = request.get("room")
    return str(room) if room not in (None, "") else None


def _marker_counts(target: Target, property_id: str) -> tuple[bool, int]:
    """(whether the property has a due marker, how many parked markers): one GetItem, one counting Query."""
    table = target.require_table()
    due = target.dynamodb.get_item(TableName=table, Key={"pk": {"S": DUE_PK}, "sk": {"S": property_id}},
                                   ProjectionExpression="pk", ConsistentRead=True).get("Item")
    kwargs: dict[str, Any] = {
        "TableName": table, "KeyConditionExpression": "pk = :pk AND begins_with(sk, :pid)", "Select": "COUNT",
        "ExpressionAttributeValues": {":pk": {"S": PARKED_PK}, ":pid": {"S": f"{property_id}#"}}}
    parked = 0
    while True:
        page = target.dynamodb.query(**kwargs)
        parked += page.get("Count", 0)
        if "LastEvaluatedKey" not in page:
            return bool(due), parked
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _scheduler(target: Target) -> Any:
    return target.session.client("scheduler", config=CLIENT_CONFIG)


def property_schedules(target: Target, group: str, property_id: str, client: Any = None) -> list[str]:
    """The names of the property's wake-up schedules in ``group`` (wakeups.schedule_name), listed by their
    name prefix, paginated. Names are checked whole, so "demo" never takes "demo-annex"'s; a property id past
    the 30 characters the names keep is told apart by the schedule's own input (one GetSchedule each)."""
    client = client or _scheduler(target)
    prefix = schedule_name(property_id, "", "result").rsplit("-", 2)[0]
    pattern = re.compile(re.escape(prefix) + r"-[0-9a-f]{20}-(risk|result)")
    truncated = prefix != property_id
    names: list[str] = []
    try:
        for page in client.get_paginator("list_schedules").paginate(GroupName=group, NamePrefix=f"{prefix}-"):
            for schedule in page.get("Schedules", []):
                name = str(schedule.get("Name", ""))
                if not pattern.fullmatch(name):
                    continue
                if truncated:
                    got = client.get_schedule(Name=name, GroupName=group)
                    if (_json_object(got.get("Target", {}).get("Input", "")) or {}).get("property") != property_id:
                        continue
                names.append(name)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise OperatorError(f"schedule group '{group}' not found in region "
                                f"{target.session.region_name or '(none)'}", EXIT_USAGE) from None
        raise
    return sorted(names)


def plan_retirement(target: Target, property_id: str, group: str | None,
                    progress: Progress = _no_progress) -> RetirePlan:
    """Find everything the property left: the keys of its items in every partition (keys only, paginated
    queries), its FIFO records pmslink has not received, its due and parked markers and its wake-up
    schedules. Reads only. ``progress`` counts the partitions read (the total grows with the rooms found)."""
    live = property_configured(target, property_id)  # and a property id, or OperatorError
    store = target.connector_store()
    cursor = store.get_cursor(property_id)
    now = time.time()
    counts: dict[str, int] = {}
    keys: list[ItemKey] = []
    rooms: set[str] = set()
    undelivered: list[int] = []
    fixed = [p for p in PROPERTY_PARTITIONS if p != CHARGES]
    total = len(fixed)

    for index, partition in enumerate(fixed, start=1):
        pk = f"{property_id}#{partition}"
        found: list[ItemKey] = []
        if partition == "fifo":
            for item in _partition(target, pk, "pk, sk, expires_at"):
                found.append(_key(item))
                seq = int(item["sk"]["S"])
                if seq > cursor.delivered and int(item.get("expires_at", {}).get("N", "0")) > now:
                    undelivered.append(seq)
        elif partition == "inbound":  # the rooms charges were posted on: the charges' partitions
            for item in _partition(target, pk, "pk, sk, #action, #request",
                                   {"#action": "action", "#request": "request"}):
                found.append(_key(item))
                room = _charge_room(item)
                if room is not None:
                    rooms.add(room)
        else:
            found = [_key(item) for item in _partition(target, pk)]
            if partition == "room":
                rooms.update(key["sk"]["S"] for key in found)
        counts[partition] = len(found)
        keys += found
        progress(index, total)

    # The charges, one partition a room: the rooms of the property's room items and of the charges its
    # inbound log still names. (A charge on a room in neither, its request expired from the log, is left
    # to expire with its TTL, charge_retention_days.)
    done = itertools.count(len(fixed) + 1)
    grand_total = len(fixed) + len(rooms)

    def charges(room: str) -> list[ItemKey]:
        found = [_key(item) for item in _partition(target, f"{property_id}#{CHARGES}#{room}")]
        progress(next(done), grand_total)
        return found

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for room, found in zip(sorted(rooms), pool.map(charges, sorted(rooms)), strict=True):
            if found:
                counts[f"{CHARGES}#{room}"] = len(found)
                keys += found

    due, parked = _marker_counts(target, property_id)
    names = property_schedules(target, group, property_id) if group else []
    in_flight = 0
    if cursor.batch_id is not None and cursor.batch_last is not None:
        in_flight = sum(1 for seq in undelivered if seq <= cursor.batch_last)
    return RetirePlan(property_id, live, counts, due, parked, group, len(names), len(undelivered), in_flight,
                      cursor.delivered, keys, names, sorted(undelivered))


def export_undelivered(target: Target, plan: RetirePlan, path: str) -> int:
    """Write the plan's undelivered FIFO records to ``path`` as JSON Lines, ``{"seq": N, "record": {...}}`` with
    the record as the PMS sent it, oldest first; returns how many. The file is created (never overwritten)
    with mode 0600: it holds guest data. A failed export leaves no file."""
    if not plan.undelivered_seqs:
        return 0
    wanted = set(plan.undelivered_seqs)
    last = plan.undelivered_seqs[-1]
    store = target.connector_store()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise OperatorError(f"{path} exists: not overwritten (choose another file)", EXIT_USAGE) from None
    except OSError as exc:
        raise OperatorError(f"cannot create {path}: {exc.strerror or exc}", EXIT_USAGE) from None
    written = 0
    try:
        os.fchmod(fd, 0o600)  # exactly 0600, whatever the umask
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            position = plan.delivered_up_to
            while position < last:
                step = min(PAGE, last - position)
                records = store.read_fifo(plan.property_id, after=position, limit=step)
                for record in records:
                    if record.seq in wanted:
                        out.write(json.dumps({"seq": record.seq, "record": record.record}, ensure_ascii=False,
                                             separators=(",", ":")) + "\n")
                        written += 1
                # From the last record read: a page cut short (1 MB) loses nothing.
                position = records[-1].seq if records else position + step
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return written


def delete_items(client: Any, table: str, keys: list[ItemKey], progress: Progress = _no_progress,
                 sleep: Callable[[float], None] = time.sleep) -> int:
    """Delete ``keys`` with BatchWriteItem, ``BATCH_WRITE`` a call, retrying what DynamoDB leaves unprocessed
    with exponential backoff (and jitter); returns how many were deleted. OperatorError when some are still
    unprocessed after ``BATCH_ATTEMPTS`` tries (run the command again: deleting is idempotent)."""
    done, total = 0, len(keys)
    for start in range(0, total, BATCH_WRITE):
        pending: list[Any] = [{"DeleteRequest": {"Key": key}} for key in keys[start:start + BATCH_WRITE]]
        for attempt in range(BATCH_ATTEMPTS):
            answer = client.batch_write_item(RequestItems={table: pending})
            left = list((answer.get("UnprocessedItems") or {}).get(table, []))
            done += len(pending) - len(left)
            progress(done, total)
            if not left:
                break
            pending = left
            sleep(min(BACKOFF_CAP_SECONDS, BACKOFF_SECONDS * 2**attempt) * random.uniform(0.5, 1.0))  # noqa: S311
        else:
            raise OperatorError(f"the table left {total - done} delete(s) unprocessed after {BATCH_ATTEMPTS} tries "
                                "(throttled): run the command again", EXIT_FAILED)
    return done


def retire_property(target: Target, plan: RetirePlan, *, exported: int = 0, export_file: str | None = None,
                    progress: Progress = _no_progress) -> RetireResult:
    """Delete what ``plan`` found: the wake-up schedules first (so none fires on a half-deleted property),
    then every item (BatchWriteItem), then the due and parked markers (``OutboxStore.retire``). Idempotent:
    what is gone already is passed over. ``progress`` counts the items deleted."""
    deleted_schedules = 0
    if plan.schedule_names:
        assert plan.schedule_group is not None
        client = _scheduler(target)
        for name in plan.schedule_names:
            try:
                client.delete_schedule(Name=name, GroupName=plan.schedule_group)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                    raise
                continue  # fired and deleted by the Scheduler meanwhile
            deleted_schedules += 1
    delete_items(target.dynamodb, target.require_table(), plan.keys, progress)
    due, parked = target.outbox_store().retire(plan.property_id)
    return RetireResult(plan.property_id, plan.live, plan.nothing_to_do, dict(plan.items), due, parked,
                        plan.schedule_group, deleted_schedules, plan.undelivered, exported, export_file,
                        0 if export_file else plan.undelivered)
