"""EventBridge adapter: inbound requests from integrated systems go to the bus for the PMS side."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from pms_connector import aws
from pms_connector.errors import BusUnavailable
from pms_connector.observability import logger
from pms_connector.store import dumps

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

EVENT_SOURCE = "pms-connector"
MAX_EVENT_BYTES = 262_144  # PutEvents: one entry, all of it, at most 256 KiB


def event_size(action: str, detail: Mapping[str, Any]) -> int:
    """The size EventBridge counts for an entry of ours: Source, DetailType and Detail in UTF-8 bytes
    (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-putevent-size.html; no Time, no Resources)."""
    return len(EVENT_SOURCE.encode()) + len(action.encode()) + len(dumps(detail).encode())


class EventPublisher:
    """Publishes one event per inbound request: source ``pms-connector``, detail-type the action."""

    def __init__(self, bus_name: str, client: EventBridgeClient | None = None) -> None:
        self.bus_name = bus_name
        self._client = client

    @property
    def client(self) -> EventBridgeClient:
        if self._client is None:
            self._client = aws.events()
        return self._client

    def publish(self, action: str, detail: Mapping[str, Any]) -> None:
        """Put one event; any failure raises BusUnavailable (the caller answers 'retry')."""
        try:
            result = self.client.put_events(
                Entries=[{"EventBusName": self.bus_name, "Source": EVENT_SOURCE, "DetailType": action,
                          "Detail": dumps(detail)}]
            )
        except (ClientError, BotoCoreError) as exc:
            logger.warning("event bus unavailable", extra={"error": type(exc).__name__})
            raise BusUnavailable("stored, but the event bus is unavailable; retry the request") from exc
        if result.get("FailedEntryCount"):
            code = result["Entries"][0].get("ErrorCode", "unknown")
            logger.warning("event not accepted by the bus", extra={"error": code})
            raise BusUnavailable(f"stored, but the event bus refused the event ({code}); retry the request")
