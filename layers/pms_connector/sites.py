"""What the dispatcher and sweeper functions share: one UCM client per site, kept warm across invocations,
and the loop that dispatches a set of properties within the invocation's time."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import TYPE_CHECKING

from pms_connector.errors import ConnectorError
from pms_connector.observability import logger, metric_by, metrics
from pms_connector.outbox import LeaseLost

if TYPE_CHECKING:
    from pms_connector.config import PropertyConfig, UcmSettings
    from pms_connector.directory import PropertyDirectory
    from pms_connector.dispatcher import DispatchResult
    from pms_connector.outbox import OutboxStore
    from pms_connector.ucm.client import UcmClient

_clients: dict[str, tuple[UcmSettings, UcmClient]] = {}


def client_for(prop: PropertyConfig) -> UcmClient:
    """The site's client, reused while its settings are unchanged (so the digest nonce stays warm)."""
    from pms_connector.ucm.client import UcmClient

    assert prop.ucm is not None
    cached = _clients.get(prop.id)
    if cached and cached[0] == prop.ucm:
        return cached[1]
    if cached:
        cached[1].close()
    client = UcmClient(prop.ucm)
    _clients[prop.id] = (prop.ucm, client)
    return client


def dispatch_properties(
    property_ids: Iterable[str],
    *,
    store: OutboxStore,
    directory: PropertyDirectory,
    owner: str,
    remaining_ms: Callable[[], int],
    clock: Callable[[], float] = time.time,
) -> dict[str, DispatchResult]:
    """Dispatch each property's outbox in turn; one property's trouble never stops the others."""
    from pms_connector.dispatcher import SAFETY_MARGIN_MS, dispatch_property

    results: dict[str, DispatchResult] = {}
    for pid in dict.fromkeys(property_ids):
        if remaining_ms() < 2 * SAFETY_MARGIN_MS:
            logger.warning("out of time; the sweeper picks up the rest", extra={"left": pid})
            break
        logger.append_keys(property=pid)
        try:
            prop = directory.get(pid)
            if prop is None and not directory.gone(pid):
                # An invalid config (the directory logged why): the commands wait, visible and alarmed, until
                # it is fixed; nothing is dropped for a typo.
                logger.error("outbox of a property whose config is invalid waits", extra={"property": pid})
                metrics.add_metric(name="PropertyConfigInvalid", unit="Count", value=1)
                continue
            if prop is None or prop.ucm is None:
                # Retired (its config deleted with its stack) or its UCM removed: nothing will ever send these.
                dropped, parked = store.retire(pid)
                logger.warning("outbox of a property without UCM settings retired", extra={
                    "property": pid, "known": prop is not None, "due_marker": dropped, "parked": parked})
                metrics.add_metric(name="OutboxRetired", unit="Count", value=1)
                continue
            results[pid] = result = dispatch_property(store, prop, client_for(prop), owner=owner, clock=clock,
                                                      remaining_ms=remaining_ms)
            # Sent only when it says something (down, or back up after being down): an idle or healthy site
            # costs no metric. The dashboard graphs it per property; 1 = unreachable or refusing the PMS API.
            if result.link_up is False:
                metric_by("UcmUnreachable", 1, property=pid)
            elif result.recovered:
                metric_by("UcmUnreachable", 0, property=pid)
        except (ConnectorError, LeaseLost) as exc:
            # The outbox and its due marker are untouched: the next sweep tries again.
            logger.warning("dispatch deferred", extra={"property": pid, "error": type(exc).__name__})
            metrics.add_metric(name="DispatchDeferred", unit="Count", value=1)
        finally:
            logger.remove_keys(["property"])
    return results


def report_backlog(store: OutboxStore, now: int) -> list[str]:
    """Emit the outbox backlog (per property and overall) and return the properties due now.

    Two queries whatever the number of properties: the due markers and the parked markers. A property with
    neither has no backlog and emits nothing (alarms treat missing data as fine)."""
    markers = store.backlog()
    parked = store.parked_counts()
    for marker in markers:
        metric_by("OutboxOldestPendingAgeSeconds", max(0, now - marker.since), "Seconds",
                  property=marker.property_id)
    for pid, count in parked.items():
        metric_by("OutboxParkedCommands", count, property=pid)
    oldest = max((now - m.since for m in markers), default=0)
    metrics.add_metric(name="OutboxOldestPendingAgeSeconds", unit="Seconds", value=max(0, oldest))
    metrics.add_metric(name="OutboxParkedCommands", unit="Count", value=sum(parked.values()))
    metrics.add_metric(name="OutboxPropertiesWithBacklog", unit="Count", value=len(markers))
    due = [m.property_id for m in markers if m.next_due <= now]
    metrics.add_metric(name="PropertiesDue", unit="Count", value=len(due))
    logger.info("outbox backlog", extra={"with_backlog": len(markers), "due": len(due),
                                         "parked": sum(parked.values()), "oldest_seconds": max(0, oldest)})
    return due


@lru_cache(maxsize=1)
def outbox_store() -> OutboxStore:
    from pms_connector.outbox import OutboxStore
    from pms_connector.settings import get_settings

    return OutboxStore(get_settings().table_name)
