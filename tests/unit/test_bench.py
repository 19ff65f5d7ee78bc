"""bench/run.py --quick: the table keeps its shape, and its AWS-call counts are the ones the tests assert.

The bench runs the real handlers on moto, so if a change adds an AWS call, this test and the test that asserts
the call list fail together, and the README's table cannot silently drift from the code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_cost_model import load

run = load("run")

# Each operation's AWS calls, in the bench's order; all but two are asserted by the test named next to them.
ASSERTED_CALLS = {
    # Not asserted elsewhere: what the bench measures, kept here so that a change shows.
    "AWS calls: ingest, 1 BOOKING check-in (property with a UCM)":
        ["dynamodb.Query", "dynamodb.BatchGetItem", "dynamodb.TransactWriteItems"],
    # tests/integration/test_aws_calls.py::test_ingest_of_98_records_costs_3_calls
    "AWS calls: ingest, 98 WAKE records": ["dynamodb.Query", "dynamodb.BatchGetItem", "dynamodb.TransactWriteItems"],
    # test_aws_calls.py::test_an_empty_get_request_costs_at_most_2_calls
    "AWS calls: GET_REQUEST, 0 records": ["dynamodb.GetItem", "dynamodb.Query"],
    # Not asserted elsewhere (test_aws_calls.py asserts the same list for 100 records).
    "AWS calls: GET_REQUEST, 1 record": ["dynamodb.GetItem", "dynamodb.Query", "dynamodb.UpdateItem"],
    # test_aws_calls.py::test_get_request_returning_100_records_costs_at_most_3_calls
    "AWS calls: GET_REQUEST, 100 records": ["dynamodb.GetItem", "dynamodb.Query", "dynamodb.UpdateItem"],
    # tests/integration/test_dispatcher.py::test_a_dispatched_command_costs_at_most_3_aws_calls_and_1_http_request…
    "AWS calls: dispatched UCM command": ["dynamodb.UpdateItem", "dynamodb.Query", "dynamodb.TransactWriteItems"],
    # tests/integration/test_sweeper.py::test_a_sweep_over_1000_idle_properties_costs_two_queries
    f"AWS calls: idle sweep, {run.QUICK.idle_properties} properties": ["dynamodb.Query", "dynamodb.Query"],
}
OPERATIONS = [m.removeprefix("AWS calls: ") for m in ASSERTED_CALLS]
FUNCTIONS = ["httppms", "ingest", "dispatcher", "sweeper", "wakeup", "poller"]


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    """One `bench/run.py --quick --json FILE`, in process: the JSON document and the printed table."""
    import contextlib
    import io

    path = Path(tmp_path_factory.mktemp("bench")) / "results.json"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert run.main(["--quick", "--json", str(path)]) == 0
    return json.loads(path.read_text(encoding="utf-8")), printed.getvalue()


def test_the_aws_calls_of_each_operation_are_the_ones_the_tests_assert(quick: tuple[dict[str, Any], str]) -> None:
    rows = {row["measure"]: row for row in quick[0]["rows"]}
    for measure, calls in ASSERTED_CALLS.items():
        row = rows[measure]
        assert row["detail"]["calls"] == calls, measure
        assert row["value"] == len(calls) and row["unit"] == "calls", measure
        assert row["detail"]["distinct"] == [calls], measure  # every invocation made the same calls
    assert rows["AWS calls: dispatched UCM command"]["detail"]["ucm_requests"] == 1


def test_the_table_has_every_row_in_order_with_its_unit(quick: tuple[dict[str, Any], str]) -> None:
    expected = [
        *[(f"AWS calls: {op}", "calls") for op in OPERATIONS],
        *[(f"handler / bare boto3{' + httpx' if 'UCM command' in op else ''}: {op}", "x") for op in OPERATIONS],
        ("cold import: import boto3", "ms"),
        *[(f"cold import: {f} handler", "x import boto3") for f in FUNCTIONS],
        *[(f"cold import: {f} handler, ApiTracing on", "x import boto3") for f in ("httppms", "ingest")],
        ("ingest throughput, 1 concurrent client", "events/s"),
        (f"ingest throughput, {run.QUICK.clients} concurrent clients", "events/s"),
        *[(f"{path} latency {stat}", "ms") for path in ("ingest -> GET_REQUEST", "ingest -> UCM")
          for stat in ("p50", "p95", "max")],
        ("cost per hotel-month (connector)", "US$"),
    ]
    rows = quick[0]["rows"]
    assert [(r["measure"], r["unit"]) for r in rows] == expected
    assert all(isinstance(r["value"], int | float) and r["value"] > 0 for r in rows), rows
    timed = [r for r in rows if r["measure"].startswith("handler / bare")]
    assert all(r["detail"]["handler_ms"] > 0 and r["detail"]["bare_ms"] > 0 for r in timed)


def test_the_json_says_when_and_where_it_was_measured(quick: tuple[dict[str, Any], str]) -> None:
    document = quick[0]
    assert document["mode"] == "quick"
    assert document["measured_at"].endswith("Z") and document["platform"] and document["python"]
    assert document["cpus"] >= 1


def test_the_printed_table_is_one_aligned_line_per_row(quick: tuple[dict[str, Any], str]) -> None:
    document, printed = quick
    lines = printed.splitlines()
    table = lines[next(n for n, line in enumerate(lines) if line.startswith("measure")):]
    assert len(table) == 2 + len(document["rows"])  # header, rule, rows
    unit_column = table[0].index("unit")
    for line, row in zip(table[2:], document["rows"], strict=True):
        assert line.startswith(row["measure"])
        assert line[:unit_column].rstrip().endswith("  " + run.shown(run.Row(**row)))  # values right-aligned
        assert line[unit_column:].startswith(row["unit"])
