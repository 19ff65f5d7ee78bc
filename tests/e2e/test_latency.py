"""Ingest → UCM latency through the local runner (stream doorbell, dispatcher, simulator). Slow: `make test-slow`."""

from __future__ import annotations

import ssl
import statistics
import time

import httpx
import pytest

from tests.e2e.test_local_runner import PROPERTIES, Runner, free_port, start, stop

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def ingest_to_ucm(runner: Runner, events: int) -> list[float]:
    """Seconds from each ingest to the simulated UCM showing it (stream doorbell, dispatcher, HTTPS + Digest to
    the simulator): check-ins and check-outs on 20 rooms of demo-hotel, one at a time, after two unmeasured
    check-ins (the dispatcher's cold start). bench/run.py measures with this loop too."""
    sim_line = next(line for line in runner.banner if "/state" in line and line.startswith("curl"))
    ca, url = sim_line.split("--cacert ")[1].split(" ", 1)
    latencies = []
    with httpx.Client(verify=ssl.create_default_context(cafile=ca)) as sim:
        for i in range(-2, events):
            n = (i + 2) % 40
            room, status = str(101 + n % 20), "checkin" if n < 20 else "checkout"
            record = {"datetime": "2026-01-01T10:00:00", "action": "BOOKING", "booking_uid": f"lat-{n % 20}",
                      "status": status, "room": room, "arrival": "2026-01-01T10:00:00",
                      "departure": "2026-01-02T10:00:00",
                      "GUEST_LIST": [{"uid": "g", "name": "Lat", "surname": f"N{i}", "language": "en"}]}
            started = time.perf_counter()
            assert runner.ingest("demo-hotel", record).status_code == 202
            while True:
                guest = sim.get(url).json()["rooms"][room]["guest"]
                if (guest is not None) == (status == "checkin"):
                    break
                if time.perf_counter() - started > 10:
                    raise AssertionError(f"the {status} of room {room} never reached the UCM")
                time.sleep(0.005)
            if i >= 0:
                latencies.append(time.perf_counter() - started)
    return latencies


def test_ingest_to_ucm_latency_over_200_events() -> None:
    process, banner = start(PROPERTIES, free_port())
    try:
        port = next(line for line in banner if "is running on" in line).rsplit(":", 1)[1]
        latencies = sorted(ingest_to_ucm(Runner(process, f"http://127.0.0.1:{port}", banner), 200))
        p50, p95 = statistics.median(latencies), latencies[int(len(latencies) * 0.95) - 1]
        print(f"\ningest -> UCM over {len(latencies)} events: p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
              f"max {latencies[-1] * 1000:.0f} ms")
        assert p95 < 2.0
    finally:
        stop(process)


def test_the_at_risk_alert_fires_within_a_minute_of_the_configured_lead(tmp_path: object) -> None:
    """Local runner, in process: a wake-up 2.5 minutes ahead with a 1-minute lead, the UCM refusing wake-ups.
    The at-risk check must run no later than the lead and at most 60 s before it (the Scheduler's minute)."""
    from datetime import UTC, datetime, timedelta
    from pathlib import Path
    from zoneinfo import ZoneInfo

    import yaml

    from pms_connector.local.runner import running
    from pms_connector.wakeups import schedule_name, wake_instant

    docs = yaml.safe_load(Path(PROPERTIES).read_text(encoding="utf-8"))
    hotel = next(d for d in docs if d["id"] == "demo-hotel")
    hotel["wakeup"] = {"at_risk_lead_minutes": 1, "result_grace_minutes": 1}
    path = Path(str(tmp_path)) / "properties.yaml"
    path.write_text(yaml.safe_dump([hotel]), encoding="utf-8")
    zone = ZoneInfo("Europe/Madrid")
    with running(path, port=free_port()) as run:
        run.simulators["demo-hotel"].fail_next(100, code=22, action="wakeup")
        wake_at = (datetime.now(UTC) + timedelta(minutes=2, seconds=30)).astimezone(zone).replace(microsecond=0)
        waketime = wake_at.strftime("%Y-%m-%dT%H:%M:%S")
        key = hotel["ingest"]["api_key"]
        records = [{"datetime": "2026-01-01T10:00:00", "action": "BOOKING", "booking_uid": "risk-1",
                    "status": "checkin", "room": "101", "arrival": "2026-01-01T10:00:00",
                    "departure": "2026-01-02T10:00:00",
                    "GUEST_LIST": [{"uid": "g", "name": "Early", "surname": "Riser", "language": "en"}]},
                   {"datetime": "2026-01-01T10:00:00", "action": "WAKE", "room": "101", "mode": "S", "uid": "r1",
                    "waketime": waketime}]
        response = httpx.post(f"{run.url}/pms/demo-hotel/events", json=records,
                              headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 202, response.text
        fired = run.pollers["one-time-schedules"].fired
        risk = schedule_name("demo-hotel", "r1", "at_risk")
        deadline = time.monotonic() + 200
        while time.monotonic() < deadline and not any(f["name"] == risk for f in fired):
            time.sleep(0.5)
        [event] = [f for f in fired if f["name"] == risk]
        target = wake_instant(waketime, zone).timestamp() - 60
        early = target - event["fired"]
        print(f"\nat-risk check ran {early:.1f} s before wake-up minus lead (goal: 0..60 s), "
              f"{event['fired'] - event['due']:.2f} s after its schedule time")
        assert 0 <= early <= 60
