"""DynamoDB adapter: per-property FIFO, delivery cursor, inbound log, request dedupe and charges.

One table (``TABLE_NAME``), keys ``pk``/``sk`` (strings), TTL attribute ``expires_at``. Every key starts with
the property id, which cannot contain ``#``, so one property's keys never reach another's.

| item              | pk                        | sk                | holds                                    |
|-------------------|---------------------------|-------------------|------------------------------------------|
| FIFO record       | ``{pid}#fifo``            | seq, 14 digits    | record (JSON as received), ingested_at   |
| delivery cursor   | ``{pid}#meta``            | ``fifo``          | delivered, version, open batch           |
| inbound request   | ``{pid}#inbound``         | seq, 14 digits    | request without credentials, action      |
| request dedupe    | ``{pid}#dedupe``          | sha-256 of request| first answer, inbound seq                |
| charge            | ``{pid}#charges#{room}``  | inbound seq       | booking/account, article, total          |

A log (FIFO or inbound) is appended to by reading its tail (one Query) and writing the new items with
``attribute_not_exists`` conditions in one TransactWriteItems: two writers racing for the same sequence
numbers cannot both win, and the loser retries on the new tail. Delivered FIFO records stay in place as the
delivery archive until their TTL: the cursor marks what was delivered, so a replay is a cursor move.
"""

from __future__ import annotations

import functools
import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from pms_connector import aws
from pms_connector.errors import StorageBusy
from pms_connector.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef

# 14 digits: FIFO records stay far below 10**12, and each outbox command is numbered fifo_seq * 100 + k.
SEQ_WIDTH = 14
MAX_SEQ = 10**SEQ_WIDTH - 1
MAX_TRANSACTION_ITEMS = 100  # DynamoDB's limit for one TransactWriteItems
APPEND_ATTEMPTS = 6
_RETRYABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
    }
)

Item = dict[str, "AttributeValueTypeDef"]


def seq_key(seq: int) -> str:
    return f"{seq:0{SEQ_WIDTH}d}"


def _s(value: str) -> AttributeValueTypeDef:
    return {"S": value}


def _n(value: int) -> AttributeValueTypeDef:
    return {"N": str(value)}


def dumps(value: Any) -> str:
    """Compact JSON that keeps UTF-8 as is (guest names stay readable and small)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default)


def _json_default(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


@dataclass(frozen=True)
class QueuedRecord:
    seq: int
    record: dict[str, Any]
    ingested_at: int
    expires_at: int


@dataclass(frozen=True)
class Cursor:
    """Delivery position of a property's FIFO. ``version`` guards every move (optimistic locking)."""

    delivered: int = 0
    version: int = 0
    batch_id: str | None = None
    batch_last: int | None = None
    last_confirmed: str | None = None
    delivered_at: int | None = None
    claim: str | None = None  # a random mark of the write that moved it, to tell ours from a rival's


@dataclass(frozen=True)
class InboundEntry:
    seq: int
    action: str
    request: dict[str, Any]
    request_id: str
    received_at: int
    publish_pending: bool


@dataclass(frozen=True)
class StoredAnswer:
    """What a request got the first time; a retry of the same request gets it again."""

    seq: int
    answer: dict[str, Any]


@dataclass(frozen=True)
class Charge:
    seq: int
    datetime: str
    booking_uid: str | None
    account: str | None
    article: str | None
    description: str
    total: str  # decimal as text, summed exactly by the caller


class CursorMoved(Exception):
    """Another poller moved the cursor between our read and our write."""


class DuplicateRequest(Exception):
    """The dedupe item already exists: the request was stored before. ``item``: the dedupe item as it is,
    when its write asked for it (ReturnValuesOnConditionCheckFailure)."""

    def __init__(self, item: Mapping[str, Any] | None = None) -> None:
        super().__init__("stored before")
        self.item = item


class ConnectorStore:
    """All DynamoDB access of the HTTPPMS and ingest functions."""

    def __init__(
        self,
        table_name: str,
        client: DynamoDBClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table = table_name
        self._client = client
        self._clock = clock

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            self._client = aws.dynamodb()
        return self._client

    # --- FIFO -----------------------------------------------------------------------------------

    def append_fifo(
        self, property_id: str, records: Sequence[Mapping[str, Any]], *, retention_seconds: int
    ) -> list[int]:
        """Append records to the property's FIFO, all or none, in order; returns their sequence numbers."""
        now = int(self._clock())
        payloads: list[Item] = [
            {
                "record": _s(dumps(record)),
                "action": _s(str(record.get("action", "")).strip().upper()),
                "ingested_at": _n(now),
                "expires_at": _n(now + retention_seconds),
            }
            for record in records
        ]
        return self._append(f"{property_id}#fifo", payloads)

    def read_fifo(self, property_id: str, *, after: int, limit: int) -> list[QueuedRecord]:
        """Up to ``limit`` records with seq > ``after``, oldest first (strongly consistent)."""
        if limit <= 0:
            return []
        items = self._query_range(f"{property_id}#fifo", after + 1, min(after + limit, MAX_SEQ), limit)
        return [
            QueuedRecord(
                seq=int(item["sk"]["S"]),
                record=json.loads(item["record"]["S"]),
                ingested_at=int(item["ingested_at"]["N"]),
                expires_at=int(item["expires_at"]["N"]),
            )
            for item in items
        ]

    def fifo_tail(self, property_id: str) -> int:
        """Sequence number of the newest FIFO record (0 when empty)."""
        return self._tail(f"{property_id}#fifo")

    def inbound_tail(self, property_id: str) -> int:
        """Sequence number of the newest inbound log entry, expired or not (0 when there is none)."""
        return self._tail(f"{property_id}#inbound")

    def get_cursor(self, property_id: str) -> Cursor:
        item = self._call(
            "GetItem",
            lambda: self.client.get_item(
                TableName=self.table,
                Key={"pk": _s(f"{property_id}#meta"), "sk": _s("fifo")},
                ConsistentRead=True,
            ),
        ).get("Item")
        if not item:
            return Cursor()
        return Cursor(
            delivered=int(item["delivered"]["N"]),
            version=int(item["version"]["N"]),
            batch_id=item["batch_id"]["S"] if "batch_id" in item else None,
            batch_last=int(item["batch_last"]["N"]) if "batch_last" in item else None,
            last_confirmed=item["last_confirmed"]["S"] if "last_confirmed" in item else None,
            delivered_at=int(item["delivered_at"]["N"]) if "delivered_at" in item else None,
            claim=item["claim"]["S"] if "claim" in item else None,
        )

    def save_cursor(self, property_id: str, old: Cursor, new: Cursor) -> None:
        """Move the cursor from ``old`` to ``new``; CursorMoved if someone else moved it first."""
        values: Item = {
            ":delivered": _n(new.delivered),
            ":version": _n(old.version + 1),
            ":old": _n(old.version),
            ":at": _n(int(self._clock())),
        }
        sets = ["delivered = :delivered", "version = :version", "delivered_at = :at"]
        removes = []
        for name, value in (
            ("batch_id", new.batch_id),
            ("batch_last", new.batch_last),
            ("last_confirmed", new.last_confirmed),
            ("claim", new.claim),
        ):
            if value is None:
                removes.append(name)
            else:
                sets.append(f"{name} = :{name}")
                values[f":{name}"] = _n(value) if isinstance(value, int) else _s(value)
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        condition = "version = :old" if old.version else "attribute_not_exists(pk) OR version = :old"
        try:
            self._call(
                "UpdateItem",
                lambda: self.client.update_item(
                    TableName=self.table,
                    Key={"pk": _s(f"{property_id}#meta"), "sk": _s("fifo")},
                    UpdateExpression=expression,
                    ConditionExpression=condition,
                    ExpressionAttributeValues=values,
                ),
            )
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                raise CursorMoved() from exc
            raise

    # --- inbound log, dedupe and charges ----------------------------------------------------------

    def store_inbound(
        self,
        property_id: str,
        *,
        request_id: str,
        action: str,
        request: Mapping[str, Any],
        answer: Mapping[str, Any],
        retention_seconds: int,
        charge: Mapping[str, Any] | None = None,
        charge_retention_seconds: int = 0,
    ) -> int:
        """Store a request once: inbound log entry, dedupe item and (for charges) a charge, atomically.

        Raises DuplicateRequest when the same request was stored before. Returns the inbound sequence.
        """
        now = int(self._clock())
        entry: Item = {
            "action": _s(action),
            "request": _s(dumps(request)),
            "request_id": _s(request_id),
            "received_at": _n(now),
            "expires_at": _n(now + retention_seconds),
            "publish_pending": _n(1),
        }

        def extra(first_seq: int) -> list[TransactWriteItemTypeDef]:
            dedupe: Item = {
                "pk": _s(f"{property_id}#dedupe"),
                "sk": _s(request_id),
                "answer": _s(dumps(answer)),
                "seq": _n(first_seq),
                "expires_at": _n(now + retention_seconds),
            }
            items: list[TransactWriteItemTypeDef] = [self._put(dedupe)]
            if charge is not None:
                room = str(charge["room"])
                charge_item: Item = {
                    "pk": _s(f"{property_id}#charges#{room}"),
                    "sk": _s(seq_key(first_seq)),
                    "expires_at": _n(now + charge_retention_seconds),
                }
                for key in ("datetime", "booking_uid", "account", "article", "description", "total"):
                    if charge.get(key) is not None:
                        charge_item[key] = _s(str(charge[key]))
                items.append(self._put(charge_item))
            return items

        return self._append(f"{property_id}#inbound", [entry], extra=extra, dedupe_first_extra=True)[0]

    def get_answer(self, property_id: str, request_id: str) -> StoredAnswer | None:
        item = self._get(f"{property_id}#dedupe", request_id)
        if item is None:
            return None
        return StoredAnswer(seq=int(item["seq"]["N"]), answer=json.loads(item["answer"]["S"]))

    def get_inbound(self, property_id: str, seq: int) -> InboundEntry | None:
        item = self._get(f"{property_id}#inbound", seq_key(seq))
        return _inbound(item) if item else None

    def mark_published(self, property_id: str, seq: int) -> None:
        self._call(
            "UpdateItem",
            lambda: self.client.update_item(
                TableName=self.table,
                Key={"pk": _s(f"{property_id}#inbound"), "sk": _s(seq_key(seq))},
                UpdateExpression="REMOVE publish_pending",
                ConditionExpression="attribute_exists(pk)",
            ),
        )

    def list_inbound(self, property_id: str, *, after: int, limit: int) -> list[InboundEntry]:
        items = self._query_range(f"{property_id}#inbound", after + 1, MAX_SEQ, limit)
        now = int(self._clock())
        # moto (and DynamoDB for up to a few days) keeps expired items: filter them on read.
        return [_inbound(item) for item in items if int(item["expires_at"]["N"]) > now]

    def charges(self, property_id: str, room: str) -> list[Charge]:
        """Every unexpired charge posted on a room, oldest first."""
        now = int(self._clock())
        out: list[Charge] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": _s(f"{property_id}#charges#{room}")},
        }
        while True:
            page = self._call("Query", lambda: self.client.query(**kwargs))
            for item in page.get("Items", []):
                if int(item["expires_at"]["N"]) <= now:
                    continue
                out.append(
                    Charge(
                        seq=int(item["sk"]["S"]),
                        datetime=item["datetime"]["S"],
                        booking_uid=_opt(item, "booking_uid"),
                        account=_opt(item, "account"),
                        article=_opt(item, "article"),
                        description=item["description"]["S"],
                        total=item["total"]["S"],
                    )
                )
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # --- internals --------------------------------------------------------------------------------

    def _append(
        self,
        pk: str,
        payloads: Sequence[Item],
        *,
        extra: Callable[[int], list[TransactWriteItemTypeDef]] | None = None,
        dedupe_first_extra: bool = False,
    ) -> list[int]:
        for attempt in range(APPEND_ATTEMPTS):
            first = self._tail(pk) + 1
            seqs = list(range(first, first + len(payloads)))
            items = [
                self._put({"pk": _s(pk), "sk": _s(seq_key(seq)), **payload})
                for seq, payload in zip(seqs, payloads, strict=True)
            ]
            extras = extra(first) if extra else []
            if len(items) + len(extras) > MAX_TRANSACTION_ITEMS:
                raise ValueError(f"{len(items) + len(extras)} items exceed one transaction")
            transaction = [*items, *extras]
            try:
                self._call(
                    "TransactWriteItems",
                    functools.partial(self.client.transact_write_items, TransactItems=transaction),
                )
                return seqs
            except ClientError as exc:
                if _code(exc) != "TransactionCanceledException":
                    raise
                cancellation: list[dict[str, Any]] = exc.response.get("CancellationReasons", [])  # type: ignore[assignment]
                reasons = [str(r.get("Code", "None")) for r in cancellation]
                duplicate = dedupe_first_extra and len(reasons) > len(items)
                if duplicate and reasons[len(items)] == "ConditionalCheckFailed":
                    raise DuplicateRequest(cancellation[len(items)].get("Item")) from exc
                # Lost the race for these sequence numbers (or a transaction conflict): re-read the tail.
                logger.debug("append raced", extra={"attempt": attempt, "reasons": reasons})
                time.sleep(random.uniform(0, 0.02 * (2**attempt)))  # noqa: S311 - jitter, not crypto
        raise StorageBusy("storage busy: too many concurrent writers, retry later")

    def _tail(self, pk: str) -> int:
        items = self._query_range(pk, 0, MAX_SEQ, 1, newest_first=True)
        return int(items[0]["sk"]["S"]) if items else 0

    def _query_range(
        self, pk: str, lo: int, hi: int, limit: int, *, newest_first: bool = False
    ) -> list[dict[str, Any]]:
        """Log items with lo <= seq <= hi (strongly consistent), oldest first unless ``newest_first``."""
        if lo > hi:
            return []
        page = self._call(
            "Query",
            lambda: self.client.query(
                TableName=self.table,
                KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
                ExpressionAttributeValues={
                    ":pk": _s(pk),
                    ":lo": _s(seq_key(lo)),
                    ":hi": _s(seq_key(hi)),
                },
                ScanIndexForward=not newest_first,
                Limit=limit,
                ConsistentRead=True,
            ),
        )
        return list(page.get("Items", []))

    def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        item = self._call(
            "GetItem",
            lambda: self.client.get_item(
                TableName=self.table, Key={"pk": _s(pk), "sk": _s(sk)}, ConsistentRead=True
            ),
        ).get("Item")
        return dict(item) if item else None

    def _put(self, item: Item) -> TransactWriteItemTypeDef:
        return {
            "Put": {
                "TableName": self.table,
                "Item": item,
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }

    @staticmethod
    def _call(operation: str, call: Callable[[], Any]) -> Any:
        """Run one DynamoDB call; throttling and outages become StorageBusy (HTTPPMS 100, HTTP 503)."""
        try:
            return call()
        except ClientError as exc:
            if _code(exc) in _RETRYABLE_CODES:
                logger.warning("dynamodb unavailable", extra={"operation": operation, "error": _code(exc)})
                raise StorageBusy(f"storage unavailable ({_code(exc)}), retry later") from exc
            raise
        except BotoCoreError as exc:
            logger.warning("dynamodb unreachable", extra={"operation": operation, "error": type(exc).__name__})
            raise StorageBusy("storage unreachable, retry later") from exc


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _opt(item: Mapping[str, Any], key: str) -> str | None:
    return item[key]["S"] if key in item else None


def _inbound(item: Mapping[str, Any]) -> InboundEntry:
    return InboundEntry(
        seq=int(item["sk"]["S"]),
        action=item["action"]["S"],
        request=json.loads(item["request"]["S"]),
        request_id=item["request_id"]["S"],
        received_at=int(item["received_at"]["N"]),
        publish_pending="publish_pending" in item,
    )
