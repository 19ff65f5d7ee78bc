"""Wake-up supervision: the UCM rings the guest; the connector makes sure it was programmed in time, alerts
the front desk when it was not, and tells the PMS the outcome exactly once.

| item    | pk              | sk  | holds                                                                      |
|---------|-----------------|-----|----------------------------------------------------------------------------|
| wake-up | ``{pid}#wakeup``| uid | room, waketime (local), status set/cancelled, gen, seq, due_at, result     |

The ingest transaction writes the wake-up item with the room state and the UCM ``wakeup`` command (state.py),
so a wake-up is never supervised without being programmed, nor programmed without supervision. The item's
stream record then reaches the supervisor function, which creates (or updates, or deletes) two one-time
EventBridge Scheduler schedules named after property + uid, so a retried stream batch never makes a second
pair: the at-risk check (``lead`` minutes before) and the result (``grace`` minutes after). Both carry the
item's ``gen``; an invocation for an older gen, a cancelled wake-up or one already reported does nothing.

Confirmed on the UCM means: the outbox command that programs the wake-up (``seq``) is finished and was not
parked, i.e. the UCM answered it with success. The result is ``E`` when confirmed by the time it is due and
``F`` otherwise; it is written in one transaction with the pmslink FIFO record and the inbound log entry,
on the condition that no result was written before: duplicated scheduler invocations report once.

Times: the PMS gives local wall times in the property's IANA zone. A time in the spring-forward gap does
not exist; it is read as zoneinfo does (the wall clock after the jump: 02:30 → 03:30). A time in the
autumn repeat is read as its first occurrence. Schedules use ``at()`` in the property's zone, except when
the instant falls in a DST transition hour, where the property's wall time is missing or ambiguous: the
Scheduler documents that it skips times that do not exist and runs repeated times only once, so there the
schedule is written in UTC, which is exact.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from pms_connector.records import DATETIME_FORMAT

if TYPE_CHECKING:
    from pms_connector.config import PropertyConfig

WAKEUP_RETENTION_SECONDS = 7 * 86_400  # after the wake-up time
Kind = Literal["at_risk", "result"]


# --- time -------------------------------------------------------------------------------------------------

def wake_instant(waketime: str, zone: ZoneInfo) -> datetime:
    """The UTC instant of a local wall time (spring gap: the wall clock after the jump; repeat: the first)."""
    naive = datetime.strptime(waketime, DATETIME_FORMAT)
    return naive.replace(tzinfo=zone, fold=0).astimezone(UTC)


def is_regular_wall_time(naive: datetime, zone: ZoneInfo) -> bool:
    """True when the local wall time exists once: not in a spring gap, not in an autumn repeat."""
    first, second = naive.replace(tzinfo=zone, fold=0), naive.replace(tzinfo=zone, fold=1)
    if first.utcoffset() != second.utcoffset():
        return False  # ambiguous or non-existent
    return first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == naive


def schedule_at(instant: datetime, zone: ZoneInfo) -> tuple[str, str]:
    """(ScheduleExpression, ScheduleExpressionTimezone) for a one-time schedule at ``instant`` (to the minute,
    never later: the Scheduler fires within the minute)."""
    instant = instant.astimezone(UTC).replace(second=0, microsecond=0)
    local = instant.astimezone(zone).replace(tzinfo=None)
    if is_regular_wall_time(local, zone):
        return f"at({local:%Y-%m-%dT%H:%M:%S})", zone.key
    return f"at({instant:%Y-%m-%dT%H:%M:%S})", "UTC"


def parse_at(expression: str, timezone: str) -> datetime | None:
    """The instant a one-time schedule fires, as EventBridge Scheduler documents it: None for a wall time
    that does not exist in the zone (skipped); the first occurrence of a repeated one (runs once).
    ValueError for a malformed expression or an unknown zone (the local runner's scheduler uses this)."""
    if not (expression.startswith("at(") and expression.endswith(")")):
        raise ValueError(f"not a one-time schedule expression: {expression!r}")
    naive = datetime.strptime(expression[3:-1], "%Y-%m-%dT%H:%M:%S")
    zone = ZoneInfo(timezone)
    first = naive.replace(tzinfo=zone, fold=0)
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != naive:
        return None  # in the spring gap: the Scheduler skips it
    return first.astimezone(UTC)


def past_wake_issue(prop: PropertyConfig, waketime: str, now: datetime) -> str | None:
    """Why a WAKE S time cannot be supervised, or None: it must be in the future."""
    try:
        instant = wake_instant(waketime, prop.zone)
    except ValueError:
        return "not a valid date-time (YYYY-MM-DDTHH:NN:SS)"
    except OverflowError:  # year 1 east of UTC or 9999 west of it: no instant to schedule
        return f"is outside the dates that can be scheduled in {prop.timezone}"
    if instant <= now:
        local_now = now.astimezone(prop.zone).strftime(DATETIME_FORMAT)
        return f"is in the past (now {local_now} in {prop.timezone})"
    return None


# --- schedules --------------------------------------------------------------------------------------------

def schedule_name(property_id: str, uid: str, kind: Kind) -> str:
    """Stable per property + uid (so a retry never makes a second schedule), within the 64-character limit."""
    digest = hashlib.sha256(f"{property_id}\n{uid}".encode()).hexdigest()[:20]
    prefix = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in property_id)[:30]
    return f"{prefix}-{digest}-{'risk' if kind == 'at_risk' else 'result'}"


@dataclass(frozen=True)
class Wakeup:
    property_id: str
    uid: str
    room: str
    waketime: str
    status: str  # set | cancelled
    gen: int
    seq: int  # the outbox command that programs it (0: one set earlier for the same room and time)
    floor: int  # every outbox command up to here was written before this wake-up's
    due_at: int
    result: str | None = None
    inbound_seq: int | None = None
    alerted: bool = False

    @property
    def live(self) -> bool:
        return self.status == "set" and self.result is None


def wakeup_from_item(item: Mapping[str, Any]) -> Wakeup:
    def num(name: str, default: int = 0) -> int:
        return int(item[name]["N"]) if name in item else default

    return Wakeup(
        property_id=item["pk"]["S"].rsplit("#", 1)[0], uid=item["sk"]["S"], room=item["room"]["S"],
        waketime=item["waketime"]["S"], status=item["status"]["S"], gen=num("gen"), seq=num("seq"),
        floor=num("floor"), due_at=num("due_at"), result=item["result"]["S"] if "result" in item else None,
        inbound_seq=num("inbound_seq") if "inbound_seq" in item else None, alerted="alerted_at" in item,
    )


def schedule_requests(prop: PropertyConfig, wakeup: Wakeup, *, group: str, target_arn: str, role_arn: str,
                      dlq_arn: str | None, now: datetime) -> list[dict[str, Any]]:
    """The CreateSchedule arguments of a wake-up's two schedules. A check already late fires in a minute."""
    due = datetime.fromtimestamp(wakeup.due_at, UTC)
    soon = now.astimezone(UTC) + timedelta(minutes=1)
    out = []
    for kind, when, max_age in (
        ("at_risk", due - timedelta(minutes=prop.wakeup.at_risk_lead_minutes), 600),
        ("result", due + timedelta(minutes=prop.wakeup.result_grace_minutes), 6 * 3600),
    ):
        expression, timezone = schedule_at(max(when, soon), prop.zone)
        target: dict[str, Any] = {
            "Arn": target_arn, "RoleArn": role_arn,
            "Input": json.dumps({"wakeup": kind, "property": prop.id, "uid": wakeup.uid, "gen": wakeup.gen}),
            "RetryPolicy": {"MaximumEventAgeInSeconds": max_age, "MaximumRetryAttempts": 20},
        }
        if dlq_arn:
            target["DeadLetterConfig"] = {"Arn": dlq_arn}
        out.append({
            "Name": schedule_name(prop.id, wakeup.uid, kind),  # type: ignore[arg-type]
            "GroupName": group, "ScheduleExpression": expression, "ScheduleExpressionTimezone": timezone,
            "FlexibleTimeWindow": {"Mode": "OFF"}, "ActionAfterCompletion": "DELETE", "Target": target,
            "Description": f"wake-up {kind} check",
        })
    return out
