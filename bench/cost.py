"""What one hotel costs per month on AWS, from the connector's measured work per event and AWS list prices.

    python bench/cost.py                       # the issue's hotel: 300 rooms, pmslink every 5 s, 2,000 events/day
    python bench/cost.py --properties 10 --poll-seconds 2 --json

The model multiplies a day of a hotel's traffic by what each request costs the connector (AWS calls, capacity
units, log bytes, Lambda time), then by the list prices below. Deployment-wide costs (the sweeper's rate rule,
alarms, the alarm topic's KMS key, the dashboard, metrics without a property dimension) are shared by
``--properties`` hotels. The key is priced as it is from its third year on, after the two yearly rotations KMS
bills (``--key-rotations 0`` for its first year). The VPN (infra/vpn.yaml, infra/vpn-site.yaml, with each
site's tunnel-state alarms) is priced separately: the issue's goal (under $3) excludes it.

Where the per-request figures come from:
- AWS calls per request are asserted by the tests: tests/integration/test_aws_calls.py (ingest, GET_REQUEST,
  inbound), tests/integration/test_dispatcher.py (3 calls per dispatched command), test_sweeper.py (2 queries
  per sweep), tests/integration/test_wakeups.py (2 Scheduler calls per wake-up).
- Write units of an ingest request are measured by bench/capacity.py (the spec's example records through the
  real handler on moto, priced with DynamoDB's item-size rules). The other capacity figures follow the same
  rules (1 RRU per strongly consistent 4 KB read, 1 WRU per started KB written, transactions count twice)
  with items of about 1 KB (a FIFO record, a command, a booking or room state): estimates, not measured.
- Log bytes per invocation: Lambda's START/END/REPORT lines, one Powertools JSON line per request (an empty
  GET_REQUEST writes none), the EMF blob when a metric is sent, the HTTP API access log line.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

# --- AWS list prices, us-east-1, on-demand, without free tiers (checked against the AWS pricing pages in
# --- November 2026; prices change: check https://aws.amazon.com/pricing before relying on them) ------------
PRICES = {
    "apigw_http_per_million": 1.00,          # HTTP API, first 300 million requests a month
    "lambda_request_per_million": 0.20,
    "lambda_arm_gb_second": 0.0000133334,    # Graviton (arm64)
    "dynamodb_wru_per_million": 0.625,       # on-demand write request units
    "dynamodb_rru_per_million": 0.125,       # on-demand read request units
    "dynamodb_storage_gb_month": 0.25,
    "dynamodb_pitr_gb_month": 0.20,          # continuous backups (point-in-time recovery)
    "logs_ingest_per_gb": 0.50,              # CloudWatch Logs standard class
    "logs_storage_gb_month": 0.03,
    "metric_month": 0.30,                    # custom metric, first 10,000, prorated by the hour it is sent
    "alarm_metric_month": 0.10,              # standard resolution, per metric in the alarm
    "dashboard_month": 3.00,
    "secret_month": 0.40,
    "secrets_api_per_10k": 0.05,
    "eventbridge_event_per_million": 1.00,   # custom events
    "scheduler_invocation_per_million": 1.00,
    "xray_trace_per_million": 5.00,          # traces recorded
    "sns_publish_per_million": 0.50,
    # The alarm topic's customer managed KMS key (template.yaml AlarmTopicKey; CloudWatch cannot publish to a
    # topic under the AWS managed aws/sns key). Per key and month, prorated by the hour; with automatic
    # rotation (yearly) the first and the second rotation each add the same again, later ones nothing.
    "kms_key_month": 1.00,
    "kms_key_rotation_month": 1.00,
    "kms_request_per_10k": 0.03,             # symmetric requests, beyond the free tier
    # VPN, reported apart (excluded from the goal)
    "vpn_connection_hour": 0.05,
    "tgw_attachment_hour": 0.05,
    "tgw_data_per_gb": 0.02,
    "interface_endpoint_az_hour": 0.01,
}
HOURS_PER_MONTH = 730
DAYS_PER_MONTH = 30.4

# --- what the deployment is made of (template.yaml) -----------------------------------------------------
LAMBDA_GB = 0.5                # MemorySize 512
ALARM_METRICS = 22             # 8 single-metric alarms, Errors + Throttles of each of 6 functions, table throttles (2)
ALARM_NOTIFICATIONS = 1_000    # alarm and OK notifications a month (generous), each 2 KMS requests
SITE_ALARMS = 2                # infra/vpn-site.yaml: both tunnels down, one tunnel down (billed with the VPN)
SHARED_METRICS = 31            # metrics without a property dimension (service-only counters, InboundRequests x action)
INTERFACE_ENDPOINTS = 5        # Secrets Manager, SSM, Logs, Monitoring, EventBridge (DynamoDB is a free gateway)
AZS = 2


@dataclass(frozen=True)
class Hotel:
    rooms: int = 300
    poll_seconds: float = 5.0           # pmslink GET_REQUEST interval
    events_per_day: int = 2_000         # PMS events into the ingest API
    events_per_request: float = 1.0     # a PMS that batches sends fewer requests
    booking_share: float = 0.4          # BOOKING records among the events (the rest: RS, MUR, DND, COS, ...)
    commands_per_event: float = 0.5     # UCM commands per PMS event (check-in/out, moves, wake-ups, COS)
    inbound_per_day: int = 600          # pmslink requests other than GET_REQUEST (calls, charges, RS, MUR, DND)
    wakeups_per_day: int = 20
    properties: int = 50                # hotels sharing one deployment
    warm_containers: int = 5            # containers reading this hotel's secret (httppms, ingest, dispatcher, ...)
    secret_cache_seconds: int = 900     # CONFIG_SECRET_CACHE_SECONDS
    api_tracing: bool = False           # ApiTracing parameter
    sites: int = 1                      # VPN connections for this hotel
    trouble_share: float = 0.05         # share of hours with a backlog, an unreachable UCM or a wake-up at risk
    key_rotations: int = 2              # rotations the alarm key has had: 0 in its first year, 2 from its third on


@dataclass(frozen=True)
class Work:
    """What one request costs the connector: AWS calls (from the tests), capacity, time, log bytes."""

    rru: float = 0.0
    wru: float = 0.0
    lambda_ms: float = 0.0
    log_bytes: int = 0
    api_request: bool = False
    events: int = 0


PLATFORM_LOG = 330       # START, END and REPORT lines of one invocation (none for httppms: SystemLogLevel WARN)
JSON_LINE = 650          # one Powertools line with the Lambda context keys
EMF_BLOB = 350           # one metrics blob
ACCESS_LOG = 300         # one HTTP API access log line

WORK = {
    # GetItem cursor + Query FIFO (both strongly consistent, nothing found): 2 RRU; no log line, no metric.
    "get_request_empty": Work(rru=2, lambda_ms=15, log_bytes=ACCESS_LOG, api_request=True),
    # ... plus the records read (1 KB each) and the cursor update (UpdateItem, 1 WRU): per delivered record.
    "get_request_record": Work(rru=1.25, wru=1, lambda_ms=25,
                               log_bytes=ACCESS_LOG + JSON_LINE + EMF_BLOB, api_request=True),
    # Query tail + BatchGetItem state + TransactWriteItems. Write units measured by bench/capacity.py: a
    # BOOKING check-in 12 (FIFO record, booking, room, UCM command, due marker, the request's marker),
    # RS/MUR/COS/WMSG/DND 6.
    "ingest_booking": Work(rru=3, wru=12, lambda_ms=60,
                           log_bytes=PLATFORM_LOG + ACCESS_LOG + JSON_LINE + EMF_BLOB, api_request=True),
    "ingest_other": Work(rru=3, wru=6, lambda_ms=50,
                         log_bytes=PLATFORM_LOG + ACCESS_LOG + JSON_LINE + EMF_BLOB, api_request=True),
    # Lease UpdateItem + Query pending + finish (UpdateItem/transaction): 3 calls; one UCM round trip over VPN.
    "ucm_command": Work(rru=1, wru=4, lambda_ms=350, log_bytes=PLATFORM_LOG + 2 * JSON_LINE + 2 * EMF_BLOB),
    # Query dedupe + TransactWriteItems (inbound log, dedupe, charge) + PutEvents + UpdateItem publish mark.
    "inbound_request": Work(rru=1, wru=7, lambda_ms=60,
                            log_bytes=ACCESS_LOG + JSON_LINE + 2 * EMF_BLOB, api_request=True,
                            events=1),
    # Stream arming (2 Scheduler calls), at-risk check, result (GetItem, BatchGetItem, one transaction).
    "wakeup": Work(rru=4, wru=8, lambda_ms=250, log_bytes=3 * (PLATFORM_LOG + JSON_LINE + EMF_BLOB), events=1),
}


def monthly(hotel: Hotel) -> dict[str, dict[str, float]]:
    """Dollars per month for one hotel, by line item: {"per_property": {...}, "shared": {...}, "vpn": {...}}."""
    p = PRICES
    day_counts = {
        "get_request_empty": max(0.0, 86_400 / hotel.poll_seconds - hotel.events_per_day),
        "get_request_record": float(hotel.events_per_day),  # worst case: every record in its own poll
        "ingest_booking": hotel.events_per_day * hotel.booking_share / hotel.events_per_request,
        "ingest_other": hotel.events_per_day * (1 - hotel.booking_share) / hotel.events_per_request,
        "ucm_command": hotel.events_per_day * hotel.commands_per_event,
        "inbound_request": float(hotel.inbound_per_day),
        "wakeup": float(hotel.wakeups_per_day),
    }
    month = {kind: n * DAYS_PER_MONTH for kind, n in day_counts.items()}
    rru = sum(WORK[k].rru * n for k, n in month.items())
    wru = sum(WORK[k].wru * n for k, n in month.items())
    invocations = sum(month.values()) + month["wakeup"] * 2  # a wake-up runs the supervisor three times
    gb_seconds = sum(WORK[k].lambda_ms / 1000 * LAMBDA_GB * n for k, n in month.items())
    log_gb = sum(WORK[k].log_bytes * n for k, n in month.items()) / 1e9
    api_requests = sum(n for k, n in month.items() if WORK[k].api_request)
    # FIFO records (kept queue_retention + archive days), states, commands (14 days): a few KB per event.
    stored_gb = hotel.events_per_day * 37 * 3_000 / 1e9 + hotel.rooms * 4_000 / 1e9
    traced = month["ucm_command"] + month["wakeup"] * 3 + (api_requests if hotel.api_tracing else 0)
    secret_reads = hotel.warm_containers * 30.4 * 86_400 / hotel.secret_cache_seconds
    per_property = {
        "HTTP API requests": api_requests / 1e6 * p["apigw_http_per_million"],
        "Lambda requests": invocations / 1e6 * p["lambda_request_per_million"],
        "Lambda duration (arm64)": gb_seconds * p["lambda_arm_gb_second"],
        "DynamoDB reads": rru / 1e6 * p["dynamodb_rru_per_million"],
        "DynamoDB writes": wru / 1e6 * p["dynamodb_wru_per_million"],
        "DynamoDB storage + PITR": stored_gb * (p["dynamodb_storage_gb_month"] + p["dynamodb_pitr_gb_month"]),
        "CloudWatch Logs (ingest + 30 days)": log_gb * (p["logs_ingest_per_gb"] + p["logs_storage_gb_month"]),
        # Five metrics carry the property (backlog age, parked, UCM unreachable, wake-ups at risk / failed), sent
        # only in the hours a hotel is in trouble: assumed 5 % of hours (metrics are billed by the hour).
        "Metrics with the property dimension": p["metric_month"] * 5 * hotel.trouble_share,
        "Secrets Manager secret + reads": p["secret_month"] + secret_reads / 1e4 * p["secrets_api_per_10k"],
        "EventBridge events + Scheduler": (sum(WORK[k].events * n for k, n in month.items()) / 1e6
                                           * p["eventbridge_event_per_million"]
                                           + month["wakeup"] * 2 / 1e6 * p["scheduler_invocation_per_million"]),
        "X-Ray traces": traced / 1e6 * p["xray_trace_per_million"],
        "SSM Parameter Store (standard)": 0.0,
    }
    sweeps = 30.4 * 1_440
    shared_total = {
        "Sweeper (every minute, 2 queries)": sweeps / 1e6 * p["lambda_request_per_million"]
        + sweeps * 0.2 * LAMBDA_GB * p["lambda_arm_gb_second"] + sweeps * 2 / 1e6 * p["dynamodb_rru_per_million"]
        + sweeps * (PLATFORM_LOG + EMF_BLOB + JSON_LINE) / 1e9 * p["logs_ingest_per_gb"]
        + sweeps / 1e6 * p["xray_trace_per_million"],
        # The poller's rule runs every minute too (a deployment without polling hotels: one SSM read a TTL).
        "Poller (every minute)": sweeps / 1e6 * p["lambda_request_per_million"]
        + sweeps * 0.05 * LAMBDA_GB * p["lambda_arm_gb_second"]
        + sweeps * (PLATFORM_LOG + EMF_BLOB) / 1e9 * p["logs_ingest_per_gb"]
        + sweeps / 1e6 * p["xray_trace_per_million"],
        "Scheduler (the two rate rules)": 2 * sweeps / 1e6 * p["scheduler_invocation_per_million"],
        "Alarms": ALARM_METRICS * p["alarm_metric_month"],
        "KMS key of the alarm topic (rotated yearly)": p["kms_key_month"]
        + min(hotel.key_rotations, 2) * p["kms_key_rotation_month"]
        + ALARM_NOTIFICATIONS * 2 / 1e4 * p["kms_request_per_10k"],
        "Dashboard": p["dashboard_month"],
        "Metrics without the property dimension": SHARED_METRICS * p["metric_month"],
    }
    shared = {name: value / hotel.properties for name, value in shared_total.items()}
    vpn = {
        "Site-to-Site VPN connection": hotel.sites * HOURS_PER_MONTH * p["vpn_connection_hour"],
        "Transit Gateway attachment (the site's)": hotel.sites * HOURS_PER_MONTH * p["tgw_attachment_hour"],
        "The site's tunnel-state alarms": hotel.sites * SITE_ALARMS * p["alarm_metric_month"],
        "Share of the VPC's TGW attachment + endpoints": (HOURS_PER_MONTH * p["tgw_attachment_hour"]
                                                          + INTERFACE_ENDPOINTS * AZS * HOURS_PER_MONTH
                                                          * p["interface_endpoint_az_hour"]) / hotel.properties,
    }
    return {"per_property": per_property, "shared": shared, "vpn": vpn}


def report(hotel: Hotel) -> dict[str, object]:
    lines = monthly(hotel)
    connector = sum(lines["per_property"].values()) + sum(lines["shared"].values())
    return {"hotel": hotel.__dict__, "prices": PRICES, "lines": lines,
            "connector_per_property_month": round(connector, 2),
            "vpn_per_property_month": round(sum(lines["vpn"].values()), 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = Hotel()
    for name, value in defaults.__dict__.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action="store_true", default=value)
        else:
            parser.add_argument(flag, type=type(value), default=value)
    parser.add_argument("--json", action="store_true", help="print the whole model as JSON")
    args = vars(parser.parse_args(argv))
    as_json = args.pop("json")
    hotel = Hotel(**args)
    result = report(hotel)
    if as_json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"One hotel: {hotel.rooms} rooms, pmslink every {hotel.poll_seconds:g} s, {hotel.events_per_day:,} PMS "
          f"events/day, {hotel.inbound_per_day} pmslink requests/day, {hotel.wakeups_per_day} wake-ups/day; "
          f"{hotel.properties} hotels per deployment. US$ per month, us-east-1 list prices.\n")
    lines = result["lines"]
    assert isinstance(lines, dict)
    for title, key in (("This hotel's traffic", "per_property"), ("Its share of the deployment", "shared"),
                       ("VPN (excluded from the goal)", "vpn")):
        print(title)
        for name, value in sorted(lines[key].items(), key=lambda item: -item[1]):
            print(f"  {name:<45} {value:>8.2f}")
    print(f"\n  {'Connector, per hotel and month':<45} {result['connector_per_property_month']:>8.2f}")
    print(f"  {'VPN, per hotel and month':<45} {result['vpn_per_property_month']:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
