"""The leak scan itself: it must find what it is meant to find, or "no leak" means nothing."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from pms_connector.config import parse_property
from pms_connector.observability import logger
from tests.conftest import property_document
from tests.leakscan import LeakScan, RunnerOutput, feed_captured, scanning


@pytest.mark.usefixtures("planting_leaks")
def test_a_guest_name_or_secret_in_a_log_line_is_reported() -> None:
    with scanning() as scan:
        prop = parse_property(property_document("demo-hotel"))
        scan.harvest_record([{"action": "BOOKING", "GUEST_LIST": [
            {"uid": "g1", "name": "Zacarías", "surname": "Ibarrondo", "email": "z.ibarrondo@example.com",
             "passport": "PAX99887766"}]}])
        logger.info("checked in", extra={"guest": "Ibarrondo"})          # a leak
        logger.info("room ready", extra={"room": "101"})                  # not one
        assert prop.ingest is not None
        logger.warning(f"bad key {prop.ingest.api_key.get_secret_value()}")  # a leak
    kinds = sorted(leak.kind for leak in scan.leaks())
    assert kinds == ["guest surname", "ingest.api_key of demo-hotel"]
    assert all(leak.value not in str(leak) for leak in scan.leaks())  # the report does not repeat the value


def test_credentials_of_an_authorization_header_are_learned() -> None:
    scan = LeakScan()
    scan.harvest_authorization("Basic " + base64.b64encode(b"pmslink:s3cr3t-pass").decode())
    scan.harvest_authorization("Bearer ingest-key-0123456789")
    assert {"s3cr3t-pass", "ingest-key-0123456789"} <= set(scan.values)


def test_values_of_letters_or_digits_count_only_as_whole_words() -> None:
    scan = LeakScan(values={"Rosa": "guest name", "1234567890": "guest passport"},
                    lines=['{"msg": "Rosario street"}', '{"arn": "arn:aws:123456789012:x"}', '{"guest": "Rosa"}',
                           '{"doc": "P1234567890"}', '{"doc": "1234567890"}'])
    assert [leak.line for leak in scan.leaks()] == ['{"guest": "Rosa"}', '{"doc": "1234567890"}']


def test_encoded_forms_of_a_value_are_found_inside_urls_and_xml() -> None:
    scan = LeakScan()
    scan.harvest_record({"name": "Zoë Ibarrondo"})
    scan.lines = ["GET /pmsapi?format=xml&cmd=%3Cfirst_name%3EZo%C3%AB%20Ibarrondo%3C/first_name%3E",
                  "<first_name>Zoë Ibarrondo</first_name>"]
    assert len(scan.leaks()) == 2


def test_the_derived_ucm_token_of_a_property_is_learned() -> None:
    from pms_connector.config import parse_property
    from pms_connector.ucm.client import ucm_token

    prop = parse_property(property_document("demo-hotel"))
    scan = LeakScan()
    scan.harvest_config(prop)
    assert prop.ucm is not None and ucm_token(prop.ucm) in scan.values



# --- the local runner: its banner, the values it creates, its output read to the end ----------------------

PROPERTIES_YAML = """\
- id: banner-inn
  name: Banner Inn
  timezone: Europe/Madrid
  httppms: {auth: md5, user: pmslink, password: banner-md5-secret-7781}
  ingest: {api_key: banner-ingest-key-0123456789}
  ucm: {base_url: "https://ucm-simulator", api_user: cdrapi, api_password: banner-ucm-api-pass-5511,
        pms_user: admin1, pms_password: banner-ucm-pms-pass-6622}
- id: token-lodge
  name: Token Lodge
  timezone: America/New_York
  httppms: {auth: token, token: lodge-fixed-token-99887766}
  ingest: {api_key: lodge-ingest-key-0123456789}
  pms_server: {url: "http://127.0.0.1:9", auth: md5, user: pms, password: lodge-pms-server-pass-4433}
- id: basic-house
  name: Basic House
  timezone: Europe/Madrid
  httppms: {auth: basic, user: pmslink, password: basic-house-pass-2211}
  ingest: {api_key: basic-house-ingest-key-0123456789}
"""


@pytest.fixture
def properties_file(tmp_path: Path) -> Path:
    path = tmp_path / "properties.yaml"
    path.write_text(PROPERTIES_YAML, encoding="utf-8")
    return path


def banner(path: Path) -> list[str]:
    """The banner `pms-connector local` prints for this file (runner.usage, the product's own)."""
    from pms_connector.config import load_properties_file
    from pms_connector.local.runner import usage

    return ["moto server on http://127.0.0.1:5000", "", *usage("http://127.0.0.1:3000",
                                                                 load_properties_file(path)).splitlines()]


def test_every_secret_of_a_properties_file_handed_to_a_runner_is_learned(properties_file: Path) -> None:
    scan = LeakScan()
    RunnerOutput(scan, properties_file)
    for secret in ("banner-md5-secret-7781", "banner-ingest-key-0123456789", "banner-ucm-api-pass-5511",
                   "banner-ucm-pms-pass-6622", "lodge-fixed-token-99887766", "lodge-ingest-key-0123456789",
                   "lodge-pms-server-pass-4433", "García"):
        assert secret in scan.values, secret
    invalid = properties_file.with_name("bad.yaml")  # refused by the product, its secrets learned all the same
    invalid.write_text("- id: broken\n  timezone: Mars/Olympus\n  ingest: {api_key: broken-key-424242}\n",
                       encoding="utf-8")
    scan.harvest_properties_file(invalid)
    assert "broken-key-424242" in scan.values


def test_the_banner_may_print_its_demo_credentials_and_nothing_else(properties_file: Path) -> None:
    scan = LeakScan()
    output = RunnerOutput(scan, properties_file)
    lines = banner(properties_file)
    assert sum(line.startswith("curl ") for line in lines) == 7
    for line in lines:
        output.feed_line(line)
    output.close()
    assert output.state == "after" and len(scan.documented) == 7
    assert scan.leaks() == []  # the documented exception: the ingest keys, the signed requests, the demo guest

    ingest = next(line for line in lines if "/pms/banner-inn/events" in line)
    get_request = next(line for line in lines if "/httppms" in line and "banner-inn" in line)
    other = next(line for line in lines if "/pms/token-lodge/events" in line)
    basic = next(line for line in lines if "Authorization: Basic" in line)
    planted = LeakScan()
    late = RunnerOutput(planted, properties_file)
    for line in [
        "loading properties: banner-ingest-key-0123456789",  # before the banner: an ordinary line
        lines[2],
        ingest + " -H 'X-Ucm: banner-ucm-api-pass-5511'",  # a secret the banner is not meant to print
        other.replace("lodge-ingest-key-0123456789", "banner-ingest-key-0123456789"),  # another property's key
        get_request.replace('"pmslink"', '"pmslink", "password": "banner-md5-secret-7781"'),
        basic + " -H 'X-Token: lodge-fixed-token-99887766'",  # its own credential yes, that token no
        "Press Ctrl-C to stop.",
        get_request,  # the same command after the banner: a leak
        "dispatcher: check-in of García",  # the demo guest outside the banner's ingest command
    ]:
        late.feed_line(line)
    late.close()
    kinds = sorted(leak.kind for leak in planted.leaks())
    assert kinds == sorted(["ingest.api_key of banner-inn", "ucm.api_password of banner-inn",
                            "httppms.password of banner-inn", "demo guest name", "httppms.token of token-lodge",
                            "httppms md5 token of banner-inn (runner)"]), kinds
    assert planted.leaks()[0].line.startswith("loading properties")


def test_a_token_created_only_in_the_runner_subprocess_is_caught(properties_file: Path) -> None:
    """The subprocess signs with the password of the file it was handed: the scan never sees that token
    computed, it learns it from the file and the runner's lifetime."""
    code = ("import datetime, hashlib, time, zoneinfo, yaml; "
            f"doc = yaml.safe_load(open({str(properties_file)!r}))[1]['pms_server']; "
            "now = datetime.datetime.now(zoneinfo.ZoneInfo('America/New_York')).strftime('%Y%m%d%H%M%S'); "
            "print('polling the PMS with', hashlib.md5((doc['user'] + now + doc['password']).encode())"
            ".hexdigest().upper(), flush=True)")
    scan = LeakScan()
    output = RunnerOutput(scan, properties_file)
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    output.attach(process)
    assert process.wait(timeout=30) == 0 and output.close() is None
    assert [leak.kind for leak in scan.leaks()] == ["pms_server md5 token of token-lodge (runner)"]


def test_a_runner_no_test_stopped_is_stopped_and_read_to_its_last_line(properties_file: Path) -> None:
    """Output that arrives only as the runner stops (at session end) is still searched."""
    code = ("import sys, time\nprint('pms-connector is running', flush=True)\ntry:\n    time.sleep(60)\n"
            "except KeyboardInterrupt:\n    time.sleep(0.5)\n"
            "    print('stopping: ucm pass banner-ucm-pms-pass-6622')\n")
    scan = LeakScan()
    output = RunnerOutput(scan, properties_file)
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    output.attach(process)
    deadline = time.monotonic() + 30
    while not scan.lines and time.monotonic() < deadline:  # running, never stopped by the test
        time.sleep(0.05)
    assert scan.close_runners() == []
    assert process.poll() is not None and output.thread is not None and not output.thread.is_alive()
    assert [leak.kind for leak in scan.leaks()] == ["ucm.pms_password of banner-inn"]
    assert output.close() is None  # once is enough: closing again changes nothing


# --- stdout: what tests print, captured by pytest, and Python subprocesses' output -------------------------


@dataclass
class Report:
    when: str
    sections: list[tuple[str, str]]


def test_captured_stdout_and_stderr_of_each_phase_are_searched_once() -> None:
    scan = LeakScan()
    scan.add("Ibarrondo", "guest surname")
    emf = json.dumps({"_aws": {"CloudWatchMetrics": [{"Namespace": "PmsConnector", "Metrics": []}]},
                      "service": "pms-connector", "guest": "Ibarrondo"})
    setup = ("Captured stdout setup", "preparing\n")
    feed_captured(scan, Report("setup", [setup]))
    feed_captured(scan, Report("call", [setup, ("Captured stdout call", emf + "\n"),
                                        ("Captured stderr call", "warning: nothing\n"),
                                        ("Captured log call", "INFO Ibarrondo (logging: scanned by its handler)")]))
    assert scan.lines == ["preparing", emf, "warning: nothing"]
    assert [leak.kind for leak in scan.leaks()] == ["guest surname"]
    scan.logged.add('{"level":"INFO","message":"seen"}')  # the product's own line, already kept by its handler
    feed_captured(scan, Report("teardown", [("Captured stdout teardown", '{"level":"INFO","message":"seen"}\n')]))
    assert scan.line_count == 3


@pytest.mark.usefixtures("planting_leaks")
def test_the_output_of_a_python_subprocess_and_the_event_it_was_given_are_scanned() -> None:
    from tests.helpers import ingest_event

    event = ingest_event("demo-hotel", [{"action": "RS"}], key="planted-subprocess-key-31337")
    with scanning() as scan:
        scan.add("Quiroga-Etxeberria", "guest surname")
        subprocess.run([sys.executable, "-c", "import sys; sys.stdin.read(); print('Quiroga-Etxeberria')"],
                       input=json.dumps(event), capture_output=True, text=True, check=True)
        with pytest.raises(subprocess.CalledProcessError):
            subprocess.run([sys.executable, "-c", "import sys; sys.exit('bad key planted-subprocess-key-31337')"],
                           capture_output=True, text=True, check=True)
        subprocess.run(["/bin/sh", "-c", "echo Quiroga-Etxeberria"], capture_output=True, check=True)  # no log
    assert sorted(leak.kind for leak in scan.leaks()) == ["bearer credential", "guest surname"]
    assert len(scan.lines) == 2


@pytest.mark.usefixtures("planting_leaks")
def test_md5_tokens_the_tests_compute_are_learned() -> None:
    from tests.helpers import signed

    with scanning() as scan:
        token = signed({"action": "GET_REQUEST"}, password="planted-md5-password")["usertoken"]
    assert scan.values.get(token) == "md5 token"
    scan.lines = [f"answer for {token.upper()}"]  # tokens are found whatever their letter case
    assert [leak.kind for leak in scan.leaks()] == ["md5 token"]


# --- the cost: every line searched for every value, in one pass ---------------------------------------------


def test_the_longest_value_at_a_position_is_the_one_reported() -> None:
    scan = LeakScan(lines=['{"guest": "Rosa Maria Delgado"}'])
    scan.add("Rosa", "guest name")
    scan.add("Rosa Maria Delgado", "guest full name")
    assert [leak.kind for leak in scan.leaks()] == ["guest full name"]


def test_thousands_of_values_over_tens_of_thousands_of_lines_take_seconds_not_minutes() -> None:
    """A flat alternation of 4,000 values took over a minute for 30,000 lines; the trie takes about a second."""
    scan = LeakScan()
    for i in range(2_000):
        scan.add(f"Guest{i:05d}x", "guest name")
        scan.add(hashlib.md5(str(i).encode()).hexdigest(), "md5 token", 6)
    text = " ".join(["dispatcher", "room", "101", "demo-hotel", "status", "2026-01-01T10:00:00"] * 6)
    scan.lines = [f'{{"level":"INFO","message":"{text} {i}"}}' for i in range(30_000)]
    scan.lines[17_000] += " Guest01234x"
    started = time.perf_counter()
    leaks = scan.leaks()
    assert [leak.value for leak in leaks] == ["Guest01234x"]
    assert time.perf_counter() - started < 20


def test_the_summary_counts_every_source() -> None:
    scan = LeakScan(lines=["a", "b"], documented=[("curl ...", frozenset())])
    scan.add("some-secret-value", "x")
    assert scan.summary([]) == ("leak scan: 3 log lines searched for 1 secret and guest-data values: "
                                "0 leak(s)")


def test_the_session_feeds_each_test_s_captured_output_to_its_scan(request: pytest.FixtureRequest,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from tests import conftest

    hooks = [impl.function for impl in request.config.pluginmanager.hook.pytest_runtest_logreport.get_hookimpls()]
    assert conftest.pytest_runtest_logreport in hooks
    if not conftest._SESSION_SCAN:
        pytest.skip("no session scan")
    scoped = LeakScan()
    scoped.add("Ibarrondo", "guest surname")
    monkeypatch.setattr(conftest, "_SESSION_SCAN", [scoped, None])  # the planted line stays out of the session's
    conftest.pytest_runtest_logreport(Report("call", [("Captured stdout call", "guest Ibarrondo\n")]))
    assert [leak.kind for leak in scoped.leaks()] == ["guest surname"]
