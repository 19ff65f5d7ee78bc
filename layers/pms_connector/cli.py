"""The `pms-connector` command: local runner, config tools, MD5 tokens and operating a deployed stack.

    pms-connector local --properties FILE [--port 3000]      run everything locally (moto, API)
    pms-connector config validate FILE                       check a properties file
    pms-connector config push FILE [--environment dev]       publish it to SSM + Secrets Manager
    pms-connector token --properties FILE --property ID      a signed GET_REQUEST body for now
    pms-connector property list|show|validate|check-ucm      the properties of a deployed stack
                                                             (check-ucm: from the stack's VPC)
    pms-connector property retire ID [--export FILE]         delete what a deleted property stack left
    pms-connector queue depth|replay                         their pmslink queues (FIFO)
    pms-connector outbox list|retry|park ID                  a property's UCM commands
    pms-connector inbound tail ID [--follow]                 what pmslink sent (action, room, time)
    pms-connector fifo status|list|replay --property ID      a property's queue, by sequence number

The operator commands find the stack's resources from its CloudFormation Outputs (--stack, or
$PMS_CONNECTOR_STACK; --profile, --region), or take --table/$TABLE_NAME and --environment; they use moto
when AWS_ENDPOINT_URL points at the local runner's moto server. Listings print tables (--json: one JSON
document), with a progress bar on stderr when it is a terminal and the reading takes a while. Exit codes:
docs/operator.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any, TextIO

from pms_connector.errors import ConfigError

if TYPE_CHECKING:
    from pms_connector.operator import CheckStep, InboundRow, OutboxStatus, Target

EXIT_USAGE = 2


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
    where.add_argument("--json", action="store_true", help="one JSON document on stdout instead of a table")
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
    ucm.add_argument("--from-here", action="store_true",
                     help="with a stack: probe from this machine, not from the stack's dispatcher function")
    ucm.set_defaults(run=_property_check_ucm)
    retire = prop_commands.add_parser("retire", parents=[stack],
                                      help="delete what a deleted property stack left: items, markers, schedules")
    retire.add_argument("property_id", metavar="ID")
    keep = retire.add_mutually_exclusive_group()
    keep.add_argument("--export", metavar="FILE", default=None,
                      help="first write the records pmslink has not received to FILE (JSON Lines, mode 0600)")
    keep.add_argument("--discard-undelivered", action="store_true",
                      help="delete the records pmslink has not received without keeping them")
    retire.add_argument("--force", action="store_true", help="retire it although its config still exists")
    retire.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    retire.add_argument("--schedule-group", default=None,
                        help="the wake-up schedule group (default: the stack's; without a stack "
                             "$WAKEUP_SCHEDULE_GROUP, else the schedules are not looked for)")
    retire.set_defaults(run=_property_retire)

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


class _ProgressBar:
    """A progress bar on stderr while a command reads many items or pages::

        [#########...........] 45/100 properties 45% 3.2 s

    Drawn only when stderr is a terminal, and only once the work has taken ``delay`` seconds, so a quick
    command shows nothing; when it was drawn, it is replaced at the end by one line, ``100 properties in
    7.9 s`` (on an error or Ctrl-C the line is only cleared, for the error message). Off a terminal (scripts,
    CI) it writes nothing at all, not even a control character. While the total is not known yet (None:
    still paging through the configs) it shows the count and the time. It is an ``operator.Progress``, and
    may be called from several threads (queue reads run in parallel): counts never go backwards.
    """

    WIDTH = 20
    REDRAW_SECONDS = 0.1  # at most ten redraws a second: a fast loop is not slowed down by the terminal

    def __init__(self, one: str, many: str, *, enabled: bool = True, stream: TextIO | None = None,
                 delay: float = 0.5, clock: Callable[[], float] = time.monotonic) -> None:
        self.one, self.many = one, many
        self.stream = stream or sys.stderr
        self.active = enabled and self.stream.isatty()
        self.delay = delay
        self.clock = clock
        self.shown = False
        self.done = 0
        self.total: int | None = None
        self._lock = threading.Lock()
        self._started = self._drawn = clock()

    def __enter__(self) -> _ProgressBar:
        self._started = self._drawn = self.clock()
        return self

    def __call__(self, done: int, total: int | None) -> None:
        if not self.active:
            return
        with self._lock:
            self.done = max(self.done, done) if total == self.total else done  # a new total: a new phase
            self.total = total
            now = self.clock()
            if now - self._started < self.delay:
                return
            if self.shown and now - self._drawn < self.REDRAW_SECONDS and self.done != total:
                return
            self._drawn = now
            self.shown = True
            self.stream.write(f"\r{self.line(now)}\x1b[K")
            self.stream.flush()

    def line(self, now: float) -> str:
        """The bar as it reads at ``now``, without control characters."""
        elapsed = f"{now - self._started:.1f} s"
        if not self.total:
            return f"{self.done} {self._noun(self.done)} {elapsed}"
        share = min(1.0, self.done / self.total)
        filled = int(self.WIDTH * share)
        return (f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {self.done}/{self.total} {self._noun(self.total)} "
                f"{share:.0%} {elapsed}")

    def _noun(self, count: int) -> str:
        return self.one if count == 1 else self.many

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        with self._lock:
            if not self.shown:
                return
            self.stream.write("\r\x1b[K")
            if exc_type is None:
                self.stream.write(f"{self.done} {self._noun(self.done)} in {self.clock() - self._started:.1f} s\n")
            self.stream.flush()
            self.shown = False


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NUMBER = re.compile(r"-?\d+")


def _cell(value: object) -> str:
    """A value as a table cell or a line of a report: one line, no control characters (a room or a UCM's
    answer comes from outside: it must not move the cursor or recolour the operator's terminal)."""
    return _CONTROL.sub(" ", "-" if value is None else str(value))


class _Table:
    """Aligned columns under a header. Widths come from the content (at least ``minimums``); a cell longer
    than its column's ``limits`` is cut with an ellipsis. The columns in ``right`` are right-aligned; without
    ``right``, those holding only numbers (rooms and addresses that look like numbers are names: give
    ``right``). ``row`` renders one more row in the widths of the last ``render``, for output that goes on
    (``inbound tail --follow``): a longer cell then widens its line rather than losing characters below
    its limit."""

    def __init__(self, headers: Sequence[str], *, limits: Mapping[str, int] | None = None,
                 minimums: Mapping[str, int] | None = None, right: Collection[str] | None = None) -> None:
        self.headers = list(headers)
        self.limits = dict(limits or {})
        self.minimums = dict(minimums or {})
        self.fixed = right is not None
        self.right = [h in (right or ()) for h in self.headers]
        self.widths = [max(len(h), self.minimums.get(h, 0)) for h in self.headers]

    def render(self, rows: Iterable[Sequence[object]]) -> str:
        cells = [self._cells(row) for row in rows]
        self.widths = [max([len(h), self.minimums.get(h, 0), *(len(row[i]) for row in cells)])
                       for i, h in enumerate(self.headers)]
        if not self.fixed:
            self.right = [bool(cells) and all(_NUMBER.fullmatch(row[i]) for row in cells)
                          for i in range(len(self.headers))]
        return "\n".join([self._line(self.headers), *(self._line(row) for row in cells)])

    def row(self, row: Sequence[object]) -> str:
        return self._line(self._cells(row))

    def _cells(self, row: Sequence[object]) -> list[str]:
        out = []
        for header, value in zip(self.headers, row, strict=True):
            text, limit = _cell(value), self.limits.get(header)
            out.append(text if limit is None or len(text) <= limit else text[: limit - 1] + "…")
        return out

    def _line(self, values: Sequence[str]) -> str:
        parts = [v.rjust(w) if right else v.ljust(w)
                 for v, w, right in zip(values, self.widths, self.right, strict=True)]
        return "  ".join(parts).rstrip()


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]], **options: Any) -> str:
    """``rows`` under ``headers`` as ``_Table`` lays them out (``limits``, ``minimums``, ``right``)."""
    return _Table(headers, **options).render(rows)


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
    """One JSON document on stdout: what --json prints (rows as the dataclasses hold them, nothing private)."""
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
    with _ProgressBar("property", "properties") as progress:
        summaries = property_summaries(target, progress)
    if _printed_without_table(args, target, summaries):
        return 0
    now = time.time()
    rows = [[s.property_id, s.name if s.readable else "(parameter is not a JSON object)", s.timezone,
             s.auth or "-", s.delivery if s.readable else "-", "yes" if s.ucm else "no",
             "yes" if s.polling else "no", s.queue.pending, _outbox_state(s.outbox, now), s.outbox.parked]
            for s in summaries]
    print(_table(["ID", "NAME", "TIMEZONE", "AUTH", "DELIVERY", "UCM", "POLLING", "QUEUE", "OUTBOX", "PARKED"],
                 rows, limits={"NAME": 48}))
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
    with _ProgressBar("property", "properties", enabled=args.all) as progress:
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
    from pms_connector.operator import (
        OperatorError,
        UcmCheck,
        check_ucm,
        load_property,
        remote_check_ucm,
    )

    target = _target(args)
    steps: Iterable[CheckStep]
    if target.stack and not args.from_here:
        # From the dispatcher function, in the VPC: the only place the site's VPN and Permitted-IP list admit.
        check = remote_check_ucm(target, args.property_id)
        if check.problems:
            raise ConfigError("\n".join(check.problems))  # printed as `property validate` would
        if check.error is not None:
            raise OperatorError(check.error, check.exit_code)
        steps = check.steps
    else:
        config = load_property(target, args.property_id)
        if config.ucm is None:
            raise OperatorError(f"property '{config.id}' has no ucm section: nothing to check", EXIT_USAGE)
        check = UcmCheck(config.id, config.ucm.base_url, "this machine")
        steps = check_ucm(config.ucm)  # printed step by step as each ends: a timeout shows where it waits
    if args.json:
        done = UcmCheck(check.property_id, check.base_url, check.checked_from, list(steps))
        _json_out(done.to_json())
        return done.exit_code
    print(f"{check.property_id}: UCM {_cell(check.base_url)}, checked from {_cell(check.checked_from)}")
    failed = 0
    for step in steps:
        state = {True: "ok", False: "FAIL", None: "skip"}[step.ok]
        timing = f"{step.seconds * 1000:6.0f} ms" if step.seconds else " " * 9
        print(f"  {step.name:<6} {state:<4} {timing}  {_cell(step.detail)}", flush=True)
        if step.ok is False:
            failed = step.exit_code
    print("all checks passed" if not failed else f"check failed (exit {failed})")
    return failed


def _property_retire(args: argparse.Namespace) -> int:
    from pms_connector.operator import (
        OperatorError,
        RetireResult,
        export_undelivered,
        plan_retirement,
        property_configured,
        retire_property,
        schedule_group,
    )

    target = _target(args)
    pid = args.property_id
    if property_configured(target, pid) and not args.force:  # before reading anything else
        raise OperatorError(f"property '{pid}' is live: its config {target.parameter_name(pid)} still exists. "
                            "Delete its stack first (docs/deploy.md), or pass --force", EXIT_USAGE)
    group = schedule_group(target, args.schedule_group or (None if target.stack else
                                                           os.environ.get("WAKEUP_SCHEDULE_GROUP") or None))
    with _ProgressBar("partition", "partitions") as progress:
        plan = plan_retirement(target, pid, group, progress)
    if plan.live:
        print(f"warning: retiring a live property: its config {target.parameter_name(pid)} still exists and "
              "the connector goes on serving it", file=sys.stderr)
    unchecked = "" if group else " (wake-up schedules not looked for: no stack; --schedule-group NAME)"
    if plan.nothing_to_do:
        result = RetireResult(pid, plan.live, True, dict(plan.items), False, 0, group, 0, 0, 0, None, 0)
        if args.json:
            _json_out(asdict(result))
        else:
            print(f"{pid}: nothing to retire: no items, outbox markers or wake-up schedules left{unchecked}")
        return 0
    export = args.export if plan.undelivered else None
    if plan.undelivered and not export and not args.discard_undelivered:
        batch = f", {plan.in_flight} of them in an unconfirmed batch" if plan.in_flight else ""
        raise OperatorError(f"{pid}: {plan.undelivered} record(s) not received by pmslink yet (after seq "
                            f"{plan.delivered_up_to}{batch}): keep them with --export FILE, or pass "
                            "--discard-undelivered", EXIT_USAGE)
    if export and os.path.lexists(export):
        raise OperatorError(f"{export} exists: not overwritten (choose another file)", EXIT_USAGE)
    items = sum(plan.items.values())
    markers = int(plan.due_marker) + plan.parked_markers
    kept = (f"; first {plan.undelivered} undelivered record(s) exported to {export}" if export else
            f"; {plan.undelivered} undelivered record(s) discarded" if plan.undelivered else "")
    summary = (f"{pid}: {items} item(s) in {sum(1 for n in plan.items.values() if n)} partition(s), {markers} "
               f"outbox marker(s) and {plan.schedules} wake-up schedule(s) will be deleted for good{kept}")
    if not args.yes:
        if not sys.stdin.isatty():
            raise OperatorError("property retire asks for confirmation: pass --yes when not on a terminal",
                                EXIT_USAGE)
        print(f"{summary}{unchecked}. Go on? [y/N] ", end="", file=sys.stderr, flush=True)  # stdout: the output
        if input().strip().lower() not in ("y", "yes"):
            print("not retired", file=sys.stderr)
            return 1
    exported = export_undelivered(target, plan, export) if export else 0
    with _ProgressBar("item", "items") as progress:
        result = retire_property(target, plan, exported=exported, export_file=export, progress=progress)
    if args.json:
        _json_out(asdict(result))
        return 0
    # Partitions, counts and room names only: never a booking uid or anything an item held.
    rows: list[list[object]] = [[f"{pid}#{partition}", count] for partition, count in result.deleted.items()]
    rows += [["due marker", int(result.due_marker)], ["parked markers", result.parked_markers],
             ["wake-up schedules", result.schedules_deleted if group else "-"]]
    print(_table(["DELETED", "COUNT"], rows, limits={"DELETED": 60}, right=("COUNT",)))
    kept = (f", {result.exported} undelivered record(s) exported to {export}" if export else
            f", {result.discarded} undelivered record(s) discarded" if result.discarded else
            ", no undelivered record: nothing exported" if args.export else "")
    print(f"{pid}: retired: {sum(result.deleted.values())} item(s), "
          f"{int(result.due_marker) + result.parked_markers} outbox marker(s), {result.schedules_deleted} "
          f"wake-up schedule(s) deleted{kept}{unchecked}")
    return 0


def _queue_depth(args: argparse.Namespace) -> int:
    from pms_connector.operator import property_documents, queue_statuses

    target = _target(args)
    with _ProgressBar("property", "properties", enabled=not args.property_id) as progress:
        ids = [args.property_id] if args.property_id else list(property_documents(target, progress))
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
    with _ProgressBar("FIFO read", "FIFO reads") as progress:
        plan = plan_replay(target, args.property_id, since, progress)
    when = _moment(since) + " UTC"

    def answer(message: str, *, replayed: bool) -> int:
        if args.json:
            _json_out({**asdict(plan), "replayed": replayed})
        else:
            print(message)
        return 0

    if plan.from_seq is None:
        return answer(f"{plan.property_id}: no record written since {when}: nothing to deliver again",
                      replayed=False)
    if plan.count == 0:
        return answer(f"{plan.property_id}: the records since {when} (from seq {plan.from_seq}) are not "
                      "delivered yet: nothing to deliver again", replayed=False)
    summary = (f"{plan.property_id}: {plan.count} record(s) written since {when} (seq {plan.from_seq}.."
               f"{plan.delivered_up_to}) will be delivered again")
    if not args.yes:
        if not sys.stdin.isatty():
            raise OperatorError("queue replay asks for confirmation: pass --yes when not on a terminal", EXIT_USAGE)
        print(f"{summary}. Go on? [y/N] ", end="", file=sys.stderr, flush=True)  # stdout: the output only
        if input().strip().lower() not in ("y", "yes"):
            print("not replayed", file=sys.stderr)
            return 1
    replay(target, plan)
    return answer(f"{summary} by the next GET_REQUEST", replayed=True)


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
    with _ProgressBar("entry", "entries") as progress:
        rows = inbound_tail(target, args.property_id, args.limit, progress)
    # Seq, time, action, room, bus: what pmslink sent, never its content (charges, names, message texts).
    table = _Table(["SEQ", f"RECEIVED ({zone})", "ACTION", "ROOM", "BUS"], right=("SEQ",),
                   minimums={"SEQ": 6, "ACTION": 12, "ROOM": 6}, limits={"ACTION": 16, "ROOM": 16})
    if args.json and not args.follow:
        _json_out([asdict(row) for row in rows])
        return 0
    if args.json:  # a stream cannot be one document: one object a line, the first rows included
        for row in rows:
            print(json.dumps(asdict(row)), flush=True)
    else:
        print(table.render([_inbound_cells(row, zone) for row in rows]))
    if not args.follow:
        return 0
    sys.stdout.flush()
    after = rows[-1].seq if rows else _newest_inbound(target, args.property_id)
    for batch in follow_inbound(target, args.property_id, after, interval=args.interval):
        for row in batch:
            print(json.dumps(asdict(row)) if args.json else table.row(_inbound_cells(row, zone)), flush=True)
    return 0  # not reached: follow ends with Ctrl-C (exit 130)


def _newest_inbound(target: Target, property_id: str) -> int:
    from pms_connector.operator import inbound_tail

    newest = inbound_tail(target, property_id, 1)
    return newest[-1].seq if newest else 0


def _inbound_cells(row: InboundRow, zone: tzinfo) -> list[object]:
    when = datetime.fromtimestamp(row.received_at, zone).isoformat(sep=" ")  # with the offset: no doubt at DST
    return [row.seq, when, row.action, row.room, "published" if row.published else "pending"]


def _fifo(args: argparse.Namespace) -> int:
    from pms_connector import fifo
    from pms_connector.operator import fifo_listing

    target = _target(args)
    store = target.connector_store()
    pid = args.property_id
    if args.fifo_command == "status":
        cursor = store.get_cursor(pid)
        tail = store.fifo_tail(pid)
        print(json.dumps({"property": pid, "newest_seq": tail, "delivered_up_to": cursor.delivered,
                          "pending": max(0, tail - cursor.delivered), "open_batch": cursor.batch_id,
                          "last_delivery_at": cursor.delivered_at}, indent=2))
        return 0
    if args.fifo_command == "list":
        with _ProgressBar("record", "records") as progress:
            rows = fifo_listing(target, pid, after=args.after, limit=args.limit, progress=progress)
        if args.json:
            _json_out([asdict(row) for row in rows])
        elif rows:
            # Action and room only: records hold guest personal data that does not belong in a terminal log.
            print(_table(["SEQ", "STATE", "ACTION", "ROOM", "WRITTEN (UTC)"],
                         [[r.seq, r.state, r.action, r.room, _moment(r.ingested_at)] for r in rows],
                         limits={"ACTION": 16, "ROOM": 16}, right=("SEQ",)))
        else:
            print(f"{pid}: no records in that range", file=sys.stderr)
        return 0
    if args.from_seq is None or args.from_seq < 1:
        print("error: replay needs --from-seq N (N >= 1)", file=sys.stderr)
        return 2
    cursor = fifo.replay(store, pid, args.from_seq)
    if args.json:
        _json_out({"property": pid, "delivered_up_to": cursor.delivered})
    else:
        print(f"{pid}: records after seq {cursor.delivered} will be delivered again by the next GET_REQUEST")
    return 0


def _outbox(args: argparse.Namespace) -> int:
    from pms_connector.operator import outbox_listing
    from pms_connector.outbox import LeaseLost

    pid = args.property or args.property_option
    if not pid or (args.property and args.property_option and args.property != args.property_option):
        print("error: outbox needs one property: outbox list ID (or --property ID)", file=sys.stderr)
        return 2
    target = _target(args)
    if args.outbox_command == "list":
        if args.limit < 1:
            print("error: --limit must be at least 1", file=sys.stderr)
            return 2
        with _ProgressBar("command", "commands") as progress:
            rows = outbox_listing(target, pid, args.limit, progress)
        if args.json:
            _json_out([asdict(row) for row in rows])
            return 0
        if rows:
            # Action, address and outcome only: the command's fields hold guest names.
            print(_table(["SEQ", "STATE", "ACTION", "ADDRESS", "ATTEMPTS", "LAST ERROR"],
                         [[r.seq, r.state, r.action, r.address, r.attempts, r.last_error or ""] for r in rows],
                         limits={"ADDRESS": 16, "LAST ERROR": 60}, right=("SEQ", "ATTEMPTS")))
        print(f"{sum(1 for r in rows if r.state == 'pending')} pending, "
              f"{sum(1 for r in rows if r.state == 'parked')} parked (of the last {len(rows)})")
        return 0
    if args.seq is None:
        print(f"error: {args.outbox_command} needs --seq N", file=sys.stderr)
        return 2
    store = target.outbox_store()
    try:
        if args.outbox_command == "retry":
            queued = store.retry_parked(pid, args.seq)
            result: dict[str, Any] = {"property": pid, "seq": args.seq, "queued_as": queued}
            message = f"{pid}: parked command {args.seq} queued again as {queued}"
        else:
            reason = args.reason or "no reason given"
            store.park_pending(pid, args.seq, reason)
            result = {"property": pid, "seq": args.seq, "parked": True, "reason": reason}
            message = f"{pid}: command {args.seq} parked; the commands after it go on"
    except (ValueError, LeaseLost) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        _json_out(result)
    else:
        print(message)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
