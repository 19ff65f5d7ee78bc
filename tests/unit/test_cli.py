"""Unit tests of the operator CLI's pieces that need no AWS: times, tables, redaction, the replay search, usage."""

from __future__ import annotations

import io
import socket
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pms_connector.cli import _Progress, _table, main
from pms_connector.config import UcmSettings
from pms_connector.operator import OperatorError, check_ucm, first_seq_since, parse_since, redact
from pms_connector.store import QueuedRecord

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp()


# ------------------------------------------------------------------------------------------ --since


@pytest.mark.parametrize(("text", "seconds_ago"), [("30m", 1800), ("2h", 7200), ("1d", 86_400), ("45s", 45),
                                                   (" 2H ", 7200)])
def test_relative_since(text: str, seconds_ago: int) -> None:
    assert parse_since(text, NOW) == NOW - seconds_ago


@pytest.mark.parametrize("text", ["2026-03-01T08:00:00Z", "2026-03-01T09:00:00+01:00", "2026-03-01T08:00:00",
                                  "2026-03-01 08:00"])
def test_iso_since_without_an_offset_is_utc(text: str) -> None:
    assert parse_since(text, NOW) == datetime(2026, 3, 1, 8, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize("text", ["yesterday", "2h30m", "-2h", "2026-13-01", "2026-03-02T00:00:00Z"])
def test_an_unreadable_or_future_since_is_a_usage_error(text: str) -> None:
    with pytest.raises(OperatorError) as raised:
        parse_since(text, NOW)
    assert raised.value.exit_code == 2


# ------------------------------------------------------------------------------- the replay search


class FakeFifo:
    """A FIFO as ConnectorStore reads it: records by seq; missing ones expired and were deleted."""

    def __init__(self, written_at: dict[int, int]) -> None:
        self.written_at = written_at

    def fifo_tail(self, _pid: str) -> int:
        return max(self.written_at, default=0)

    def read_fifo(self, _pid: str, *, after: int, limit: int) -> list[QueuedRecord]:
        return [QueuedRecord(seq, {}, at, at + 10**6) for seq, at in sorted(self.written_at.items())
                if after < seq <= after + limit]


@given(st.lists(st.integers(0, 5), min_size=0, max_size=400), st.sets(st.integers(1, 400)), st.integers(0, 1200))
def test_the_first_record_since_is_found_whatever_the_gaps(steps: list[int], expired: set[int], since: int) -> None:
    # Given records written at non-decreasing times, the oldest ones possibly expired (a prefix of them)
    times = {seq: sum(steps[:seq]) for seq in range(1, len(steps) + 1)}
    cut = min(expired, default=0) % (len(steps) + 1)
    present = {seq: at for seq, at in times.items() if seq > cut}
    expected = next((seq for seq, at in sorted(present.items()) if at >= since), None)

    assert first_seq_since(FakeFifo(present), "p", since) == expected


# ---------------------------------------------------------------------------------------- redaction


def test_redact_removes_every_secret_and_says_which_are_set() -> None:
    document: dict[str, Any] = {
        "id": "h", "httppms": {"auth": "md5", "user": "u"}, "ingest": {},
        "ucm": {"base_url": "https://u", "api_user": "a", "pms_user": "p", "pms_password": "leaked-in-ssm",
                "ca_pem": "-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n"},
    }
    secrets = {"httppms": {"password": "pw"}, "ingest": {"api_key": "k" * 20}, "ucm": {"api_password": "ap"}}

    public, states = redact(document, secrets)

    assert "leaked-in-ssm" not in repr(public) and "pw" not in repr(public)
    assert states == {"httppms.password": "set", "ingest.api_key": "set", "ucm.api_password": "set",
                      "ucm.pms_password": "set in the SSM parameter (move it to the secret)"}
    assert public["ucm"]["ca_pem"] == "<PEM, 1 certificate(s)>"
    assert document["ucm"]["pms_password"] == "leaked-in-ssm"  # the caller's document is left as it was


def test_redact_reports_missing_secrets_only_where_the_document_needs_them() -> None:
    _, states = redact({"httppms": {"auth": "token"}, "pms_server": {"auth": "basic"}}, None)
    assert states == {"httppms.token": "missing", "ingest.api_key": "missing", "pms_server.password": "missing"}


# ------------------------------------------------------------------------------------- output pieces


def test_table_aligns_columns_and_right_aligns_numbers() -> None:
    text = _table(["ID", "QUEUE"], [["a-long-id", 3], ["b", 120]])
    assert text.splitlines() == ["ID         QUEUE", "a-long-id      3", "b            120"]


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_counts_on_a_terminal_only_and_only_for_many_items() -> None:
    terminal, pipe = Tty(), io.StringIO()
    for stream in (terminal, pipe):
        progress = _Progress("reading", stream)
        progress(1, 3)
        progress(5, 40)
        progress.clear()
    assert terminal.getvalue() == "\rreading 5/40\r\x1b[K"
    assert pipe.getvalue() == ""


# ------------------------------------------------------------------------------------------ check-ucm


def test_a_name_that_does_not_resolve_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_host(*_args: Any, **_kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    settings = UcmSettings(base_url="https://ucm.hotel.invalid:8089", api_user="a", api_password="b",
                           pms_user="c", pms_password="d")

    steps = list(check_ucm(settings))

    assert [(s.name, s.ok, s.exit_code) for s in steps] == [("dns", False, 3)]
    assert steps[0].detail == "ucm.hotel.invalid: Name or service not known"


def test_an_invalid_ca_pem_fails_the_tls_step_before_any_handshake() -> None:
    with socket.socket() as listener:  # a local port that accepts connections and says nothing
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        settings = UcmSettings(base_url=f"https://127.0.0.1:{listener.getsockname()[1]}", api_user="a",
                               api_password="b", pms_user="c", pms_password="d",
                               ca_pem="-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")

        steps = list(check_ucm(settings))

    assert [(s.name, s.ok, s.exit_code) for s in steps] == [("dns", True, 0), ("tcp", True, 0), ("tls", False, 4)]
    assert steps[-1].detail == "ucm.ca_pem is not a valid PEM certificate"


# ---------------------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize("argv", [
    ["property", "validate"],  # an ID or --all
    ["property", "validate", "x", "--all"],
    ["queue", "depth", "--stack", "s", "--table", "t"],
    ["inbound", "tail", "x", "--limit", "0"],
    ["queue", "replay", "x", "--since", "soon"],
    ["queue", "replay", "x"],  # argparse: --since is required
    ["no-such-command"],
])
def test_usage_errors_exit_2_before_any_aws_call(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "error" in capsys.readouterr().err
