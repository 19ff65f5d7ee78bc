"""The README's first command, over real HTTP: `pms-connector local` with moto's server behind it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, session_scan
from tests.helpers import DEMO_INGEST_KEY, signed
from tests.leakscan import RunnerOutput
from tests.spec_examples import records_from_pms, requests_to_pms

pytestmark = pytest.mark.e2e
PROPERTIES = ROOT / "tests" / "fixtures" / "properties.yaml"
SPEC_TOKEN = "61e7c7371170a948eaf63fa578840025"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Runner:
    def __init__(self, process: subprocess.Popen[str], url: str, banner: list[str]) -> None:
        self.process, self.url, self.banner = process, url, banner
        self.http = httpx.Client(base_url=url, timeout=10)

    def ingest(self, pid: str, body: Any, key: str = DEMO_INGEST_KEY) -> httpx.Response:
        learn(body, f"Bearer {key}")
        return self.http.post(f"/pms/{pid}/events", json=body, headers={"Authorization": f"Bearer {key}"})

    def httppms(self, body: Any, **kwargs: Any) -> httpx.Response:
        learn(body, (kwargs.get("headers") or {}).get("Authorization"))
        return self.http.post("/httppms", json=body, **kwargs)


def learn(body: Any, authorization: str | None) -> None:
    """Tell the session's leak scan what this request carries (the runner logs in another process)."""
    scan = session_scan()
    if scan is not None:
        scan.harvest_record(body, kind="request")
        scan.harvest_authorization(authorization)


_OUTPUTS: dict[int, RunnerOutput] = {}  # by pid: each runner's output, read to the end by stop()


def start(properties: Path, port: int) -> tuple[subprocess.Popen[str], list[str]]:
    # The leak scan learns the secrets of the properties file the runner is handed, before it starts; every
    # line the runner prints goes to the scan (the banner's curl commands as its documented exception).
    output = RunnerOutput(session_scan(), properties, os.environ.get("PMS_E2E_RUNNER_LOG"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "pms_connector.cli", "local", "--properties", str(properties), "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    output.attach(process)  # its thread keeps draining the output so the server never blocks on a full pipe
    if output.wait_banner(timeout=60):
        _OUTPUTS[process.pid] = output
        return process, list(output.banner)
    process.kill()
    output.close()
    raise AssertionError("local runner did not start:\n" + "\n".join(output.banner))


def stop(process: subprocess.Popen[str]) -> None:
    """Ctrl-C, as a user would; killed if it has not stopped within 15 s; its output read to the last line."""
    output = _OUTPUTS.pop(process.pid, None)
    if output is not None:
        output.close(timeout=15)
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def runner() -> Iterator[Runner]:
    port = free_port()
    process, banner = start(PROPERTIES, port)
    try:
        yield Runner(process, f"http://127.0.0.1:{port}", banner)
    finally:
        stop(process)


def test_the_banner_prints_curl_commands_that_work(runner: Runner) -> None:
    curls = [line for line in runner.banner if line.startswith("curl ")]
    assert len(curls) == 5  # ingest + GET_REQUEST for each of the two properties, the simulated UCM
    outputs = [subprocess.run(["/bin/sh", "-c", c], capture_output=True, text=True, timeout=15,
                               check=True).stdout
               for c in curls[:2]]
    assert '"accepted":1' in outputs[0]
    assert '"ACTION_LIST"' in outputs[1] and "García" in outputs[1]


def test_a_check_in_shows_on_the_simulated_ucm_within_2_seconds(runner: Runner) -> None:
    sim_line = next(line for line in runner.banner if "/state" in line and line.startswith("curl"))
    ca, url = sim_line.split("--cacert ")[1].split(" ", 1)

    def check_in(room: str, name: str, surname: str, limit_s: float) -> tuple[float, dict[str, Any] | None]:
        record = {"datetime": "2026-01-01T10:00:00", "action": "BOOKING", "booking_uid": f"e2e-{room}",
                  "status": "checkin", "room": room, "arrival": "2026-01-01T10:00:00",
                  "departure": "2026-01-02T10:00:00",
                  "GUEST_LIST": [{"uid": "g", "name": name, "surname": surname, "language": "da"}]}
        started = time.monotonic()
        assert runner.ingest("demo-hotel", record).status_code == 202
        guest = None
        with httpx.Client(verify=__import__("ssl").create_default_context(cafile=ca)) as sim:
            while guest is None and time.monotonic() - started < limit_s:
                guest = sim.get(url).json()["rooms"][room]["guest"]
                time.sleep(0.02)
        return time.monotonic() - started, guest

    # The first command of a fresh runner pays the dispatcher's cold start (imports, TLS, digest challenge).
    cold, _ = check_in("104", "Warm", "Up", 10)
    warm, guest = check_in("105", "Søren", "Ørsted", 2)
    print(f"\ncheck-in on the simulated UCM: cold {cold:.2f} s, warm {warm:.2f} s")
    assert guest is not None, "the check-in did not reach the UCM within 2 s"
    assert (guest["firstname"], guest["lastname"]) == ("Søren", "Ørsted")


def drain(runner: Runner) -> None:
    """Other tests share the runner: take what they left in demo-hotel's queue."""
    while "ACTION_LIST" in runner.httppms(signed({"action": "GET_REQUEST", "property": "demo-hotel"})).json():
        pass


def test_ingest_then_get_request_round_trip(runner: Runner) -> None:
    drain(runner)
    records = [{"datetime": "2026-01-01T10:00:00", "action": "DND", "room": str(r), "active": True}
               for r in range(1, 6)]
    accepted = runner.ingest("demo-hotel", records)
    assert accepted.status_code == 202
    got = runner.httppms(signed({"action": "GET_REQUEST", "property": "demo-hotel"})).json()
    assert [r["room"] for r in got["ACTION_LIST"]] == ["1", "2", "3", "4", "5"]
    assert runner.httppms(signed({"action": "GET_REQUEST", "property": "demo-hotel"})).json() == \
        {"code": 0, "description": "OK"}


def test_every_spec_json_example_sent_verbatim(runner: Runner) -> None:
    # PMS side: the eight record examples go in through the ingest API and come out of GET_REQUEST unchanged.
    records = [e.body for e in records_from_pms()]
    assert runner.ingest("myhotel", records, key="myhotel-ingest-key-0123456789").status_code == 202
    get_request = next(e.body for e in requests_to_pms() if e.body["action"] == "GET_REQUEST")
    first = runner.httppms(get_request).json()
    assert first["ACTION_LIST"] == records
    confirmed = runner.httppms({**get_request, "confirm": first["batch"]}).json()
    assert confirmed == {"code": 0, "description": "OK"}

    # pmslink side: every request example, byte for byte as the spec prints it.
    for example in requests_to_pms():
        if example.body["action"] == "GET_REQUEST":
            continue
        response = runner.httppms(example.body)
        assert response.status_code == 200, (example.line, response.text)
        expected = 207 if example.body["action"] == "CHECKOUT" else 0
        assert response.json()["code"] == expected, (example.line, response.text)


def test_xml_over_http(runner: Runner) -> None:
    body = (f"<request><datetime>2015-01-01T10:11:12</datetime><usertoken>{SPEC_TOKEN}</usertoken>"
            "<action>GET_REQUEST</action><property>myhotel</property></request>")
    response = runner.http.post("/httppms", content=body, headers={"Content-Type": "application/xml"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    assert "<code>0</code>" in response.text


def test_unknown_routes_and_methods_are_json(runner: Runner) -> None:
    assert runner.http.get("/nowhere").status_code == 404
    assert runner.http.get("/httppms").status_code == 405


def test_concurrent_get_requests_over_http_share_nothing(runner: Runner) -> None:
    drain(runner)
    total = 300
    for start_at in range(0, total, 100):
        records = [{"datetime": "2026-01-01T10:00:00", "action": "MSGTXT", "room": "101", "uid": str(i),
                    "text": "hello"} for i in range(start_at, start_at + 100)]
        assert runner.ingest("demo-hotel", records).status_code == 202
    got: list[str] = []
    lock = threading.Lock()

    def poll() -> None:
        with httpx.Client(base_url=runner.url, timeout=10) as http:
            for _ in range(12):
                body = http.post("/httppms", json=signed({"action": "GET_REQUEST", "property": "demo-hotel"})).json()
                assert body["code"] in (0, 101), body
                with lock:
                    got.extend(r["uid"] for r in body.get("ACTION_LIST", []))

    threads = [threading.Thread(target=poll) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got, key=int) == [str(i) for i in range(total)]
    assert len(got) == len(set(got))


def test_ctrl_c_stops_cleanly() -> None:
    process, _ = start(PROPERTIES, free_port())
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=15) == 0


def test_a_bad_properties_file_fails_at_start_naming_property_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- id: broken-inn\n  name: Broken\n  timezone: Mars/Olympus\n"
                   "  httppms: {auth: md5, user: u}\n  ingest: {api_key: short}\n", encoding="utf-8")
    scan = session_scan()
    if scan is not None:  # what the runner is handed; its output is scanned (tests.leakscan: subprocess.run)
        scan.harvest_properties_file(bad)
    result = subprocess.run([sys.executable, "-m", "pms_connector.cli", "local", "--properties", str(bad),
                             "--port", str(free_port())], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 2
    assert "property 'broken-inn': timezone" in result.stderr
    assert "httppms.password" in result.stderr
    assert "ingest.api_key" in result.stderr
