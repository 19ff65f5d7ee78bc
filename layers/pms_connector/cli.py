"""The `pms-connector` command: local runner, config tools, MD5 tokens and operating a deployed stack.

    pms-connector local --properties FILE [--port 3000]      run everything locally (moto, API)
    pms-connector config validate FILE                       check a properties file
    pms-connector config push FILE [--environment dev]       publish it to SSM + Secrets Manager
    pms-connector token --properties FILE --property ID      a signed GET_REQUEST body for now
    pms-connector property list|show|validate|check-ucm      the properties of a deployed stack
    pms-connector queue depth|replay                         their pmslink queues (FIFO)
    pms-connector outbox list|retry|park ID                  a property's UCM commands
    pms-connector inbound tail ID [--follow]                 what pmslink sent (action, room, time)
    pms-connector fifo status|list|replay --property ID      a property's queue, by sequence number

The operator commands find the stack's resources from its CloudFormation Outputs (--stack, or
$PMS_CONNECTOR_STACK; --profile, --region), or take --table/$TABLE_NAME and --environment; they use moto
when AWS_ENDPOINT_URL points at the local runner's moto server. Exit codes: docs/operator.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any, TextIO

from pms_connector.errors import ConfigError

if TYPE_CHECKING:
    from pms_connector.operator import InboundRow, OutboxStatus, Target

EXIT_USAGE = 2
PROGRESS_THRESHOLD = 10  # fewer properties than this are read too quickly to need a progress counter


def main(argv: Sequence[str] | None = None) -> int:
    from botocore.exceptions import BotoCoreError, ClientError, NoRegionError, ProfileNotFound

    from pms_connector.errors import ConnectorError
    from pms_connector.operator import OperatorError

    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors (2) and --help (0) as a return code, for scripts and tests
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        with _operator_logs(getattr(args, "operator", False)):
            result: int = args.run(args)
    except ConfigError as exc:
        print(f"error: invalid configuration\n{exc}", file=sys.stderr)
        return EXIT_USAGE
    except OperatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ConnectorError as exc:  # storage busy or unreachable, the queue moved meanwhile
        cause = exc.__cause__
        detail = f" ({type(cause).__name__}: {cause})" if cause is not None else ""
        print(f"error: {exc.description}{detail}", file=sys.stderr)
        return 1
    except (ProfileNotFound, NoRegionError) as exc:
        print(f"error: {exc} (--profile, --region)", file=sys.stderr)
        return EXIT_USAGE
    except (ClientError, BotoCoreError) as exc:  # access denied, no credentials, endpoint unreachable...
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return result


@contextlib.contextmanager
def _operator_logs(active: bool) -> Iterator[None]:
    """The package's JSON logs go to stderr at WARNING while an operator command runs: stdout is its output."""
    if not active:
        yield
        return
    from pms_connector.observability import logger

    handler = logger.registered_handler
    level = logger.log_level
    stream = handler.setStream(sys.stderr) if isinstance(handler, logging.StreamHandler) else None
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
        if isinstance(handler, logging.StreamHandler) and stream is not None:
            handler.setStream(stream)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pms-connector", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    local = commands.add_parser("local", help="run the connector locally (moto server, API on localhost)")
    local.add_argument("--properties", required=True, help="JSON or YAML list of property configs")
    local.add_argument("--port", type=int, default=3000)
    local.add_argument("--host", default="127.0.0.1")
    local.add_argument("--template", default=None, help="template.yaml (default: found from the current folder)")
    local.set_defaults(run=_local)

    config = commands.add_parser("config", help="validate or publish property configurations")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    validate = config_commands.add_parser("validate", help="validate a properties file")
    validate.add_argument("file")
    validate.set_defaults(run=_config_validate)
    push = config_commands.add_parser("push", help="write configs to SSM Parameter Store and Secrets Manager")
    push.add_argument("file")
    push.add_argument("--environment", default=os.environ.get("PMS_CONNECTOR_ENVIRONMENT", "dev"))
    push.set_defaults(run=_config_push)

    token = commands.add_parser("token", help="print a GET_REQUEST body signed for the current time")
    token.add_argument("--properties", required=True)
    token.add_argument("--property", required=True, dest="property_id")
    token.add_argument("--action", default="GET_REQUEST")
    token.set_defaults(run=_token)

    # Where the deployment is: every operator command takes these.
    stack = argparse.ArgumentParser(add_help=False)
    where = stack.add_argument_group("deployment")
    where.add_argument("--stack", default=None, help="CloudFormation stack name (default: $PMS_CONNECTOR_STACK)")
    where.add_argument("--profile", default=None, help="AWS profile (default: the environment's)")
    where.add_argument("--region", default=None, help="AWS region (default: the environment's)")
    where.add_argument("--table", default=None, help="without --stack: table name (default: $TABLE_NAME)")
    where.add_argument("--environment", default=None,
                       help="without --stack: config prefixes of this environment (default: "
                            "$PMS_CONNECTOR_ENVIRONMENT or dev)")
    where.add_argument("--json", action="store_true", help="JSON output instead of a table, where there is one")
    stack.set_defaults(operator=True)

    prop = commands.add_parser("property", help="the properties of a deployed stack")
    prop_commands = prop.add_subparsers(dest="property_command", required=True)
    listing = prop_commands.add_parser("list", parents=[stack], help="every property with its queue and outbox")
    listing.set_defaults(run=_property_list)
    show = prop_commands.add_parser("show", parents=[stack], help="one property's config (no secrets) and status")
    show.add_argument("property_id", metavar="ID")
    show.set_defaults(run=_property_show)
    check = prop_commands.add_parser("validate", parents=[stack], help="validate configs with their secrets")
    check.add_argument("property_id", metavar="ID", nargs="?")
    check.add_argument("--all", action="store_true", help="every property under the stack's prefix")
    check.set_defaults(run=_property_validate)
    ucm = prop_commands.add_parser("check-ucm", parents=[stack],
                                   help="test reachability, TLS and credentials of the property's UCM")
    ucm.add_argument("property_id", metavar="ID")
    ucm.set_defaults(run=_property_check_ucm)

    queue = commands.add_parser("queue", help="the properties' pmslink queues (FIFO)")
    queue_commands = queue.add_subparsers(dest="queue_command", required=True)
    depth = queue_commands.add_parser("depth", parents=[stack], help="records waiting for GET_REQUEST")
    depth.add_argument("property_id", metavar="ID", nargs="?", help="one property (default: all)")
    depth.set_defaults(run=_queue_depth)
    again = queue_commands.add_parser("replay", parents=[stack], help="deliver records since a time again")
    again.add_argument("property_id", metavar="ID")
    again.add_argument("--since", required=True, help="ISO 8601 (UTC without an offset) or relative: 30m, 2h, 1d")
    again.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    again.set_defaults(run=_queue_replay)

    inbound = commands.add_parser("inbound", help="what pmslink sent (action, room, time; no content)")
    inbound_commands = inbound.add_subparsers(dest="inbound_command", required=True)
    tail = inbound_commands.add_parser("tail", parents=[stack], help="the newest entries of the inbound log")
    tail.add_argument("property_id", metavar="ID")
    tail.add_argument("--limit", type=int, default=20, help="entries to show first (1-1000, default 20)")
    tail.add_argument("--follow", action="store_true", help="then poll every --interval seconds until Ctrl-C")
    tail.add_argument("--interval", type=float, default=2.0, help=argparse.SUPPRESS)
    tail.set_defaults(run=_inbound_tail)

    fifo = commands.add_parser("fifo", parents=[stack], help="inspect or replay a property's pmslink queue")
    fifo.add_argument("fifo_command", choices=["status", "list", "replay"])
    fifo.add_argument("--property", required=True, dest="property_id")
    fifo.add_argument("--from-seq", type=int, default=None, help="replay: first sequence number to deliver again")
    fifo.add_argument("--after", type=int, default=None, help="list: records after this sequence number")
    fifo.add_argument("--limit", type=int, default=20)
    fifo.set_defaults(run=_fifo)

    outbox = commands.add_parser("outbox", parents=[stack],
                                 help="inspect a property's UCM outbox, retry or park commands")
    outbox.add_argument("outbox_command", choices=["list", "retry", "park"])
    outbox.add_argument("property", metavar="ID", nargs="?", help="the property (or --property ID)")
    outbox.add_argument("--property", dest="property_option", default=None, help=argparse.SUPPRESS)
    outbox.add_argument("--seq", type=int, default=None, help="retry/park: the command's sequence number")
    outbox.add_argument("--reason", default="", help="park: why (kept with the command)")
    outbox.add_argument("--limit", type=int, default=30)
    outbox.set_defaults(run=_outbox)
    return parser


# -------------------------------------------------------------------------------------------- local tools


def _local(args: argparse.Namespace) -> int:
    from pms_connector.local.runner import serve

    try:
        serve(args.properties, port=args.port, host=args.host, template_path=args.template)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _config_validate(args: argparse.Namespace) -> int:
    from pms_connector.config import load_properties_file

    properties = load_properties_file(args.file)
    for prop in properties.values():
        print(f"ok  {prop.id}: {prop.name} ({prop.timezone}), httppms auth {prop.httppms.auth}, "
              f"delivery {prop.httppms.delivery}")
    print(f"{len(properties)} propert{'y' if len(properties) == 1 else 'ies'} valid")
    return 0


def _config_push(args: argparse.Namespace) -> int:
    from pms_connector.config import load_properties_file
    from pms_connector.local.provision import push_properties

    properties = load_properties_file(args.file)
    started = time.monotonic()
    push_properties(
        properties,
        parameter_prefix=f"/pms-connector/{args.environment}/properties",
        secret_prefix=f"pms-connector/{args.environment}/properties",
        progress=print,
    )
    print(f"{len(properties)} property config(s) pushed in {time.monotonic() - started:.1f} s")
    return 0


def _token(args: argparse.Namespace) -> int:
    from pms_connector.auth import sign_request
    from pms_connector.config import load_properties_file

    prop = load_properties_file(args.properties).get(args.property_id)
    if prop is None:
        print(f"error: no property '{args.property_id}' in {args.properties}", file=sys.stderr)
        return 2
    body, authorization = sign_request(prop, {"action": args.action})
    if authorization:
        print(f"# basic auth: send this body with the header 'Authorization: {authorization}'", file=sys.stderr)
    print(json.dumps(body))
    return 0


# ------------------------------------------------------------------------------------ operator commands


def _target(args: argparse.Namespace) -> Target:
    from pms_connector.operator import OperatorError, resolve_target

    if args.stack and args.table:
        raise OperatorError("give --stack or --table, not both", EXIT_USAGE)
    # An explicit --table wins over $PMS_CONNECTOR_STACK; $TABLE_NAME is only a fallback without a stack.
    stack = args.stack or (None if args.table else os.environ.get("PMS_CONNECTOR_STACK") or None)
    table = args.table or (None if stack else os.environ.get("TABLE_NAME") or None)
    environment = args.environment or os.environ.get("PMS_CONNECTOR_ENVIRONMENT") or "dev"
    return resolve_target(stack=stack, profile=args.profile, region=args.region, table=table,
                          environment=environment)


class _Progress:
    """A ``\\r`` counter on stderr while many items are read; nothing when stderr is not a terminal."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        if total < PROGRESS_THRESHOLD or not self.stream.isatty():
            return
        self.stream.write(f"\r{self.label} {done}/{total}")
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *_: object) -> None:
        self.clear()


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Plain aligned columns; columns holding only numbers are right-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    numeric = [bool(cells) and all(row[i].lstrip("-").isdigit() for row in cells) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if right else v.ljust(w) for v, w, right in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), *(line(row) for row in cells)])


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _moment(epoch: float | None, zone: tzinfo = UTC) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, zone).strftime("%Y-%m-%d %H:%M:%S")


def _outbox_state(status: OutboxStatus, now: float) -> str:
    if status.pending_since is None:
        return "idle"
    return f"pending {_age(now - status.pending_since)}"


def _json_out(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _printed_without_table(args: argparse.Namespace, target: Any, items: Sequence[Any]) -> bool:
    """--json prints the items as they are; no items says so on stderr: either way no table follows."""
    if args.json:
        _json_out([asdict(item) for item in items])
        return True
    if not items:
        print(f"no properties under {target.parameter_prefix}", file=sys.stderr)
        return True
    return False


def _property_list(args: argparse.Namespace) -> int:
    from pms_connector.operator import property_summaries

    target = _target(args)
    with _Progress("reading queues") as progress:
        summaries = property_summaries(target, progress)
    if _printed_without_table(args, target, summaries):
        return 0
    now = time.time()
    rows = [[s.property_id, s.name if s.readable else "(parameter is not a JSON object)", s.timezone,
             s.auth or "-", s.delivery if s.readable else "-", "yes" if s.ucm else "no",
             "yes" if s.polling else "no", s.queue.pending, _outbox_state(s.outbox, now), s.outbox.parked]
            for s in summaries]
    print(_table(["ID", "NAME", "TIMEZONE", "AUTH", "DELIVERY", "UCM", "POLLING", "QUEUE", "OUTBOX", "PARKED"],
                 rows))
    waiting = sum(s.queue.pending for s in summaries)
    busy = sum(1 for s in summaries if s.outbox.pending_since is not None)
    parked = sum(s.outbox.parked for s in summaries)
    print(f"{len(summaries)} propert{'y' if len(summaries) == 1 else 'ies'}: {waiting} record(s) waiting for "
          f"pmslink, {busy} outbox(es) with pending UCM commands, {parked} parked command(s)")
    return 0


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict) and value and prefix.count(".") < 1:
        for key, inner in value.items():
            yield from _flatten(inner, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, dict) and not value and "." not in prefix:
        return  # a section left empty by the redaction (ingest: its key is a secret)
    else:
        yield prefix, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _property_show(args: argparse.Namespace) -> int:
    from pms_connector.operator import property_detail

    target = _target(args)
    detail = property_detail(target, args.property_id)
    if args.json:
        _json_out(asdict(detail))
        return 0
    now = time.time()
    queue, outbox = detail.queue, detail.outbox
    print(f"{detail.property_id}: {detail.document.get('name', '')}")
    print(f"config ({target.parameter_name(detail.property_id)}):")
    for key, value in _flatten(detail.document):
        print(f"  {key}: {value}")
    print(f"secrets ({target.secret_name(detail.property_id)}):")
    for key, state in detail.secrets.items():
        print(f"  {key}: {state}")
    last = f", last delivery {_age(now - queue.last_delivery_at)} ago" if queue.last_delivery_at else ""
    batch = f", open batch {queue.open_batch}" if queue.open_batch else ""
    print(f"queue: {queue.pending} pending (newest seq {queue.newest_seq}, delivered up to "
          f"{queue.delivered_up_to}{last}{batch})")
    print(f"outbox: {_outbox_state(outbox, now)}, {outbox.parked} parked")
    if detail.hold is not None:
        reason = detail.hold.reason or "no reason recorded"
        if detail.hold.until > now:
            print(f"held until {_moment(detail.hold.until)} UTC (in {_age(detail.hold.until - now)}): {reason}")
        else:
            print(f"held: {reason} (the next command tests the site again)")
    return 0


def _property_validate(args: argparse.Namespace) -> int:
    from pms_connector.operator import OperatorError, validate_properties

    if bool(args.property_id) == bool(args.all):
        raise OperatorError("property validate needs a property ID or --all", EXIT_USAGE)
    target = _target(args)
    with _Progress("validating") as progress:
        results = validate_properties(target, None if args.all else [args.property_id], progress)
    if args.json:
        _json_out([asdict(r) for r in results])
    else:
        for result in results:
            print(f"{'ok' if not result.problems else 'INVALID':<8} {result.property_id}")
            for problem in result.problems:
                print(f"         {problem}")
        invalid = sum(1 for r in results if r.problems)
        print(f"{len(results) - invalid} valid, {invalid} invalid")
    if not results:
        print(f"no properties under {target.parameter_prefix}", file=sys.stderr)
    return EXIT_USAGE if any(r.problems for r in results) else 0


def _property_check_ucm(args: argparse.Namespace) -> int:
    from pms_connector.operator import OperatorError, check_ucm, load_property

    config = load_property(_target(args), args.property_id)
    if config.ucm is None:
        raise OperatorError(f"property '{config.id}' has no ucm section: nothing to check", EXIT_USAGE)
    print(f"{config.id}: UCM {config.ucm.base_url}, checked from this machine")
    failed = 0
    for step in check_ucm(config.ucm):
        state = {True: "ok", False: "FAIL", None: "skip"}[step.ok]
        timing = f"{step.seconds * 1000:6.0f} ms" if step.seconds else " " * 9
        print(f"  {step.name:<6} {state:<4} {timing}  {step.detail}", flush=True)
        if step.ok is False:
            failed = step.exit_code
    print("all checks passed" if not failed else f"check failed (exit {failed})")
    return failed


def _queue_depth(args: argparse.Namespace) -> int:
    from pms_connector.operator import property_documents, queue_statuses

    target = _target(args)
    ids = [args.property_id] if args.property_id else list(property_documents(target))
    with _Progress("reading queues") as progress:
        statuses = queue_statuses(target, ids, progress)
    if _printed_without_table(args, target, statuses):
        return 0
    now = time.time()
    rows = [[s.property_id, s.newest_seq, s.delivered_up_to, s.pending,
             f"{_age(now - s.last_delivery_at)} ago" if s.last_delivery_at else "never", s.open_batch or "-"]
            for s in statuses]
    print(_table(["PROPERTY", "NEWEST", "DELIVERED", "PENDING", "LAST DELIVERY", "OPEN BATCH"], rows))
    if len(statuses) > 1:
        print(f"{sum(s.pending for s in statuses)} record(s) waiting for pmslink")
    return 0


def _queue_replay(args: argparse.Namespace) -> int:
    from pms_connector.operator import OperatorError, parse_since, plan_replay, property_document, replay

    since = parse_since(args.since, time.time())
    target = _target(args)
    property_document(target, args.property_id)  # an unknown property is a usage error, not an empty queue
    plan = plan_replay(target, args.property_id, since)
    when = _moment(since) + " UTC"
    if plan.from_seq is None:
        print(f"{plan.property_id}: no record written since {when}: nothing to deliver again")
        return 0
    if plan.count == 0:
        print(f"{plan.property_id}: the records since {when} (from seq {plan.from_seq}) are not delivered yet: "
              "nothing to deliver again")
        return 0
    summary = (f"{plan.property_id}: {plan.count} record(s) written since {when} (seq {plan.from_seq}.."
               f"{plan.delivered_up_to}) will be delivered again")
    if not args.yes:
        if not sys.stdin.isatty():
            raise OperatorError("queue replay asks for confirmation: pass --yes when not on a terminal", EXIT_USAGE)
        answer = input(f"{summary}. Go on? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("not replayed", file=sys.stderr)
            return 1
    replay(target, plan)
    print(f"{summary} by the next GET_REQUEST")
    return 0


def _inbound_tail(args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from pms_connector.operator import OperatorError, follow_inbound, inbound_tail, property_document

    if not 1 <= args.limit <= 1000:
        raise OperatorError("--limit must be 1..1000", EXIT_USAGE)
    target = _target(args)
    document = property_document(target, args.property_id)
    try:
        zone: tzinfo = ZoneInfo(str(document.get("timezone", "UTC")))
    except (ZoneInfoNotFoundError, ValueError):
        zone = UTC
    rows = inbound_tail(target, args.property_id, args.limit)
    if args.json:
        for row in rows:
            print(json.dumps(asdict(row)), flush=True)
    else:
        print(_inbound_line("SEQ", f"RECEIVED ({zone})", "ACTION", "ROOM", "BUS"))
        for row in rows:
            print(_inbound_row(row, zone))
    if not args.follow:
        return 0
    sys.stdout.flush()
    after = rows[-1].seq if rows else _newest_inbound(target, args.property_id)
    for batch in follow_inbound(target, args.property_id, after, interval=args.interval):
        for row in batch:
            print(json.dumps(asdict(row)) if args.json else _inbound_row(row, zone), flush=True)
    return 0  # not reached: follow ends with Ctrl-C (exit 130)


def _newest_inbound(target: Target, property_id: str) -> int:
    from pms_connector.operator import inbound_tail

    newest = inbound_tail(target, property_id, 1)
    return newest[-1].seq if newest else 0


def _inbound_line(seq: str, when: str, action: str, room: str, bus: str) -> str:
    return f"{seq:>10}  {when:<25}  {action:<13} {room:<10} {bus}"


def _inbound_row(row: InboundRow, zone: tzinfo) -> str:
    when = datetime.fromtimestamp(row.received_at, zone).isoformat(sep=" ")  # with the offset: no doubt at DST
    return _inbound_line(str(row.seq), when, row.action, row.room, "published" if row.published else "pending")


def _fifo(args: argparse.Namespace) -> int:
    from pms_connector import fifo

    store = _target(args).connector_store()
    pid = args.property_id
    if args.fifo_command == "status":
        cursor = store.get_cursor(pid)
        tail = store.fifo_tail(pid)
        print(json.dumps({"property": pid, "newest_seq": tail, "delivered_up_to": cursor.delivered,
                          "pending": max(0, tail - cursor.delivered), "open_batch": cursor.batch_id,
                          "last_delivery_at": cursor.delivered_at}, indent=2))
        return 0
    if args.fifo_command == "list":
        cursor = store.get_cursor(pid)
        after = args.after if args.after is not None else max(0, cursor.delivered - args.limit)
        for record in store.read_fifo(pid, after=after, limit=args.limit):
            state = "delivered" if record.seq <= cursor.delivered else "pending"
            # Action and room only: records hold guest personal data that does not belong in a terminal log.
            print(f"{record.seq:>8}  {state:<9}  {record.record.get('action', '?'):<8}  "
                  f"room {record.record.get('room', '-')}")
        return 0
    if args.from_seq is None or args.from_seq < 1:
        print("error: replay needs --from-seq N (N >= 1)", file=sys.stderr)
        return 2
    cursor = fifo.replay(store, pid, args.from_seq)
    print(f"{pid}: records after seq {cursor.delivered} will be delivered again by the next GET_REQUEST")
    return 0


def _outbox(args: argparse.Namespace) -> int:
    from pms_connector.outbox import LeaseLost

    pid = args.property or args.property_option
    if not pid or (args.property and args.property_option and args.property != args.property_option):
        print("error: outbox needs one property: outbox list ID (or --property ID)", file=sys.stderr)
        return 2
    store = _target(args).outbox_store()
    if args.outbox_command == "list":
        done, commands = store.listing(pid, limit=args.limit)
        for c in commands:
            state = c.status if c.status == "parked" else ("done" if c.seq <= done else "pending")
            # Action, address and outcome only: the fields hold guest names.
            print(f"{c.seq:>12}  {state:<8} {c.action:<9} address {c.fields.get('address', '-'):<8} "
                  f"attempts {c.attempts}  {c.last_error or ''}")
        print(f"{sum(1 for c in commands if c.seq > done)} pending, "
              f"{sum(1 for c in commands if c.status == 'parked')} parked (of the last {len(commands)})")
        return 0
    if args.seq is None:
        print(f"error: {args.outbox_command} needs --seq N", file=sys.stderr)
        return 2
    try:
        if args.outbox_command == "retry":
            print(f"{pid}: parked command {args.seq} queued again as {store.retry_parked(pid, args.seq)}")
        else:
            store.park_pending(pid, args.seq, args.reason or "no reason given")
            print(f"{pid}: command {args.seq} parked; the commands after it go on")
    except (ValueError, LeaseLost) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
