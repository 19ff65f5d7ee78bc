"""The UCM PMS API simulator over real HTTPS + Digest, driven with plain httpx as the UCM client does."""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import httpx
import pytest

from pms_connector.ucm.simulator import CA_COMMON_NAME, DESCRIPTIONS, UcmSimulator, response_text

API_USER, API_PASSWORD = "cdrapi", "cdrapi123"
PMS_USER, PMS_PASSWORD = "admin1", "admin123"
TOKEN = "3FAF8662B93EF7B8B359C0DFD18696D3"  # the guide's worked example: MD5("admin1" + "admin123")
ADDRESSES = {"101": "101", "102": "102", "103": "103", "104": "104", "105": "105", "1100": "11-00"}
GUIDE = Path(__file__).resolve().parents[2] / "docs" / "specs" / "grandstream-ucm-pms-api-guide.txt"


def ssl_context_from(ca_pem: str) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=ca_pem)


def new_sim(**overrides: Any) -> UcmSimulator:
    kwargs: dict[str, Any] = {"api_user": API_USER, "api_password": API_PASSWORD, "pms_user": PMS_USER,
                              "pms_password": PMS_PASSWORD, "addresses": ADDRESSES, **overrides}
    return UcmSimulator(**kwargs)


def new_client(sim: UcmSimulator, *, password: str = API_PASSWORD, read_timeout: float = 5.0) -> httpx.Client:
    return httpx.Client(auth=httpx.DigestAuth(API_USER, password), verify=ssl_context_from(sim.ca_pem),
                        timeout=httpx.Timeout(5.0, read=read_timeout))


@pytest.fixture
def sim() -> Iterator[UcmSimulator]:
    with new_sim() as simulator:
        yield simulator


@pytest.fixture
def client(sim: UcmSimulator) -> Iterator[httpx.Client]:
    with new_client(sim) as c:
        yield c


def xml(action: str, **fields: str) -> str:
    body = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in fields.items())
    return f"<pms_data_request><{action}>{body}</{action}></pms_data_request>"


def get(client: httpx.Client, sim: UcmSimulator, data: str, *, token: str = TOKEN, fmt: str = "xml") -> httpx.Response:
    return client.get(f"{sim.url}/pmsapi", params={"token": token, "format": fmt, "data": data})


def pms(client: httpx.Client, sim: UcmSimulator, action: str, **fields: str) -> str:
    response = get(client, sim, xml(action, **fields))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def guest(sim: UcmSimulator, address: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = sim.state()["rooms"][address]["guest"]
    return found


OK = response_text(0)
JOHN = {"account": "1100", "firstname": "John", "lastname": "Doe", "language": "EN", "vipcode": "2",
        "datein": "2010/01/01 11:00", "dateout": "2010/01/07 13:00", "credit": "9999900", "cidnumber": "11001100",
        "cos": "3"}


# ------------------------------------------------------------------------------------ TLS and Digest


def test_https_is_verified_against_the_generated_ca(tmp_path: Path) -> None:
    with new_sim(cert_dir=tmp_path / "certs") as simulator:
        assert simulator.url.startswith("https://127.0.0.1:")
        assert simulator.ca_path == tmp_path / "certs" / "ca.pem"
        assert simulator.ca_path.read_text(encoding="ascii") == simulator.ca_pem

        from cryptography import x509

        ca = x509.load_pem_x509_certificate(simulator.ca_pem.encode())
        assert ca.subject.rfc4514_string() == f"CN={CA_COMMON_NAME}"

        with new_client(simulator) as c:
            assert pms(c, simulator, "checkin", address="101") == OK
            port = simulator.url.rsplit(":", 1)[1]
            # The certificate names localhost too; the CA file works as well as the PEM text.
            local = httpx.Client(auth=httpx.DigestAuth(API_USER, API_PASSWORD),
                                 verify=ssl.create_default_context(cafile=str(simulator.ca_path)))
            with local:
                response = local.get(f"https://localhost:{port}/state")
                assert response.status_code == 200
                assert response.json()["rooms"]["101"]["checked_in"] is True

        with httpx.Client() as untrusting, pytest.raises(httpx.ConnectError):
            untrusting.get(f"{simulator.url}/state")


def test_temporary_cert_dir_is_removed_on_stop() -> None:
    simulator = new_sim()
    simulator.start()
    ca_path = simulator.ca_path
    assert ca_path.is_file()
    simulator.stop()
    assert not ca_path.exists()
    with pytest.raises(RuntimeError):
        simulator.start()


def test_digest_challenge_wrong_and_right_password(sim: UcmSimulator) -> None:
    with httpx.Client(verify=ssl_context_from(sim.ca_pem)) as anonymous:
        response = get(anonymous, sim, xml("checkin", address="101"))
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Digest ")
    for part in ('realm="Grandstream"', 'qop="auth"', "nonce=", "algorithm=MD5"):
        assert part in challenge

    with new_client(sim, password="wrong") as wrong:
        response = get(wrong, sim, xml("checkin", address="101"))
    assert response.status_code == 401
    assert sim.log() == []  # calls that fail Digest are neither executed nor logged
    assert guest(sim, "101") is None

    statuses: list[int] = []
    with new_client(sim) as right:
        right.event_hooks["response"] = [lambda r: statuses.append(r.status_code)]
        assert pms(right, sim, "checkin", address="101") == OK
        for _ in range(4):
            assert pms(right, sim, "update", address="101", vipcode="1") == OK
    assert statuses == [401, 200, 200, 200, 200, 200]  # one challenge, then the nonce stays valid


def test_digest_rejects_a_replayed_authorization(sim: UcmSimulator, client: httpx.Client) -> None:
    assert pms(client, sim, "checkin", address="101") == OK
    sent = client.build_request("GET", f"{sim.url}/pmsapi", params={"token": TOKEN, "format": "xml",
                                                                      "data": xml("checkout", address="101")})
    captured: list[httpx.Request] = []
    client.event_hooks["request"] = [captured.append]
    assert client.send(sent).text == OK
    replay = captured[-1]
    with httpx.Client(verify=ssl_context_from(sim.ca_pem)) as raw:
        again = raw.get(str(replay.url), headers={"Authorization": replay.headers["Authorization"]})
    assert again.status_code == 401


@pytest.mark.parametrize(
    ("token_case", "token", "expected"),
    [
        ("upper", TOKEN, 0),
        ("upper", TOKEN.lower(), 16),
        ("upper", "0" * 32, 16),
        ("upper", "", 16),
        ("lower", TOKEN.lower(), 0),
        ("lower", TOKEN, 16),
        ("any", TOKEN.lower(), 0),
        ("any", TOKEN, 0),
    ],
)
def test_token(token_case: str, token: str, expected: int) -> None:
    with new_sim(token_case=token_case) as simulator, new_client(simulator) as c:
        response = get(c, simulator, xml("checkin", address="101"), token=token)
        assert response.text == response_text(expected)
        assert (guest(simulator, "101") is not None) == (expected == 0)


# --------------------------------------------------------------------------- every code of the guide


Scenario = Callable[[UcmSimulator, httpx.Client], httpx.Response]


def _checkin(address: str = "101", **fields: str) -> Scenario:
    return lambda s, c: get(c, s, xml("checkin", address=address, **fields))


def _after(first: Callable[[UcmSimulator, httpx.Client], object], then: Scenario) -> Scenario:
    def run(s: UcmSimulator, c: httpx.Client) -> httpx.Response:
        first(s, c)
        return then(s, c)
    return run


def _disabled(s: UcmSimulator, c: httpx.Client) -> httpx.Response:
    s.set_pmsapi_enabled(False)
    return get(c, s, xml("checkin", address="101"))


def _cleaning(s: UcmSimulator, c: httpx.Client) -> httpx.Response:
    s.set_room_status("101", "cleaning")
    return get(c, s, xml("checkin", address="101"))


CODE_SCENARIOS: list[tuple[int, str, Scenario]] = [
    (0, "checkin-free-address", _checkin(**JOHN)),
    (-100, "checkin-unsupported-language", _checkin(language="XX")),
    (-9, "no-action", lambda s, c: get(c, s, "<pms_data_request></pms_data_request>")),
    (-9, "two-actions", lambda s, c: get(c, s, "<pms_data_request><checkin><address>101</address></checkin>"
                                               "<checkout><address>101</address></checkout></pms_data_request>")),
    (-9, "same-action-twice", lambda s, c: get(c, s, xml("checkin", address="101").replace(
        "</pms_data_request>", "<checkin><address>102</address></checkin></pms_data_request>"))),
    (12, "unclosed-xml", lambda s, c: get(c, s, "<pms_data_request><checkin><address>101</address>")),
    (12, "not-xml", lambda s, c: get(c, s, "address=101")),
    (12, "wrong-root", lambda s, c: get(c, s, "<request><checkin><address>101</address></checkin></request>")),
    (12, "dtd", lambda s, c: get(c, s, '<!DOCTYPE x [<!ENTITY e "101">]><pms_data_request><checkin>'
                                       "<address>&e;</address></checkin></pms_data_request>")),
    (13, "unknown-action", lambda s, c: get(c, s, xml("dnd", address="101"))),
    (14, "format-json", lambda s, c: get(c, s, xml("checkin", address="101"), fmt="json")),
    (15, "missing-address", _checkin(address="", firstname="John")),
    (15, "mov-without-destination", _after(_checkin(), lambda s, c: get(c, s, xml("mov", address="101")))),
    (15, "wakeup-bad-time", _after(_checkin(), lambda s, c: get(c, s, xml("wakeup", address="101", w_action="1",
                                                                            w_time="2560")))),
    (16, "wrong-token", lambda s, c: get(c, s, xml("checkin", address="101"), token="0" * 32)),
    (17, "room-does-not-match-address", _checkin(address="1100", room="1100")),
    (18, "unknown-address", _checkin(address="999")),
    (19, "checkin-twice", _after(_checkin(), _checkin())),
    (20, "checkout-free-address", lambda s, c: get(c, s, xml("checkout", address="102"))),
    (21, "pmsapi-disabled", _disabled),
    (22, "checkin-while-cleaning", _cleaning),
    (23, "mov-to-unknown-address", _after(_checkin(), lambda s, c: get(c, s, xml("mov", address="101",
                                                                                 d_address="999")))),
    (24, "mov-to-occupied-address", _after(_after(_checkin(), _checkin("102")),
                                           lambda s, c: get(c, s, xml("mov", address="101", d_address="102")))),
    (25, "firstname-33-characters", _checkin(firstname="É" * 33)),
    (26, "lastname-33-characters", _checkin(lastname="王" * 33)),
]


@pytest.mark.parametrize(("code", "scenario"), [(code, run) for code, _, run in CODE_SCENARIOS],
                         ids=[f"{code}-{name}" for code, name, _ in CODE_SCENARIOS])
def test_every_response_code_is_reachable(sim: UcmSimulator, client: httpx.Client, code: int,
                                          scenario: Scenario) -> None:
    response = scenario(sim, client)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == response_text(code)
    assert sim.log()[-1]["code"] == code


def test_scenarios_cover_the_guides_code_table() -> None:
    if not GUIDE.is_file():
        pytest.skip("docs/specs/grandstream-ucm-pms-api-guide.txt is missing")
    text = GUIDE.read_text(encoding="utf-8")
    table = text[text.index("Table 2: Data format\n"):text.index("API COMMANDS AND EXAMPLES\n")]
    rows = dict(re.findall(r"^\|\s*(-?\d+)\s*\|\s*(.+?)\s*\|\s*$", table, flags=re.MULTILINE))
    guide_codes = {int(code): description for code, description in rows.items()}
    assert set(guide_codes) == set(DESCRIPTIONS) == {code for code, _, _ in CODE_SCENARIOS}
    for code, description in guide_codes.items():
        # "[0] SUCCESS !" is how the guide's prose spells the success answer; the table says "Success !".
        assert DESCRIPTIONS[code] == (description if code != 0 else "SUCCESS !")
    assert response_text(0) == "[0] SUCCESS !"
    assert response_text(-100) == "[-100] Success, but language error, not set !"


# ----------------------------------------------------------------------------------------- semantics


def test_checkin_stores_the_guest_and_unicode_names_survive(sim: UcmSimulator, client: httpx.Client) -> None:
    names = {"firstname": "Zoë-José", "lastname": "O'Brien & Müller 王小明"}
    assert pms(client, sim, "checkin", address="1100", room="11-00", **{**JOHN, **names}) == OK
    expected = {**JOHN, **names}
    assert guest(sim, "1100") == expected
    over_http = client.get(f"{sim.url}/state").json()
    assert over_http == sim.state()
    assert over_http["rooms"]["1100"] == {"room": "11-00", "checked_in": True, "guest": expected, "status": "ok"}
    # 32 characters is the limit, counted in characters, not bytes.
    assert pms(client, sim, "checkin", address="102", firstname="王" * 32, lastname="É" * 32) == OK
    assert guest(sim, "102") is not None
    assert guest(sim, "102")["firstname"] == "王" * 32  # type: ignore[index]
    entry = sim.log()[0]
    assert entry == {"action": "checkin", "address": "1100", "fields": {"address": "1100", "room": "11-00",
                                                                         **expected}, "code": 0}


def test_guide_check_in_example_with_the_raw_url_form(sim: UcmSimulator, client: httpx.Client) -> None:
    # The guide's URL example sends the XML unencoded, with fields the table does not list.
    data = ("<pms_data_request><checkin><address>1100</address><name>jjkk</name><extension>1100</extension>"
            "<datein>20180202</datein><dateout>20180203</dateout></checkin></pms_data_request>")
    response = client.get(f"{sim.url}/pmsapi?token={TOKEN}&format=xml&data={data}")
    assert response.text == OK
    assert guest(sim, "1100") is not None
    assert guest(sim, "1100")["datein"] == "20180202"  # type: ignore[index]


def test_unsupported_language_still_checks_in_without_language(sim: UcmSimulator, client: httpx.Client) -> None:
    assert pms(client, sim, "checkin", address="101", firstname="Ana", language="Klingon") == response_text(-100)
    assert guest(sim, "101") == {**dict.fromkeys(JOHN), "firstname": "Ana", "language": None}
    assert pms(client, sim, "update", address="101", language="es") == OK
    assert pms(client, sim, "update", address="101", language="XX", lastname="Paz") == response_text(-100)
    stored = guest(sim, "101")
    assert stored is not None and stored["language"] == "es" and stored["lastname"] == "Paz"


def test_update_replaces_sent_fields_and_keeps_the_rest(sim: UcmSimulator, client: httpx.Client) -> None:
    assert pms(client, sim, "update", address="101", firstname="Nobody") == response_text(20)
    assert pms(client, sim, "checkin", address="101", **JOHN) == OK
    assert pms(client, sim, "update", address="101", room="101", firstname="Jane", cos="1") == OK
    assert guest(sim, "101") == {**JOHN, "firstname": "Jane", "cos": "1"}
    assert pms(client, sim, "update", address="101", lastname="D" * 33) == response_text(26)
    assert pms(client, sim, "update", address="101", cos="9") == response_text(15)
    assert guest(sim, "101") == {**JOHN, "firstname": "Jane", "cos": "1"}


def test_mov_moves_guest_and_wakeups(sim: UcmSimulator, client: httpx.Client) -> None:
    assert pms(client, sim, "checkin", address="101", **JOHN) == OK
    assert pms(client, sim, "wakeup", address="101", w_action="1", w_mode="1", w_date="20260102",
               w_time="0700") == OK
    assert pms(client, sim, "wakeup", address="101", w_action="1", w_mode="2", w_time="0630") == OK
    wakeups = sim.state()["wakeups"]["101"]
    sim.set_room_status("103", "cleaning")
    assert pms(client, sim, "mov", address="101", d_address="103") == response_text(22)
    assert pms(client, sim, "mov", address="101", d_address="1100", d_room="1100") == response_text(17)
    assert pms(client, sim, "mov", address="102", d_address="104") == response_text(20)

    assert pms(client, sim, "mov", address="101", room="101", d_address="104", d_room="104") == OK
    state = sim.state()
    assert state["rooms"]["101"]["guest"] is None and state["rooms"]["101"]["checked_in"] is False
    assert state["rooms"]["104"]["guest"] == JOHN
    assert state["wakeups"]["101"] == []
    assert state["wakeups"]["104"] == wakeups == [
        {"w_date": "20260102", "w_time": "0700", "w_mode": "1"},
        {"w_date": None, "w_time": "0630", "w_mode": "2"},
    ]


def test_wakeup_set_replace_cancel(sim: UcmSimulator, client: httpx.Client) -> None:
    wake = {"address": "101", "w_date": "20260102", "w_time": "0700"}
    assert pms(client, sim, "wakeup", w_action="1", **wake) == response_text(20)
    assert pms(client, sim, "checkin", address="101") == OK
    assert pms(client, sim, "wakeup", w_action="1", **wake) == OK
    assert pms(client, sim, "wakeup", w_action="1", w_mode="2", **wake) == OK  # same date+time: replaced
    assert pms(client, sim, "wakeup", address="101", w_action="1", w_date="20260103", w_time="0800") == OK
    assert sim.state()["wakeups"]["101"] == [
        {"w_date": "20260102", "w_time": "0700", "w_mode": "2"},
        {"w_date": "20260103", "w_time": "0800", "w_mode": "1"},
    ]
    assert pms(client, sim, "wakeup", w_action="0", **wake) == OK
    assert pms(client, sim, "wakeup", w_action="0", **wake) == OK  # cancelling again is harmless
    assert sim.state()["wakeups"]["101"] == [{"w_date": "20260103", "w_time": "0800", "w_mode": "1"}]
    assert pms(client, sim, "wakeup", address="101", w_action="1", w_time="0900") == OK
    assert pms(client, sim, "wakeup", address="101", w_action="0") == OK  # no date/time: all of them
    assert sim.state()["wakeups"]["101"] == []
    for bad in ({"w_action": "2"}, {"w_action": "1"}, {"w_action": "1", "w_time": "0700", "w_mode": "3"},
                {"w_action": "1", "w_time": "0700", "w_date": "2026-01-02"}):
        assert pms(client, sim, "wakeup", address="101", **bad) == response_text(15)


def test_checkout_clears_guest_and_wakeups(sim: UcmSimulator, client: httpx.Client) -> None:
    assert pms(client, sim, "checkin", address="101", **JOHN) == OK
    assert pms(client, sim, "wakeup", address="101", w_action="1", w_time="0700") == OK
    assert pms(client, sim, "checkout", address="101", room="102") == response_text(17)
    assert pms(client, sim, "checkout", address="101", room="101") == OK
    assert sim.state()["rooms"]["101"] == {"room": "101", "checked_in": False, "guest": None, "status": "ok"}
    assert sim.state()["wakeups"]["101"] == []
    assert pms(client, sim, "checkout", address="101") == response_text(20)
    assert pms(client, sim, "checkin", address="101", firstname="Next") == OK  # free again


def test_concurrent_checkins_of_one_room(sim: UcmSimulator) -> None:
    answers: list[str] = []

    def worker() -> None:
        with new_client(sim) as c:
            answers.append(pms(c, sim, "checkin", address="105"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(answers) == sorted([OK] + [response_text(19)] * 7)
    assert [entry["code"] for entry in sim.log()].count(0) == 1


def test_state_and_log_are_copies(sim: UcmSimulator, client: httpx.Client) -> None:
    assert pms(client, sim, "checkin", address="101", firstname="Ann") == OK
    state, log = sim.state(), sim.log()
    state["rooms"]["101"]["guest"]["firstname"] = "changed"
    log[0]["fields"]["firstname"] = "changed"
    assert guest(sim, "101")["firstname"] == "Ann"  # type: ignore[index]
    assert sim.log()[0]["fields"]["firstname"] == "Ann"


# ------------------------------------------------------------------------------------ fault injection


def test_fault_http_500_does_not_execute(sim: UcmSimulator, client: httpx.Client) -> None:
    sim.fail_next(2, http_status=500)
    for _ in range(2):
        response = get(client, sim, xml("checkin", address="101", **JOHN))
        assert response.status_code == 500
        assert guest(sim, "101") is None
    assert pms(client, sim, "checkin", address="101", **JOHN) == OK
    assert [entry["code"] for entry in sim.log()] == [None, None, 0]


def test_fault_code_answers_without_executing(sim: UcmSimulator, client: httpx.Client) -> None:
    sim.fail_next(1, code=22)
    assert pms(client, sim, "checkin", address="101") == response_text(22)
    assert guest(sim, "101") is None
    assert pms(client, sim, "checkin", address="101") == OK


def test_fault_reset_raises_and_retry_is_safe(sim: UcmSimulator, client: httpx.Client) -> None:
    assert pms(client, sim, "checkin", address="101", **JOHN) == OK
    sim.fail_next(1, reset=True)
    with pytest.raises(httpx.TransportError):
        get(client, sim, xml("mov", address="101", d_address="102"))
    assert guest(sim, "101") == JOHN and guest(sim, "102") is None
    assert pms(client, sim, "mov", address="101", d_address="102") == OK
    assert guest(sim, "102") == JOHN


def test_fault_delay_then_executes(sim: UcmSimulator, client: httpx.Client) -> None:
    sim.fail_next(1, delay_s=0.3)
    started = time.monotonic()
    assert pms(client, sim, "checkin", address="101") == OK
    assert time.monotonic() - started >= 0.3
    assert guest(sim, "101") is not None
    sim.fail_next(1, delay_s=0.1, code=19)  # delay combined with a code: answers the code, executes nothing
    assert pms(client, sim, "checkout", address="101") == response_text(19)
    assert guest(sim, "101") is not None


def test_fault_timeout_then_next_call_works(sim: UcmSimulator) -> None:
    sim.fail_next(1, timeout=True)
    with new_client(sim, read_timeout=1.0) as c:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            get(c, sim, xml("checkin", address="101"))
        assert 0.9 <= time.monotonic() - started < 3
        assert guest(sim, "101") is None
        assert pms(c, sim, "checkin", address="101") == OK
    assert [entry["code"] for entry in sim.log()] == [None, 0]


def test_fault_only_hits_the_given_action(sim: UcmSimulator, client: httpx.Client) -> None:
    sim.fail_next(1, code=22, action="mov")
    assert pms(client, sim, "checkin", address="101") == OK
    assert pms(client, sim, "mov", address="101", d_address="102") == response_text(22)
    assert pms(client, sim, "mov", address="101", d_address="102") == OK


def test_fail_next_validates_its_arguments(sim: UcmSimulator) -> None:
    for kwargs in ({"count": -1, "code": 22}, {"count": 1}, {"count": 1, "code": 22, "reset": True},
                   {"count": 1, "code": 99}, {"count": 1, "http_status": 700}, {"count": 1, "delay_s": -1.0},
                   {"count": 1, "code": 22, "action": "dnd"}):
        with pytest.raises(ValueError):  # noqa: PT011
            sim.fail_next(**kwargs)
    with pytest.raises(ValueError):  # noqa: PT011
        sim.set_random_faults(1.5)
    with pytest.raises(ValueError):  # noqa: PT011
        sim.set_room_status("999", "cleaning")


def test_admin_endpoints(sim: UcmSimulator, client: httpx.Client) -> None:
    response = client.post(f"{sim.url}/faults", json={"count": 1, "http_status": 503})
    assert response.status_code == 200
    assert get(client, sim, xml("checkin", address="101")).status_code == 503
    assert client.post(f"{sim.url}/faults", json={"count": 3, "code": 22}).status_code == 200
    assert client.post(f"{sim.url}/reset-faults").status_code == 200
    assert pms(client, sim, "checkin", address="101", firstname="Zoë") == OK
    log = client.get(f"{sim.url}/log").json()
    assert log == sim.log()
    assert [(e["action"], e["address"], e["code"]) for e in log] == [("checkin", "101", None), ("checkin", "101", 0)]
    assert client.get(f"{sim.url}/state").json()["rooms"]["101"]["guest"]["firstname"] == "Zoë"
    for bad in ({"count": 1}, {"count": 1, "bogus": True}, [1, 2]):
        assert client.post(f"{sim.url}/faults", json=bad).status_code == 400
    assert client.post(f"{sim.url}/faults", content=b"{not json").status_code == 400
    assert client.get(f"{sim.url}/nope").status_code == 404


def outcomes(simulator: UcmSimulator, calls: int) -> list[str]:
    seen: list[str] = []
    with new_client(simulator) as c:
        for i in range(calls):
            action = "checkin" if i % 2 == 0 else "checkout"
            try:
                response = get(c, simulator, xml(action, address="101"))
            except httpx.TransportError as exc:
                seen.append(type(exc).__name__)
            else:
                seen.append(f"{response.status_code} {response.text}")
    return seen


def test_random_faults_with_a_seed_are_reproducible() -> None:
    runs = []
    for _ in range(2):
        with new_sim() as simulator:
            simulator.set_random_faults(0.6, seed=20260101)
            runs.append((outcomes(simulator, 14), simulator.state(), simulator.log()))
    (first, state1, log1), (second, state2, log2) = runs
    assert first == second and state1 == state2 and log1 == log2
    assert any(o.startswith("200 [0]") for o in first)
    assert any(not o.startswith("200 [0]") for o in first)  # some calls were faulted
    with new_sim() as simulator:
        simulator.set_random_faults(0.0, seed=1)
        assert all(o.startswith("200 ") for o in outcomes(simulator, 4))


# ------------------------------------------------------------------------------------------ robustness


def test_stop_is_fast_even_with_a_hanging_call() -> None:
    simulator = new_sim()
    simulator.start()
    errors: list[BaseException] = []

    def hang() -> None:
        with new_client(simulator, read_timeout=20.0) as c:
            try:
                get(c, simulator, xml("checkin", address="101"))
            except httpx.HTTPError as exc:
                errors.append(exc)

    simulator.fail_next(1, timeout=True)
    thread = threading.Thread(target=hang)
    thread.start()
    deadline = time.monotonic() + 5
    while not simulator.log() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert simulator.log(), "the hanging call never arrived"
    started = time.monotonic()
    simulator.stop()
    assert time.monotonic() - started < 2
    thread.join(3)
    assert not thread.is_alive()
    assert errors  # the client saw the connection go away instead of waiting 20 s
    assert guest(simulator, "101") is None
    simulator.stop()  # idempotent


def test_garbage_and_vanishing_clients_do_not_kill_the_server(sim: UcmSimulator, client: httpx.Client) -> None:
    host, port = "127.0.0.1", int(sim.url.rsplit(":", 1)[1])
    context = ssl_context_from(sim.ca_pem)
    # Plain HTTP on the TLS port.
    with socket.create_connection((host, port), timeout=3) as plain:
        plain.sendall(b"GET /pmsapi HTTP/1.1\r\nHost: x\r\n\r\n")
        with contextlib.suppress(OSError):
            plain.recv(100)
    # TLS, then bytes that are not HTTP.
    with socket.create_connection((host, port), timeout=3) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(b"\x00\x01\x02 garbage garbage\r\n\r\n")
        answer = b""
        while chunk := tls.recv(4096):
            answer += chunk
        assert b"400" in answer
    # A client that connects and says nothing, one that stops mid-request, one that leaves mid-handshake.
    idle = socket.create_connection((host, port), timeout=3)
    partial = context.wrap_socket(socket.create_connection((host, port), timeout=3), server_hostname=host)
    partial.sendall(b"GET /pmsapi?token=")
    with socket.create_connection((host, port), timeout=3) as gone:
        gone.sendall(b"\x16\x03\x01\x00")
    try:
        assert pms(client, sim, "checkin", address="101") == OK
    finally:
        partial.close()
        idle.close()
    assert pms(client, sim, "checkout", address="101") == OK
