"""PMS polling mode end to end: the real HttppmsClient against the real PmsSimulator over HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from pms_connector.pms.client import HttppmsClient, PollResult
from pms_connector.pms.simulator import PmsSimulator

PROPERTY = "myhotel"
ZONE = "America/New_York"  # not the default: both sides must use the configured zone
USER, PASSWORD, TOKEN = "user1", "password1", "12345-12345-12345-12345"
AUTHS = ("md5", "basic", "token")


def wake(room: str, mode: str = "E") -> dict[str, Any]:
    return {"action": "WAKE", "room": room, "mode": mode, "uid": f"w{room}", "waketime": "2026-01-02T08:00:00"}


def raw_http() -> httpx.Client:
    """A plain HTTP client for requests the HttppmsClient would not make (no TLS context to build)."""
    return httpx.Client(verify=False, trust_env=False, timeout=5)  # noqa: S501 - the simulator is plain http


def post(url: str, **kwargs: Any) -> httpx.Response:
    with raw_http() as http:
        return http.post(url, **kwargs)


def new_sim(auth: str = "md5", **overrides: Any) -> PmsSimulator:
    kwargs: dict[str, Any] = {"property_id": PROPERTY, "auth": auth, "zone": ZONE, **overrides}
    if auth == "token":
        kwargs.setdefault("token", TOKEN)
    else:
        kwargs.setdefault("user", USER)
        kwargs.setdefault("password", PASSWORD)
    return PmsSimulator(**kwargs)


def new_client(sim: PmsSimulator, **overrides: Any) -> HttppmsClient:
    kwargs: dict[str, Any] = {"auth": sim.auth, "property_id": PROPERTY, "zone": ZoneInfo(ZONE), "timeout_s": 2.0}
    if sim.auth == "token":
        kwargs["token"] = TOKEN
    else:
        kwargs.update(user=USER, password=PASSWORD)
    kwargs.update(overrides)
    return HttppmsClient(sim.url, **kwargs)


@pytest.fixture(params=AUTHS)
def auth(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sim(auth: str) -> Iterator[PmsSimulator]:
    with new_sim(auth) as simulator:
        yield simulator


@pytest.fixture
def client(sim: PmsSimulator) -> Iterator[HttppmsClient]:
    with new_client(sim) as c:
        yield c


@pytest.fixture
def md5_sim() -> Iterator[PmsSimulator]:
    with new_sim("md5") as simulator:
        yield simulator


@pytest.fixture
def md5_client(md5_sim: PmsSimulator) -> Iterator[HttppmsClient]:
    with new_client(md5_sim) as c:
        yield c


# ------------------------------------------------------------------------------------------ auth modes


def test_each_auth_mode_polls_and_sends(sim: PmsSimulator, client: HttppmsClient) -> None:
    assert client.get_request() == PollResult("ok", 0, "OK", 200)
    sim.queue(wake("101", "S"))
    polled = client.get_request()
    assert (polled.outcome, polled.records, polled.batch) == ("ok", [wake("101", "S")], None)
    assert client.send(wake("101")).outcome == "ok"
    (received,) = sim.received()
    assert {k: v for k, v in received.items() if k != "datetime"} == {**wake("101"), "property": PROPERTY}
    assert "user" not in received and "usertoken" not in received
    assert [(r["action"], r["http_status"], r["code"], r["faulted"]) for r in sim.requests()] == [
        ("GET_REQUEST", 200, 0, False), ("GET_REQUEST", 200, 0, False), ("WAKE", 200, 0, False)]


@pytest.mark.parametrize(("auth", "wrong"), [("md5", "password"), ("md5", "user"), ("basic", "password"),
                                           ("basic", "user"), ("token", "token")])
def test_wrong_credentials_are_buffered_with_401(auth: str, wrong: str) -> None:
    with new_sim(auth) as sim:
        sim.queue(wake("101", "S"))
        with new_client(sim, **{wrong: "wrong-" + wrong}) as client:
            sent, polled = client.send(wake("101")), client.get_request()
    assert (sent.outcome, sent.http_status, sent.code) == ("buffer", 401, 204)
    assert (polled.outcome, polled.http_status, polled.records) == ("buffer", 401, [])
    assert sim.received() == []
    assert sim.pending() == [wake("101", "S")]
    assert [r["http_status"] for r in sim.requests()] == [401, 401]


def test_other_property_is_refused(md5_sim: PmsSimulator) -> None:
    with new_client(md5_sim, property_id="otherhotel") as client:
        assert (client.send(wake("101")).http_status, md5_sim.received()) == (401, [])


@pytest.mark.parametrize(("skew_s", "status"), [(0, 200), (-240, 200), (240, 200), (360, 401), (-360, 401),
                                                (3600 * 5, 401)])
def test_md5_datetime_window(md5_sim: PmsSimulator, skew_s: int, status: int) -> None:
    with new_client(md5_sim, clock=lambda: datetime.now(UTC) + timedelta(seconds=skew_s)) as client:
        result = client.send(wake("101"))
    assert result.http_status == status
    assert result.outcome == ("ok" if status == 200 else "buffer")
    if status == 401:
        assert result.code == 205  # right token, datetime outside the window
        assert md5_sim.received() == []


def test_md5_client_in_the_wrong_zone_is_refused(md5_sim: PmsSimulator) -> None:
    with new_client(md5_sim, zone=ZoneInfo("Europe/Madrid")) as client:
        assert client.send(wake("101")).http_status == 401


def test_md5_replayed_old_request_is_refused(md5_sim: PmsSimulator) -> None:
    with new_client(md5_sim, clock=lambda: datetime.now(UTC) - timedelta(hours=1)) as old:
        body, _ = old.sign(wake("101"))
    response = post(md5_sim.url, json=body)
    assert (response.status_code, response.json()["code"]) == (401, 205)
    assert md5_sim.received() == []


def test_basic_header_is_checked() -> None:
    with new_sim("basic") as sim:
        good = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        for header in ("", "Basic !!!", good.replace("Basic", "Bearer"),
                       "Basic " + base64.b64encode(f"{USER}{PASSWORD}".encode()).decode()):
            response = post(sim.url, json=wake("101"), headers={"Authorization": header} if header else {})
            assert response.status_code == 401, header
            assert response.json() == {"code": 204, "description": "authentication failed"}
        assert post(sim.url, json=wake("101"), headers={"Authorization": good}).json()["code"] == 0
        assert len(sim.received()) == 1


# ---------------------------------------------------------------------------------------- GET_REQUEST


def test_remove_delivery_serves_100_at_a_time_oldest_first(md5_sim: PmsSimulator,
                                                          md5_client: HttppmsClient) -> None:
    records = [wake(str(100 + i), "S") for i in range(250)]
    md5_sim.queue(*records)
    batches = [md5_client.get_request() for _ in range(4)]
    assert [len(b.records) for b in batches] == [100, 100, 50, 0]
    assert [r for b in batches for r in b.records] == records
    assert all(b.outcome == "ok" and b.batch is None for b in batches)
    assert md5_sim.pending() == []
    md5_sim.queue(wake("999"))
    assert md5_client.get_request().records == [wake("999")]


def test_confirm_delivery_repeats_the_batch_until_confirmed() -> None:
    records = [wake(str(100 + i), "S") for i in range(150)]
    with new_sim("md5", delivery="confirm") as sim, new_client(sim) as client:
        sim.queue(*records)
        first = client.get_request()
        assert (first.outcome, first.records) == ("ok", records[:100])
        assert first.batch is not None
        sim.queue(wake("late"))  # queued meanwhile: not part of the outstanding batch
        again = client.get_request()
        assert (again.batch, again.records) == (first.batch, records[:100])
        assert len(sim.pending()) == 151  # nothing confirmed yet

        second = client.get_request(confirm=first.batch)
        assert second.records == [*records[100:], wake("late")]
        assert second.batch not in (None, first.batch)
        assert sim.pending() == [*records[100:], wake("late")]

        repeated = client.get_request(confirm=first.batch)  # confirming the last confirmed batch is harmless
        assert (repeated.batch, repeated.records) == (second.batch, second.records)

        unknown = client.get_request(confirm="b999-nope")
        assert (unknown.outcome, unknown.code, unknown.records) == ("rejected", 208, [])

        done = client.get_request(confirm=second.batch)
        assert (done.outcome, done.records, done.batch) == ("ok", [], None)
        assert sim.pending() == []
        assert client.get_request(confirm=second.batch).records == []


def test_confirm_delivery_survives_a_lost_answer() -> None:
    """A slow PMS answers after the client gave up: with confirm delivery the batch is served again."""
    with new_sim("token", delivery="confirm") as sim, new_client(sim, timeout_s=0.3) as client:
        sim.queue(wake("101"), wake("102"))
        sim.fail_next(1, delay_s=0.6, action="GET_REQUEST")
        lost = client.get_request()
        assert (lost.outcome, lost.http_status, lost.description) == ("buffer", None, "timeout (ReadTimeout)")
        time.sleep(0.5)  # the simulator answers the request after its delay
        again = client.get_request()
        assert again.records == [wake("101"), wake("102")]


def test_remove_delivery_loses_a_lost_answer() -> None:
    """The spec's remove delivery: an answer that never reaches the client takes its records with it."""
    with new_sim("token") as sim, new_client(sim, timeout_s=0.3) as client:
        sim.queue(wake("101"))
        sim.fail_next(1, delay_s=0.6)
        assert client.get_request().description == "timeout (ReadTimeout)"
        deadline = time.monotonic() + 3
        while sim.pending() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sim.pending() == []
        assert client.get_request().records == []


# --------------------------------------------------------------------------------------------- faults


@pytest.mark.parametrize(("fault", "outcome", "http_status", "code"), [
    ({"http_status": 400}, "buffer", 400, 200),
    ({"http_status": 401}, "buffer", 401, 204),
    ({"http_status": 500}, "buffer", 500, 100),
    ({"http_status": 503, "code": 100}, "buffer", 503, 100),
    ({"http_status": 302}, "buffer", 302, 200),
    ({"http_status": 404}, "rejected", 404, 200),
    ({"http_status": 403}, "rejected", 403, 200),
    ({"code": 101}, "buffer", 200, 101),
    ({"code": 125}, "buffer", 200, 125),
    ({"code": 201}, "rejected", 200, 201),
    ({"code": 1}, "rejected", 200, 1),
    ({"reset": True}, "buffer", None, None),
    ({"reset": True, "delay_s": 0.05}, "buffer", None, None),
    ({"http_status": 500, "delay_s": 0.05}, "buffer", 500, 100),
])
def test_faults_are_classified_and_change_nothing(md5_sim: PmsSimulator, md5_client: HttppmsClient,
                                                  fault: dict[str, Any], outcome: str, http_status: int | None,
                                                  code: int | None) -> None:
    md5_sim.queue(wake("101", "S"), wake("102", "S"))
    md5_sim.fail_next(2, **fault)
    polled, sent = md5_client.get_request(), md5_client.send(wake("103"))
    for result in (polled, sent):
        assert (result.outcome, result.http_status, result.code) == (outcome, http_status, code)
    assert polled.records == []
    # A faulted GET_REQUEST removes nothing; a faulted WAKE is not received.
    assert md5_sim.pending() == [wake("101", "S"), wake("102", "S")]
    assert md5_sim.received() == []
    kind = "reset" if fault.get("reset") else "http" if "http_status" in fault else "code"
    assert [(r["action"], r["fault"], r["faulted"], r["http_status"], r["code"]) for r in md5_sim.requests()] == [
        ("GET_REQUEST", kind, True, http_status, code), ("WAKE", kind, True, http_status, code)]
    # The faults are used up: the next requests go through and nothing was lost.
    assert md5_client.get_request().records == [wake("101", "S"), wake("102", "S")]
    assert md5_client.send(wake("103")).outcome == "ok"
    assert [r["room"] for r in md5_sim.received()] == ["103"]


def test_delay_beyond_the_client_timeout_is_buffered(md5_sim: PmsSimulator) -> None:
    md5_sim.fail_next(1, http_status=500, delay_s=0.6)
    with new_client(md5_sim, timeout_s=0.2) as client:
        started = time.monotonic()
        result = client.send(wake("101"))
    assert time.monotonic() - started < 0.55
    assert (result.outcome, result.http_status, result.description) == ("buffer", None, "timeout (ReadTimeout)")
    assert md5_sim.received() == []


def test_a_delay_alone_is_a_slow_but_working_pms(md5_sim: PmsSimulator, md5_client: HttppmsClient) -> None:
    md5_sim.fail_next(1, delay_s=0.2)
    started = time.monotonic()
    assert md5_client.send(wake("101")).outcome == "ok"
    assert time.monotonic() - started >= 0.2
    assert [r["room"] for r in md5_sim.received()] == ["101"]
    assert md5_sim.requests()[0]["fault"] == "delay"


def test_faults_by_action(md5_sim: PmsSimulator, md5_client: HttppmsClient) -> None:
    md5_sim.queue(wake("101", "S"))
    md5_sim.fail_next(1, code=102, action="WAKE")
    assert md5_client.get_request().records == [wake("101", "S")]  # not a WAKE: not faulted
    assert md5_client.send({"action": "CALL", "room": "101"}).outcome == "ok"
    assert md5_client.send(wake("101")).code == 102
    assert md5_client.send(wake("101")).outcome == "ok"
    assert [r["action"] for r in md5_sim.received()] == ["CALL", "WAKE"]


def test_fault_rules_queue_up(md5_sim: PmsSimulator, md5_client: HttppmsClient) -> None:
    md5_sim.fail_next(2, http_status=500)
    md5_sim.fail_next(2, code=101)
    results = [md5_client.send(wake(str(i))) for i in range(5)]
    assert [(r.http_status, r.code) for r in results] == [(500, 100), (500, 100), (200, 101), (200, 101),
                                                          (200, 0)]
    md5_sim.fail_next(5, reset=True)
    md5_sim.reset_faults()
    assert md5_client.send(wake("9")).outcome == "ok"


def test_random_faults_are_seeded_and_switch_off(md5_sim: PmsSimulator, md5_client: HttppmsClient) -> None:
    def run() -> list[tuple[str, int | None, int | None]]:
        results = [md5_client.send(wake(str(i))) for i in range(30)]
        return [(r.outcome, r.http_status, r.code) for r in results]

    md5_sim.set_random_faults(1.0, seed=7)
    first = run()
    md5_sim.set_random_faults(1.0, seed=7)
    assert run() == first
    assert all(outcome == "buffer" for outcome, _, _ in first)
    assert {(status, code) for _, status, code in first} == {(500, 100), (200, 101), (None, None)}
    assert md5_sim.received() == []
    md5_sim.reset_faults()
    assert md5_client.send(wake("1")).outcome == "ok"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "give http_status"), ({"count": -1, "code": 101}, "count"), ({"count": True, "code": 101}, "count"),
    ({"code": 101, "reset": True}, "reset"), ({"http_status": 200}, "http_status"),
    ({"http_status": 600}, "http_status"), ({"delay_s": -1}, "delay_s"), ({"code": "101"}, "code"),
    ({"code": 101, "action": ""}, "action"),
])
def test_fail_next_refuses_bad_arguments(md5_sim: PmsSimulator, kwargs: dict[str, Any], message: str) -> None:
    count = kwargs.pop("count", 1)
    with pytest.raises(ValueError, match=message):
        md5_sim.fail_next(count, **kwargs)


# ---------------------------------------------------------------------------------------- the log etc.


def test_sends_are_recorded_in_order(md5_sim: PmsSimulator, md5_client: HttppmsClient) -> None:
    records: list[dict[str, Any]] = []
    for i in range(30):
        records.append(wake(str(i)) if i % 3 == 0 else
                       {"action": "CALL", "room": str(i), "call_type": "O", "number": "555", "duration": i}
                       if i % 3 == 1 else
                       {"action": "POST", "room": str(i), "post_type": "M", "article": "WA", "units": 1,
                        "amount": 2.5})
    assert all(md5_client.send(r).outcome == "ok" for r in records)
    received = md5_sim.received()
    assert [{k: v for k, v in r.items() if k not in ("datetime", "property")} for r in received] == records
    assert all(r["property"] == PROPERTY and "usertoken" not in r and "user" not in r for r in received)


def test_concurrent_sends_are_all_recorded(md5_sim: PmsSimulator, md5_client: HttppmsClient) -> None:
    def worker(prefix: str) -> None:
        for i in range(10):
            assert md5_client.send(wake(f"{prefix}{i}")).outcome == "ok"

    threads = [threading.Thread(target=worker, args=(p,)) for p in "abcd"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rooms = [r["room"] for r in md5_sim.received()]
    assert sorted(rooms) == sorted(f"{p}{i}" for p in "abcd" for i in range(10))
    for p in "abcd":  # each thread's records in its order
        assert [r for r in rooms if r[0] == p] == [f"{p}{i}" for i in range(10)]


@pytest.mark.parametrize(("content", "description"), [
    (b"not json", "JSON object"), (b"[1, 2]", "JSON object"), (b"", "JSON object"),
])
def test_malformed_bodies_answer_201(md5_sim: PmsSimulator, content: bytes, description: str) -> None:
    response = post(md5_sim.url, content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    assert response.json()["code"] == 201 and description in response.json()["description"]


def test_missing_action_answers_201_after_authentication(md5_sim: PmsSimulator,
                                                         md5_client: HttppmsClient) -> None:
    body, _ = md5_client.sign({"room": "101"})
    response = post(md5_sim.url, json=body)
    assert (response.status_code, response.json()["code"]) == (200, 201)
    assert "action" in response.json()["description"]
    unsigned = post(md5_sim.url, json={"room": "101"})
    assert unsigned.status_code == 401
    assert md5_sim.received() == []


def test_actions_are_normalised(md5_sim: PmsSimulator, md5_client: HttppmsClient) -> None:
    md5_sim.queue(wake("101"))
    assert md5_client.send({"action": " get_request "}).outcome == "ok"  # the spec writes " BILL_REQUEST "
    assert md5_sim.pending() == []
    assert md5_sim.received() == []


def test_state_endpoint_and_other_routes(md5_sim: PmsSimulator, md5_client: HttppmsClient) -> None:
    md5_sim.queue(wake("101", "S"))
    md5_client.send(wake("102"))
    with raw_http() as http:
        state = http.get(md5_sim.url + "state").json()
        assert state["pending"] == [wake("101", "S")]
        assert [r["room"] for r in state["received"]] == ["102"]
        assert http.get(md5_sim.url + "other").status_code == 404
        assert http.put(md5_sim.url).status_code == 405
    assert md5_sim.state() == state


def test_oversized_body_is_refused(md5_sim: PmsSimulator) -> None:
    response = post(md5_sim.url, content=b"{" + b" " * (1024 * 1024) + b"}")
    assert response.status_code == 413


def test_inspection_returns_copies(md5_sim: PmsSimulator, md5_client: HttppmsClient) -> None:
    record = wake("101", "S")
    md5_sim.queue(record)
    record["room"] = "changed"
    md5_sim.pending()[0]["room"] = "changed"
    md5_client.send(wake("102"))
    md5_sim.received()[0]["room"] = "changed"
    assert md5_sim.pending() == [wake("101", "S")]
    assert md5_sim.received()[0]["room"] == "102"


def test_simulator_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="password"):
        PmsSimulator(property_id=PROPERTY, auth="md5", user=USER)
    with pytest.raises(ValueError, match="token"):
        PmsSimulator(property_id=PROPERTY, auth="token")
    with pytest.raises(ValueError, match="delivery"):
        PmsSimulator(property_id=PROPERTY, auth="token", token=TOKEN, delivery="keep")  # type: ignore[arg-type]
    sim = new_sim()
    with pytest.raises(RuntimeError):
        _ = sim.url
    with sim:
        with pytest.raises(RuntimeError, match="once"):
            sim.start()
        url = sim.url
    with pytest.raises(httpx.ConnectError):
        post(url, json={}, timeout=1)
    sim.stop()  # idempotent


def test_stop_is_quick_with_a_request_in_a_long_delay() -> None:
    sim = new_sim("token")
    sim.start()
    sim.fail_next(1, delay_s=30)
    client = new_client(sim, timeout_s=5)
    thread = threading.Thread(target=client.send, args=(wake("101"),))
    thread.start()
    time.sleep(0.1)
    started = time.monotonic()
    sim.stop()
    thread.join(timeout=3)
    client.close()
    assert time.monotonic() - started < 3 and not thread.is_alive()
    assert sim.received() == []


def test_json_answers(md5_sim: PmsSimulator, md5_client: HttppmsClient) -> None:
    body, _ = md5_client.sign({"action": "GET_REQUEST"})
    response = post(md5_sim.url, content=json.dumps(body).encode())
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {"code": 0, "description": "OK"}
