"""DynamoDB adapter for the per-property UCM outbox: commands in sequence order, a lease, a done cursor.

| item             | pk                 | sk              | holds                                               |
|------------------|--------------------|-----------------|-----------------------------------------------------|
| command          | ``{pid}#outbox``   | seq, 14 digits  | action, fields (JSON), attempts, next attempt, status |
| outbox meta      | ``{pid}#meta``     | ``outbox``      | done_up_to, lease_owner, lease_until, held_until     |
| due marker       | ``due``            | ``{pid}``       | next_due, last_seq, since (only properties with work) |
| parked marker    | ``parked``         | ``{pid}#{seq}`` | one per parked command, expiring with it             |

Every command up to ``done_up_to`` is finished (sent, or parked and marked so). The dispatcher takes the
lease with one conditional update that also returns the meta, reads the next commands with one query and
moves ``done_up_to`` with one update per command: 3 AWS calls for a single command. The due markers and
the parked markers are one partition each, so a sweep over any number of idle properties is two queries
(an idle property has neither marker) and still sees every property's backlog: ``since`` is when the
oldest unfinished command was written, and the parked markers count what waits for an operator.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from pms_connector.errors import StorageBusy
from pms_connector.observability import logger
from pms_connector.store import MAX_SEQ, ConnectorStore, _n, _s, dumps, seq_key

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

DUE_PK = "due"
PARKED_PK = "parked"
COMMAND_RETENTION_SECONDS = 14 * 86_400  # commands hold guest names: they expire (TTL) two weeks after


@dataclass(frozen=True)
class OutboxCommand:
    seq: int
    action: str
    fields: dict[str, str]
    fallback: dict[str, str] | None
    attempts: int
    next_attempt_at: int
    status: str  # pending | parked
    last_error: str | None
    correlation_id: str | None
    created_at: int = 0


@dataclass(frozen=True)
class OutboxMeta:
    done_up_to: int = 0
    held_until: int = 0
    hold_reason: str | None = None


@dataclass(frozen=True)
class DueMarker:
    property_id: str
    next_due: int
    since: int  # when the oldest unfinished command was written


class LeaseLost(Exception):
    """Another dispatcher holds (or took over) this property's lease."""


class OutboxStore(ConnectorStore):
    """Outbox operations; shares the table and the error mapping of ConnectorStore."""

    # --- writing commands ------------------------------------------------------------------------

    def enqueue(
        self,
        property_id: str,
        commands: Sequence[tuple[str, Mapping[str, str]]],
        *,
        fallbacks: Mapping[int, Mapping[str, str]] | None = None,
        correlation_id: str | None = None,
        also: Sequence[TransactWriteItemTypeDef] = (),
    ) -> list[int]:
        """Append commands in order, with the property's due marker (and ``also``), in one transaction."""
        if not commands:
            return []
        now = int(self._clock())
        payloads = []
        for index, (action, fields) in enumerate(commands):
            item = {
                "action": _s(action),
                "fields": _s(dumps(dict(fields))),
                "attempts": _n(0),
                "next_attempt_at": _n(now),
                "status": _s("pending"),
                "created_at": _n(now),
                "expires_at": _n(now + COMMAND_RETENTION_SECONDS),
            }
            if fallbacks and index in fallbacks:
                item["fallback"] = _s(dumps(dict(fallbacks[index])))
            if correlation_id:
                item["correlation_id"] = _s(correlation_id)
            payloads.append(item)

        def marker(first_seq: int) -> list[TransactWriteItemTypeDef]:
            return [self.due_marker_write(property_id, now, first_seq + len(commands) - 1), *also]

        return self._append(f"{property_id}#outbox", payloads, extra=marker)

    def due_marker_write(self, property_id: str, now: int, last_seq: int) -> TransactWriteItemTypeDef:
        """The due marker's part of an enqueue: due now, up to ``last_seq``, ``since`` kept if older."""
        return {"Update": {
            "TableName": self.table, "Key": {"pk": _s(DUE_PK), "sk": _s(property_id)},
            "UpdateExpression": "SET next_due = :now, last_seq = :last, since = if_not_exists(since, :now)",
            "ExpressionAttributeValues": {":now": _n(now), ":last": _n(last_seq)},
        }}

    # --- the dispatcher's lease and cursor -----------------------------------------------------------

    def acquire(self, property_id: str, owner: str, *, now: int, lease_seconds: int) -> OutboxMeta | None:
        """Take the property's lease (free, expired or already ours); None when someone else holds it."""
        try:
            result = self._call("UpdateItem", lambda: self.client.update_item(
                TableName=self.table,
                Key=self._meta_key(property_id),
                UpdateExpression="SET lease_owner = :owner, lease_until = :until",
                ConditionExpression="attribute_not_exists(lease_until) OR lease_until < :now OR lease_owner = :owner",
                ExpressionAttributeValues={":owner": _s(owner), ":until": _n(now + lease_seconds), ":now": _n(now)},
                ReturnValues="ALL_NEW",
            ))
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise
        item = result["Attributes"]
        return OutboxMeta(
            done_up_to=int(item["done_up_to"]["N"]) if "done_up_to" in item else 0,
            held_until=int(item["held_until"]["N"]) if "held_until" in item else 0,
            hold_reason=item["hold_reason"]["S"] if "hold_reason" in item else None,
        )

    def renew(self, property_id: str, owner: str, *, now: int, lease_seconds: int) -> None:
        """Extend our lease from ``now``; LeaseLost when another dispatcher took it over meanwhile."""
        self._update_meta(property_id, owner, "SET lease_until = :until", {":until": _n(now + lease_seconds)})

    def pending(self, property_id: str, *, after: int, limit: int) -> list[OutboxCommand]:
        items = self._query_range(f"{property_id}#outbox", after + 1, MAX_SEQ, limit)
        return [_command(item) for item in items]

    def complete(self, property_id: str, owner: str, seq: int, *, release: bool, clear_hold: bool = False) -> None:
        """Mark every command up to ``seq`` finished (under our lease); optionally let the lease go."""
        removes = ["lease_owner", "lease_until"] if release else []
        if clear_hold:
            removes += ["held_until", "hold_reason"]
        self._update_meta(property_id, owner, "SET done_up_to = :seq" + _remove(removes), {":seq": _n(seq)},
                          extra_condition="(attribute_not_exists(done_up_to) OR done_up_to < :seq)")

    def finish(self, property_id: str, owner: str, seq: int) -> bool:
        """Mark up to ``seq`` finished, let the lease go and drop the due marker, in one call.

        False (and only the cursor moved, lease kept) when commands were enqueued after ``seq`` meanwhile.
        """
        meta = self._meta_update(property_id, owner, "SET done_up_to = :seq REMOVE lease_owner, lease_until",
                                 {":seq": _n(seq)})
        transaction: list[TransactWriteItemTypeDef] = [
            {"Update": meta},  # type: ignore[typeddict-item]
            {"Delete": {"TableName": self.table, "Key": {"pk": _s(DUE_PK), "sk": _s(property_id)},
                        "ConditionExpression": "attribute_not_exists(pk) OR last_seq <= :done",
                        "ExpressionAttributeValues": {":done": _n(seq)}}},
        ]
        try:
            self._call("TransactWriteItems", lambda: self.client.transact_write_items(TransactItems=transaction))
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                raise LeaseLost(property_id) from exc
            self.complete(property_id, owner, seq, release=False)
            return False
        return True

    def park(self, property_id: str, owner: str, command: OutboxCommand, error: str, *, release: bool,
             status: str = "parked") -> None:
        """Keep the command, visible as parked, and let the property's later commands go on. ``expired``: a
        command that no longer makes sense (a wake-up whose time has passed): finished, not alarmed."""
        meta_update = self._meta_update(property_id, owner, "SET done_up_to = :seq" + _remove(
            ["lease_owner", "lease_until"] if release else []), {":seq": _n(command.seq)})
        transaction: list[TransactWriteItemTypeDef] = [
            {"Update": {
                "TableName": self.table,
                "Key": {"pk": _s(f"{property_id}#outbox"), "sk": _s(seq_key(command.seq))},
                "UpdateExpression": "SET #status = :parked, last_error = :error, attempts = :attempts",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {":parked": _s(status), ":error": _s(error[:500]),
                                              ":attempts": _n(command.attempts + 1)},
            }},
            {"Update": meta_update},  # type: ignore[typeddict-item]
        ]
        if status == "parked":
            transaction.append({"Put": {"TableName": self.table, "Item": {
                "pk": _s(PARKED_PK), "sk": _s(f"{property_id}#{seq_key(command.seq)}"),
                "expires_at": _n((command.created_at or int(self._clock())) + COMMAND_RETENTION_SECONDS)}}})
        self._transact(transaction)

    def reschedule(self, property_id: str, command: OutboxCommand, *, next_attempt_at: int, error: str) -> None:
        self._call("UpdateItem", lambda: self.client.update_item(
            TableName=self.table,
            Key={"pk": _s(f"{property_id}#outbox"), "sk": _s(seq_key(command.seq))},
            UpdateExpression="SET attempts = :attempts, next_attempt_at = :next, last_error = :error",
            ExpressionAttributeValues={":attempts": _n(command.attempts + 1), ":next": _n(next_attempt_at),
                                       ":error": _s(error[:500])},
        ))

    def hold(self, property_id: str, owner: str, *, until: int, reason: str) -> None:
        """Stop sending to the site until ``until`` (a misconfigured UCM); releases the lease."""
        self._update_meta(property_id, owner, "SET held_until = :until, hold_reason = :reason"
                          " REMOVE lease_owner, lease_until", {":until": _n(until), ":reason": _s(reason[:200])})

    def release(self, property_id: str, owner: str) -> None:
        self._update_meta(property_id, owner, "REMOVE lease_owner, lease_until", {})

    def set_due(self, property_id: str, next_due: int, last_seq: int, *, since: int | None = None) -> None:
        """When the sweeper should look again. ``last_seq`` only fills a missing marker: an enqueue that
        raced with us may have raised it, and lowering it could let a finish drop the marker too early."""
        values = {":due": _n(next_due), ":last": _n(last_seq)}
        since_expression = "since = if_not_exists(since, :due)"
        if since is not None:
            since_expression, values[":since"] = "since = :since", _n(since)
        self._call("UpdateItem", lambda: self.client.update_item(
            TableName=self.table, Key={"pk": _s(DUE_PK), "sk": _s(property_id)},
            UpdateExpression=f"SET next_due = :due, last_seq = if_not_exists(last_seq, :last), {since_expression}",
            ExpressionAttributeValues=values,
        ))

    def clear_due(self, property_id: str, done_up_to: int) -> None:
        """Forget the property's due marker, unless commands were enqueued after ``done_up_to``.

        A marker can outlive its commands (a command pending for longer than its retention expires): when the
        marker names a later command but the outbox has none, the marker is dropped as stale."""
        try:
            self._delete_due(property_id, "last_seq <= :done", _n(done_up_to))
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            old: dict[str, Any] = dict(exc.response.get("Item") or {})  # type: ignore[call-overload]
            if not old or self.pending(property_id, after=done_up_to, limit=1):
                return  # new work arrived: the marker stays
            logger.warning("stale due marker dropped", extra={"property": property_id,
                                                               "last_seq": old["last_seq"]["N"]})
            try:  # only if no enqueue changed it meanwhile
                self._delete_due(property_id, "last_seq = :done", old["last_seq"])
            except ClientError as again:
                if again.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise

    def _delete_due(self, property_id: str, condition: str, value: Any) -> None:
        self._call("DeleteItem", lambda: self.client.delete_item(
            TableName=self.table, Key={"pk": _s(DUE_PK), "sk": _s(property_id)}, ConditionExpression=condition,
            ExpressionAttributeValues={":done": value}, ReturnValuesOnConditionCheckFailure="ALL_OLD",
        ))

    def backlog(self) -> list[DueMarker]:
        """Every property with unfinished commands (due now or later): one query, however many properties."""
        return [DueMarker(i["sk"]["S"], int(i["next_due"]["N"]),
                          int(i["since"]["N"]) if "since" in i else int(i["next_due"]["N"]))
                for i in self._query_all(DUE_PK, "sk, next_due, since")]

    def due_properties(self, now: int) -> list[tuple[str, int]]:
        """(property, next_due) of every property with work due by ``now``."""
        return [(m.property_id, m.next_due) for m in self.backlog() if m.next_due <= now]

    def parked_counts(self) -> dict[str, int]:
        """Parked commands per property (only properties that have some): one query."""
        counts: dict[str, int] = {}
        for item in self._query_all(PARKED_PK, "sk"):
            pid = item["sk"]["S"].rsplit("#", 1)[0]
            counts[pid] = counts.get(pid, 0) + 1
        return counts

    def retire(self, property_id: str) -> tuple[bool, int]:
        """Stop watching a property that is gone (its config deleted with its stack): drop its due marker and
        its parked markers, so no sweep tries it and no alarm counts it. Its commands stay until their TTL
        (guest data expires with them); a property that comes back is picked up by its next command, and a
        command enqueued meanwhile keeps the marker (the delete is conditional on the marker read).
        Returns (whether a due marker was dropped, how many parked markers)."""
        kwargs: dict[str, Any] = {
            "TableName": self.table, "KeyConditionExpression": "pk = :pk AND begins_with(sk, :pid)",
            "ProjectionExpression": "sk", "ExpressionAttributeValues": {":pk": _s(PARKED_PK),
                                                                        ":pid": _s(f"{property_id}#")}}
        parked = self._call("Query", lambda: self.client.query(**kwargs)).get("Items", [])
        for key in [{"pk": _s(PARKED_PK), "sk": item["sk"]} for item in parked]:
            self._call("DeleteItem", functools.partial(self.client.delete_item, TableName=self.table, Key=key))
        marker = self._call("GetItem", lambda: self.client.get_item(
            TableName=self.table, Key={"pk": _s(DUE_PK), "sk": _s(property_id)}, ConsistentRead=True)).get("Item")
        if not marker:
            return False, len(parked)
        try:
            self._delete_due(property_id, "last_seq = :done", marker["last_seq"])
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False, len(parked)  # a command arrived meanwhile: its property may be back
        return True, len(parked)

    def _query_all(self, pk: str, projection: str) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self.table, "KeyConditionExpression": "pk = :pk", "ProjectionExpression": projection,
            "ExpressionAttributeValues": {":pk": _s(pk)},
        }
        items: list[dict[str, Any]] = []
        while True:
            page = self._call("Query", lambda: self.client.query(**kwargs))
            items += page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # --- operators ---------------------------------------------------------------------------------

    def listing(self, property_id: str, *, limit: int = 50) -> tuple[int, list[OutboxCommand]]:
        """The done cursor and the newest ``limit`` commands (parked, pending, recently done)."""
        meta = self._get(f"{property_id}#meta", "outbox") or {}
        done = int(meta["done_up_to"]["N"]) if "done_up_to" in meta else 0
        items = self._query_range(f"{property_id}#outbox", 0, MAX_SEQ, limit, newest_first=True)
        return done, [_command(i) for i in reversed(items)]

    def meta(self, property_id: str) -> OutboxMeta | None:
        """The property's outbox meta as ``acquire`` returns it (done cursor, hold until/reason), read with
        one GetItem and no lease: for operators. None when no dispatcher has touched the outbox yet."""
        item = self._get(f"{property_id}#meta", "outbox")
        if item is None:
            return None
        return OutboxMeta(
            done_up_to=int(item["done_up_to"]["N"]) if "done_up_to" in item else 0,
            held_until=int(item["held_until"]["N"]) if "held_until" in item else 0,
            hold_reason=item["hold_reason"]["S"] if "hold_reason" in item else None,
        )

    def retry_parked(self, property_id: str, seq: int) -> int:
        """Put a parked command back in the queue as a new command at the end (its order was given up
        when it was parked); the parked one is marked retried, in the same transaction. Returns the new
        sequence number."""
        item = self._get(f"{property_id}#outbox", seq_key(seq))
        if item is None or item.get("status", {}).get("S") != "parked":
            raise ValueError(f"command {seq} of {property_id} is not parked")
        command = _command(item)
        retired: list[TransactWriteItemTypeDef] = [
            {"Update": {"TableName": self.table, "Key": {"pk": _s(f"{property_id}#outbox"), "sk": _s(seq_key(seq))},
                        "UpdateExpression": "SET #status = :retried", "ConditionExpression": "#status = :parked",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": {":retried": _s("retried"), ":parked": _s("parked")}}},
            {"Delete": {"TableName": self.table,
                        "Key": {"pk": _s(PARKED_PK), "sk": _s(f"{property_id}#{seq_key(seq)}")}}},
        ]
        try:
            return self.enqueue(property_id, [(command.action, command.fields)],
                                fallbacks={0: command.fallback} if command.fallback else None,
                                correlation_id=command.correlation_id, also=retired)[0]
        except StorageBusy:
            # _append retries a cancelled transaction as a lost race; if the command is no longer parked,
            # another operator retried it first.
            again = self._get(f"{property_id}#outbox", seq_key(seq)) or {}
            if again.get("status", {}).get("S") != "parked":
                raise ValueError(f"command {seq} of {property_id} was retried meanwhile") from None
            raise

    def park_pending(self, property_id: str, seq: int, reason: str) -> None:
        """Operator action: give up on the next pending command (e.g. a room that no longer exists)."""
        owner = f"operator-{seq}"
        meta = self.acquire(property_id, owner, now=int(self._clock()), lease_seconds=30)
        if meta is None:
            raise LeaseLost(f"{property_id}: a dispatcher is working; try again in a minute")
        head = self.pending(property_id, after=meta.done_up_to, limit=1)
        if not head or head[0].seq != seq:
            self.release(property_id, owner)
            raise ValueError(f"command {seq} is not the next pending command of {property_id}")
        self.park(property_id, owner, head[0], f"parked by operator: {reason}", release=True)

    # --- internals -------------------------------------------------------------------------------

    def _meta_key(self, property_id: str) -> dict[str, Any]:
        return {"pk": _s(f"{property_id}#meta"), "sk": _s("outbox")}

    def _meta_update(self, property_id: str, owner: str, expression: str, values: dict[str, Any],
                     extra_condition: str | None = None) -> dict[str, Any]:
        condition = "lease_owner = :owner" + (f" AND {extra_condition}" if extra_condition else "")
        return {"TableName": self.table, "Key": self._meta_key(property_id), "UpdateExpression": expression,
                "ConditionExpression": condition, "ExpressionAttributeValues": {**values, ":owner": _s(owner)}}

    def _update_meta(self, property_id: str, owner: str, expression: str, values: dict[str, Any],
                     extra_condition: str | None = None) -> None:
        update = self._meta_update(property_id, owner, expression, values, extra_condition)
        try:
            self._call("UpdateItem", lambda: self.client.update_item(**update))
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise LeaseLost(property_id) from exc
            raise

    def _transact(self, transaction: list[TransactWriteItemTypeDef]) -> None:
        try:
            self._call("TransactWriteItems", lambda: self.client.transact_write_items(TransactItems=transaction))
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                raise LeaseLost("outbox transaction cancelled") from exc
            raise


def _remove(names: list[str]) -> str:
    return f" REMOVE {', '.join(names)}" if names else ""


def _command(item: Mapping[str, Any]) -> OutboxCommand:
    return OutboxCommand(
        seq=int(item["sk"]["S"]),
        action=item["action"]["S"],
        fields=json.loads(item["fields"]["S"]),
        fallback=json.loads(item["fallback"]["S"]) if "fallback" in item else None,
        attempts=int(item["attempts"]["N"]),
        next_attempt_at=int(item["next_attempt_at"]["N"]),
        status=item["status"]["S"],
        last_error=item["last_error"]["S"] if "last_error" in item else None,
        correlation_id=item["correlation_id"]["S"] if "correlation_id" in item else None,
        created_at=int(item["created_at"]["N"]) if "created_at" in item else 0,
    )
