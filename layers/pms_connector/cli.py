"""The `pms-connector` command: local runner, config tools, MD5 tokens and FIFO operations.

    pms-connector local --properties FILE [--port 3000]      run everything locally (moto, API)
    pms-connector config validate FILE                       check a properties file
    pms-connector config push FILE [--environment dev]       publish it to SSM + Secrets Manager
    pms-connector token --properties FILE --property ID      a signed GET_REQUEST body for now
    pms-connector fifo status|list|replay --property ID      inspect or replay a property's queue
    pms-connector outbox list|retry|park --property ID       a property's UCM commands

The fifo and config push commands use the AWS account of the environment (profile, region), or moto when
AWS_ENDPOINT_URL points at the local runner's moto server.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence

from pms_connector.errors import ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.run(args)
    except ConfigError as exc:
        print(f"error: invalid configuration\n{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return result


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

    fifo = commands.add_parser("fifo", help="inspect or replay a property's pmslink queue")
    fifo.add_argument("fifo_command", choices=["status", "list", "replay"])
    fifo.add_argument("--property", required=True, dest="property_id")
    fifo.add_argument("--table", default=os.environ.get("TABLE_NAME"), help="table name (default: $TABLE_NAME)")
    fifo.add_argument("--from-seq", type=int, default=None, help="replay: first sequence number to deliver again")
    fifo.add_argument("--after", type=int, default=None, help="list: records after this sequence number")
    fifo.add_argument("--limit", type=int, default=20)
    fifo.set_defaults(run=_fifo)

    outbox = commands.add_parser("outbox", help="inspect a property's UCM outbox, retry or park commands")
    outbox.add_argument("outbox_command", choices=["list", "retry", "park"])
    outbox.add_argument("--property", required=True, dest="property_id")
    outbox.add_argument("--table", default=os.environ.get("TABLE_NAME"), help="table name (default: $TABLE_NAME)")
    outbox.add_argument("--seq", type=int, default=None, help="retry/park: the command's sequence number")
    outbox.add_argument("--reason", default="", help="park: why (kept with the command)")
    outbox.add_argument("--limit", type=int, default=30)
    outbox.set_defaults(run=_outbox)
    return parser


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


def _fifo(args: argparse.Namespace) -> int:
    from pms_connector import fifo
    from pms_connector.store import ConnectorStore

    if not args.table:
        print("error: --table or TABLE_NAME is required", file=sys.stderr)
        return 2
    store = ConnectorStore(args.table)
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
    from pms_connector.outbox import LeaseLost, OutboxStore

    if not args.table:
        print("error: --table or TABLE_NAME is required", file=sys.stderr)
        return 2
    store = OutboxStore(args.table)
    pid = args.property_id
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
