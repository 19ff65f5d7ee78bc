"""Works through one property's UCM outbox strictly in sequence order, under a lease.

A trigger (the outbox write's stream record, or the sweeper) only says "look": the outbox is the truth, so a
duplicated trigger finds the lease taken or nothing due, and a lost one is caught by the next sweep.

The lease is what keeps commands in order: nothing is sent without LEASE_SECONDS/2 of it left (a run that
goes on longer renews it, and stops with LeaseLost if another dispatcher took over after it ran out), and no
UCM request may wait longer than the lease has left. A late send from a dispatcher whose lease ran out could
otherwise land after the next dispatcher's later command (a check-in after its check-out).

Per command, by the UCM's answer (ucm/client.py classifies the codes as DESIGN.md says):
- ok: done, next command.
- reconcile: 19 on checkin → send ``update`` with the same fields; 20 on update → send ``checkin``; 20 on mov →
  ``checkin`` at the destination (the command's fallback); the follow-up's answer decides.
- shorten (25/26): names shortened to the configured limit (never dropped) and resent once.
- retry (22, timeouts, connection errors, HTTP 5xx): the head waits with exponential backoff (capped) and
  nothing behind it is sent (a checkout never overtakes its check-in); after ``ucm.max_attempts`` it is parked.
- park (24, address and format errors): kept, visible, alarmed; the property's later commands go on.
- hold (16, 21: credentials or PMS API disabled): stop sending to the site, alarm, probe again later.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pms_connector.observability import logger, metrics, tracer
from pms_connector.outbox import OutboxCommand, OutboxStore

if TYPE_CHECKING:
    from pms_connector.config import PropertyConfig, UcmSettings
    from pms_connector.ucm.client import UcmClient, UcmReply

LEASE_SECONDS = 60
BATCH = 10
BACKOFF_BASE_SECONDS = 5
BACKOFF_CAP_SECONDS = 900
HOLD_PROBE_SECONDS = 300
SAFETY_MARGIN_MS = 3_000


@dataclass
class DispatchResult:
    sent: int = 0
    ok: int = 0
    retried: int = 0
    parked: int = 0
    held: bool = False
    busy: bool = False  # another dispatcher holds the lease
    next_due: int | None = None
    outcomes: list[str] = field(default_factory=list)
    link_up: bool | None = None  # did the UCM answer usably (None: not contacted)
    recovered: bool = False  # it answered after failing before (a retried command, a held site's probe)


def backoff_seconds(attempts: int) -> int:
    """5 s, 10 s, 20 s … capped at 15 min, with up to 20 % jitter so sites that failed together spread out."""
    base = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return int(base * (1 + random.uniform(0, 0.2)))  # noqa: S311 - jitter, not crypto


@tracer.capture_method(capture_response=False, capture_error=False)
def dispatch_property(
    store: OutboxStore,
    prop: PropertyConfig,
    client: UcmClient,
    *,
    owner: str,
    clock: Callable[[], float] = time.time,
    remaining_ms: Callable[[], int] = lambda: 60_000,
) -> DispatchResult:
    """Send the property's due commands in order until none is due, time runs short, or the site is held."""
    result = DispatchResult()
    ucm = prop.ucm
    if ucm is None:
        return result
    tracer.put_annotation("property", prop.id)
    now = int(clock())
    meta = store.acquire(prop.id, owner, now=now, lease_seconds=LEASE_SECONDS)
    if meta is None:
        result.busy = True
        return result
    probing = meta.held_until > 0
    if meta.held_until > now:
        store.release(prop.id, owner)
        store.set_due(prop.id, meta.held_until, meta.done_up_to)  # the sweeper waits for the probe time
        result.held, result.next_due, result.link_up = True, meta.held_until, False
        return result
    lease = _Lease(store, prop.id, owner, clock, now + LEASE_SECONDS)
    try:
        return _dispatch_pending(store, prop, ucm, client, result, owner=owner, done=meta.done_up_to,
                                 probing=probing, clock=clock, lease=lease, remaining_ms=remaining_ms)
    finally:
        logger.set_correlation_id(None)


@dataclass
class _Lease:
    """Our hold on the property's outbox, as far as we know it: renewed before it runs low."""

    store: OutboxStore
    property_id: str
    owner: str
    clock: Callable[[], float]
    until: float

    def remaining_ms(self) -> int:
        return int((self.until - self.clock()) * 1000)

    def keep(self) -> None:
        """Renew when less than half is left (one UpdateItem, only in runs longer than LEASE_SECONDS / 2);
        LeaseLost when another dispatcher took it over meanwhile."""
        if self.remaining_ms() < LEASE_SECONDS * 500:
            now = int(self.clock())
            self.store.renew(self.property_id, self.owner, now=now, lease_seconds=LEASE_SECONDS)
            self.until = now + LEASE_SECONDS

    def send_timeout(self, timeout_s: float) -> float:
        """``timeout_s``, renewed first and capped so one UCM request (httpx's timeouts apply per phase, and
        Digest makes two round trips) ends before the lease does."""
        self.keep()
        return min(timeout_s, max(0.5, (self.remaining_ms() - 1000) / 3000))


def _dispatch_pending(store: OutboxStore, prop: PropertyConfig, ucm: UcmSettings, client: UcmClient,
                      result: DispatchResult, *, owner: str, done: int, probing: bool,
                      clock: Callable[[], float], lease: _Lease, remaining_ms: Callable[[], int]) -> DispatchResult:
    from pms_connector.ucm.commands import command_from_dict, with_short_names

    while True:
        batch = store.pending(prop.id, after=done, limit=BATCH)
        if not batch:
            store.release(prop.id, owner)
            store.clear_due(prop.id, done)
            return result
        for position, command in enumerate(batch):
            now = int(clock())
            if command.next_attempt_at > now:
                store.release(prop.id, owner)
                store.set_due(prop.id, command.next_attempt_at, batch[-1].seq, since=command.created_at)
                result.next_due = command.next_attempt_at
                return result
            if remaining_ms() < SAFETY_MARGIN_MS + int(ucm.read_timeout_seconds * 1000):
                store.release(prop.id, owner)
                store.set_due(prop.id, now, batch[-1].seq, since=command.created_at)
                result.next_due = now
                return result
            if _wake_time_passed(command, prop, now):
                # Never program a wake-up after its time (the UCM was unreachable until then): the wake-up's
                # result check reports F, and nothing rings late.
                store.park(prop.id, owner, command, "wake-up time passed before the UCM could be programmed",
                           release=False, status="expired")
                logger.warning("ucm wake-up expired unsent", extra={"seq": command.seq})
                metrics.add_metric(name="UcmWakeupExpired", unit="Count", value=1)
                done = command.seq
                continue
            # The last command the query knows of: finishing it may let the lease go in the same call.
            last_known = position == len(batch) - 1 and len(batch) < BATCH
            # Every log line about this command carries the id of the request that caused it.
            logger.set_correlation_id(command.correlation_id)
            reply = _send_reconciled(client, command, command_from_dict, with_short_names, ucm.name_max_length,
                                     lambda: lease.send_timeout(_timeout(remaining_ms)))
            result.sent += 1
            result.outcomes.append(reply.outcome)
            if reply.sent:  # what the site's link did; a command that never left says nothing about it
                result.link_up = reply.http_status is not None and reply.outcome != "hold"
                result.recovered = result.recovered or (result.link_up and (command.attempts > 0 or probing))
            _observe(prop.id, command, reply)
            if reply.outcome == "ok":
                done, result.ok = command.seq, result.ok + 1
                if last_known and not probing:
                    if store.finish(prop.id, owner, done):
                        return result  # the common case: 3 AWS calls for the whole invocation
                    continue  # commands arrived meanwhile: finish() moved the cursor, kept the lease
                store.complete(prop.id, owner, done, release=False, clear_hold=probing)
                probing = False
                continue
            if reply.outcome == "hold":
                until = now + HOLD_PROBE_SECONDS
                store.hold(prop.id, owner, until=until, reason=f"[{reply.code}] {reply.text}")
                store.set_due(prop.id, until, batch[-1].seq, since=command.created_at)
                logger.error("ucm site held", extra={"code": reply.code, "seq": command.seq})
                metrics.add_metric(name="UcmSiteHeld", unit="Count", value=1)
                result.held, result.next_due = True, until
                return result
            attempts = command.attempts + 1
            if reply.outcome == "retry" and attempts < ucm.max_attempts:
                next_at = now + backoff_seconds(attempts)
                store.reschedule(prop.id, command, next_attempt_at=next_at, error=_error(reply))
                store.release(prop.id, owner)
                store.set_due(prop.id, next_at, batch[-1].seq, since=command.created_at)
                result.retried, result.next_due = result.retried + 1, next_at
                return result
            # park: a code retrying cannot fix, or out of attempts
            store.park(prop.id, owner, command, _error(reply), release=False)
            logger.error("ucm command parked", extra={"seq": command.seq, "action": command.action,
                                                      "code": reply.code, "attempts": attempts})
            metrics.add_metric(name="UcmCommandParked", unit="Count", value=1)
            done, result.parked = command.seq, result.parked + 1


def _send_reconciled(
    client: UcmClient,
    command: OutboxCommand,
    from_dict: Callable[..., object],
    shorten: Callable[..., object],
    name_limit: int,
    timeout_s: Callable[[], float],
) -> UcmReply:
    """Send one outbox command, then the follow-ups its answer calls for (reconcile, shorter names); each
    request waits at most ``timeout_s()`` per phase."""
    from pms_connector.ucm.client import UcmReply

    try:
        ucm_command = from_dict(command.action, command.fields)
    except ValueError as exc:  # a stored command this version cannot send: park it, do not block the site
        return UcmReply(code=None, text=f"unsendable command: {exc}", outcome="park", http_status=None, sent=False)
    reply = client.send(ucm_command, timeout_s=timeout_s())  # type: ignore[arg-type]
    # 25/26: the UCM's name limit is below the configured one. Shorter and shorter, never empty.
    for limit in (name_limit, 24, 16, 10, 6):
        if reply.outcome != "shorten" or limit > name_limit:
            continue
        ucm_command = shorten(ucm_command, limit)
        reply = client.send(ucm_command, timeout_s=timeout_s())  # type: ignore[arg-type]
    # The UCM's state differs from the one the command was planned on: follow it to the intended state.
    # At most two steps: mov [20] (the source is empty) → checkin at the destination [19] (the guest is there
    # already: a mov sent again after its completion was lost) → update there with the guest's data.
    action: str = command.action
    fields: Mapping[str, str] = command.fields
    for _ in range(2):
        if reply.outcome != "reconcile":
            return reply
        step = _reconcile_step(action, fields, command)
        if step is None:
            return reply
        logger.info("ucm reconcile", extra={"seq": command.seq, "action": action, "code": reply.code,
                                            "then": step[0]})
        action, fields = step
        reply = client.send(from_dict(action, fields), timeout_s=timeout_s())  # type: ignore[arg-type]
    return reply


def _reconcile_step(action: str, fields: Mapping[str, str], command: OutboxCommand
                    ) -> tuple[str, Mapping[str, str]] | None:
    """The command that brings the UCM to the intended state after a 'reconcile' answer to ``action``."""
    if action == "checkin":  # 19: already checked in → the data is sent as an update
        return "update", fields
    if action == "update" and command.action == "update":  # 20: not checked in → check in with the same data
        return "checkin", fields
    if action == "mov" and command.fallback:  # 20: the source is empty → check in at the destination
        return "checkin", command.fallback
    return None


def _wake_time_passed(command: OutboxCommand, prop: PropertyConfig, now: int) -> bool:
    fields = command.fields
    if command.action != "wakeup" or fields.get("w_action") != "1" or not fields.get("w_date"):
        return False
    from datetime import datetime

    try:
        local = datetime.strptime(fields["w_date"] + fields.get("w_time", "0000"), "%Y%m%d%H%M")
    except ValueError:
        return False
    return local.replace(tzinfo=prop.zone).timestamp() + 60 <= now


def _timeout(remaining_ms: Callable[[], int]) -> float:
    return max(1.0, (remaining_ms() - SAFETY_MARGIN_MS) / 1000)


def _error(reply: UcmReply) -> str:
    code = "" if reply.code is None else f"[{reply.code}] "
    status = f" (HTTP {reply.http_status})" if reply.http_status and reply.http_status != 200 else ""
    return f"{code}{reply.text}{status}".strip()


def _observe(property_id: str, command: OutboxCommand, reply: UcmReply) -> None:
    if reply.outcome == "ok":
        metrics.add_metric(name="UcmCommandOk", unit="Count", value=1)
    elif reply.outcome == "retry":
        metrics.add_metric(name="UcmCommandRetried", unit="Count", value=1)
    logger.info("ucm command answered", extra={"property": property_id, "seq": command.seq,
                                                "action": command.action, "code": reply.code,
                                                "outcome": reply.outcome, "attempt": command.attempts + 1})
