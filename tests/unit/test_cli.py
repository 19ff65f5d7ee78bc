"""Unit tests of the operator CLI's pieces that need no AWS: times, tables, progress, redaction, the replay
search, paging, the check-ucm report, usage."""

from __future__ import annotations

import io
import json
import socket
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pms_connector.cli import _ProgressBar, _Table, _table, main
from pms_connector.config import UcmSettings
from pms_connector.operator import (
    CheckStep,
    OperatorError,
    UcmCheck,
    check_ucm,
    fifo_listing,
    first_seq_since,
    inbound_tail,
    outbox_listing,
    parse_since,
    redact,
)
from pms_connector.outbox import OutboxCommand
from pms_connector.store import Cursor, InboundEntry, QueuedRecord

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


def test_the_replay_search_reports_its_reads_within_their_bound() -> None:
    calls: list[tuple[int, int | None]] = []
    fifo = FakeFifo({seq: seq * 10 for seq in range(1, 5001)})

    assert first_seq_since(fifo, "p", 25_005, lambda done, total: calls.append((done, total))) == 2501

    assert [done for done, _ in calls] == list(range(1, len(calls) + 1))
    assert {total for _, total in calls} == {5000 .bit_length()}  # 13 reads at most for 5000 records


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


def test_table_cuts_long_cells_with_an_ellipsis_and_drops_control_characters() -> None:
    text = _table(["SEQ", "ROOM", "LAST ERROR"], [[7, "10\x1b[2J1", "x" * 30], [12, None, "short"]],
                  limits={"LAST ERROR": 10})
    assert text.splitlines() == ["SEQ  ROOM     LAST ERROR",
                                 "  7  10 [2J1  xxxxxxxxx…",
                                 " 12  -        short"]


def test_table_rows_added_later_keep_the_columns() -> None:
    table = _Table(["SEQ", "ACTION", "ROOM"], minimums={"ACTION": 8}, limits={"ROOM": 6}, right=("SEQ",))
    header = table.render([])
    later = table.row([1234, "DND", "1010101010"])
    longer = table.row([5, "BILL_REQUEST", "1"])
    assert header == "SEQ  ACTION    ROOM"
    assert later == "1234  DND       10101…"  # a wider number widens its line; a cell past its limit is cut
    assert longer.split() == ["5", "BILL_REQUEST", "1"]
    assert later.index("DND") - 1 == header.index("ACTION")


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_progress_bar_shows_count_share_and_time_then_a_summary() -> None:
    terminal, clock = Tty(), Clock()
    with _ProgressBar("property", "properties", stream=terminal, clock=clock) as bar:
        bar(3, None)  # paging: the total is not known yet
        clock.now += 0.625  # past the delay
        bar(12, None)
        clock.now += 1.0
        bar(45, 100)
        clock.now += 0.0625
        bar(46, 100)  # within a tenth of a second of the last drawing: not drawn again
        clock.now += 2.0
        bar(44, 100)  # a slower worker's count: the bar never goes back
    assert terminal.getvalue().split("\r") == [
        "", "12 properties 0.6 s\x1b[K", "[#########...........] 45/100 properties 45% 1.6 s\x1b[K",
        "[#########...........] 46/100 properties 46% 3.7 s\x1b[K", "\x1b[K46 properties in 3.7 s\n"]


def test_the_progress_bar_writes_nothing_off_a_terminal_or_for_quick_work() -> None:
    pipe, terminal, clock = io.StringIO(), Tty(), Clock()
    with _ProgressBar("entry", "entries", stream=pipe, delay=0, clock=clock) as bar:
        bar(5, 10)
    with _ProgressBar("entry", "entries", stream=terminal, clock=clock) as bar:
        bar(5, 10)
        clock.now += 0.1
        bar(10, 10)
    with _ProgressBar("entry", "entries", stream=terminal, delay=0, enabled=False, clock=clock) as bar:
        bar(10, 10)
    assert pipe.getvalue() == terminal.getvalue() == ""


def test_the_progress_bar_is_cleared_without_a_summary_on_an_error() -> None:
    terminal = Tty()

    def interrupted() -> None:
        with _ProgressBar("entry", "entries", stream=terminal, delay=0) as bar:
            bar(1, 1)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert terminal.getvalue().endswith("1/1 entry 100% 0.0 s\x1b[K\r\x1b[K")


# ------------------------------------------------------------------------------------------- paging


class FakeTarget:
    """What the listing functions use of a Target: its stores (fakes here)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def connector_store(self) -> Any:
        return self.store

    def outbox_store(self) -> Any:
        return self.store


class FakeLogs:
    """An inbound log, a FIFO and an outbox as the stores read them; ``page_items`` cuts every query short,
    as DynamoDB does at 1 MB."""

    def __init__(self, seqs: list[int], *, expired: frozenset[int] = frozenset(), page_items: int = 10**6) -> None:
        self.seqs, self.expired, self.page_items = sorted(seqs), expired, page_items
        self.queries = 0

    def _range(self, after: int, limit: int, upto: int | None = None) -> list[int]:
        self.queries += 1
        found = [s for s in self.seqs if s > after and (upto is None or s <= upto)]
        return found[:min(limit, self.page_items)]

    def inbound_tail(self, _pid: str) -> int:
        return max(self.seqs, default=0)

    def list_inbound(self, _pid: str, *, after: int, limit: int) -> list[InboundEntry]:
        return [InboundEntry(s, "DND", {"room": str(s)}, f"r{s}", s, False) for s in self._range(after, limit)
                if s not in self.expired]

    fifo_tail = inbound_tail

    def get_cursor(self, _pid: str) -> Cursor:
        return Cursor(delivered=max(self.seqs, default=0) // 2)

    def read_fifo(self, _pid: str, *, after: int, limit: int) -> list[QueuedRecord]:
        return [QueuedRecord(s, {"action": "DND", "room": str(s), "name": "guest"}, s, 0)
                for s in self._range(after, limit, upto=after + limit)]

    def _command(self, seq: int) -> OutboxCommand:
        return OutboxCommand(seq, "checkout", {"address": str(seq), "name": "guest"}, None, 0, 0, "pending", None,
                             None)

    def listing(self, _pid: str, *, limit: int) -> tuple[int, list[OutboxCommand]]:
        self.queries += 1
        return 0, [self._command(s) for s in self.seqs[-limit:]]

    def pending(self, _pid: str, *, after: int, limit: int) -> list[OutboxCommand]:
        return [self._command(s) for s in self._range(after, limit)]


@pytest.mark.parametrize(("page_items", "expired"), [(10**6, frozenset(range(600, 720))), (7, frozenset())])
def test_inbound_tail_pages_through_gaps_expired_entries_and_short_pages(page_items: int,
                                                                          expired: frozenset[int]) -> None:
    # A gap (expired entries DynamoDB deleted), expired ones it still holds (the store filters them), and
    # queries cut short (1 MB). Both at once (a short page of expired entries only) would move on by a window.
    seqs = [s for s in range(1, 1001) if not 300 < s <= 450]
    logs = FakeLogs(seqs, expired=expired, page_items=page_items)
    seen: list[tuple[int, int | None]] = []

    rows = inbound_tail(FakeTarget(logs), "p", 800, lambda done, total: seen.append((done, total)))

    assert [r.seq for r in rows] == [s for s in seqs if s > 200 and s not in expired]
    assert seen[-1] == (800, 800) and all(total == 800 for _, total in seen)
    assert logs.queries <= 800 // min(page_items, 100) + 2


@pytest.mark.parametrize("page_items", [10**6, 7])
def test_fifo_listing_pages_and_shows_action_and_room_only(page_items: int) -> None:
    logs = FakeLogs([s for s in range(1, 401) if s != 250], page_items=page_items)

    rows = fifo_listing(FakeTarget(logs), "p", after=100, limit=250)  # type: ignore[arg-type]

    assert [r.seq for r in rows] == [s for s in range(101, 351) if s != 250]
    assert {r.state for r in rows if r.seq <= 200} == {"delivered"} and rows[-1].state == "pending"
    assert "guest" not in repr(rows)


def test_outbox_listing_reads_the_newest_page_then_older_ones() -> None:
    logs = FakeLogs([s for s in range(1, 301) if s % 50])  # some commands expired

    few = outbox_listing(FakeTarget(logs), "p", 30)  # type: ignore[arg-type]
    queries = logs.queries
    many = outbox_listing(FakeTarget(logs), "p", 250)  # type: ignore[arg-type]

    existing = [s for s in range(1, 301) if s % 50]
    assert [r.seq for r in few] == existing[-30:]
    assert queries == 1  # as before: one query
    # The newest 100 commands (one query), then those among the 150 sequence numbers before them.
    first = existing[-100]
    assert [r.seq for r in many] == [s for s in existing if s >= first - 150]
    assert {r.address for r in many} >= {"299"} and "guest" not in repr(many)


# ------------------------------------------------------------------------------------ the check report


def test_a_check_report_reads_back_as_it_was_written_and_nothing_else() -> None:
    check = UcmCheck("h", "https://10.0.0.5:8089", "the dispatcher function f",
                     [CheckStep("dns", True, "ok", 0.0012345), CheckStep("tcp", False, "refused", 0.5, 3)])
    document = check.to_json()

    assert document["exit_code"] == 3 and document["steps"][0]["seconds"] == 0.001234
    assert UcmCheck.from_json(json.loads(json.dumps({**document, "extra": "secret"}))).to_json() == document
    for junk in ({}, [], {"property": "h", "steps": "x", "exit_code": 0},
                 {"property": "h", "steps": [{"ok": "yes"}], "exit_code": 0}):
        with pytest.raises(ValueError, match="not a check"):
            UcmCheck.from_json(junk)
    assert UcmCheck("h", None, "f", error="no property 'h'", error_code=2).exit_code == 2


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
    ["property", "check-ucm"],  # the ID is required
    ["no-such-command"],
])
def test_usage_errors_exit_2_before_any_aws_call(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "error" in capsys.readouterr().err
