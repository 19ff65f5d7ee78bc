"""Ingest → UCM latency through the local runner (stream doorbell, dispatcher, simulator). Slow: `make test-slow`."""

from __future__ import annotations

import ssl
import statistics
import time

import httpx
import pytest

from tests.e2e.test_local_runner import PROPERTIES, Runner, free_port, start

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_ingest_to_ucm_latency_over_200_events() -> None:
    import signal

    process, banner = start(PROPERTIES, free_port())
    try:
        port = next(line for line in banner if "is running on" in line).rsplit(":", 1)[1]
        runner = Runner(process, f"http://127.0.0.1:{port}", banner)
        sim_line = next(line for line in banner if "/state" in line and line.startswith("curl"))
        ca, url = sim_line.split("--cacert ")[1].split(" ", 1)
        latencies = []
        with httpx.Client(verify=ssl.create_default_context(cafile=ca)) as sim:
            for i in range(200):
                room = str(101 + i % 20)
                status = "checkin" if (i // 20) % 2 == 0 else "checkout"
                record = {"datetime": "2026-01-01T10:00:00", "action": "BOOKING", "booking_uid": f"lat-{i % 20}",
                          "status": status, "room": room, "arrival": "2026-01-01T10:00:00",
                          "departure": "2026-01-02T10:00:00",
                          "GUEST_LIST": [{"uid": "g", "name": "Lat", "surname": f"N{i}", "language": "en"}]}
                started = time.monotonic()
                assert runner.ingest("demo-hotel", record).status_code == 202
                while time.monotonic() - started < 10:
                    guest = sim.get(url).json()["rooms"][room]["guest"]
                    if (guest is not None) == (status == "checkin"):
                        break
                    time.sleep(0.005)
                latencies.append(time.monotonic() - started)
        latencies.sort()
        p50, p95 = statistics.median(latencies), latencies[int(len(latencies) * 0.95) - 1]
        print(f"\ningest -> UCM over {len(latencies)} events: p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
              f"max {latencies[-1] * 1000:.0f} ms")
        assert p95 < 2.0
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=15)
