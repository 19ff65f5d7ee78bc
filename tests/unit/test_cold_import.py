"""Cold import of each handler module, in a fresh interpreter, against `import boto3` in the same run.

The issue's goal is ≤ 1.8x; on a shared 2-core machine the ratio moves by ±0.1, so the test guards against
regressions (≤ 2.3x) and against heavy modules sneaking into the cold path, and prints the measured ratio.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT

FUNCTIONS = ["httppms", "ingest"]
LOAD = ("import importlib.util as u, sys; s = u.spec_from_file_location('app', {path!r}); "
        "m = u.module_from_spec(s); s.loader.exec_module(m)")
# Only needed on some requests (XML), or only locally: never at cold start.
NOT_AT_COLD_START = ["lxml", "moto", "yaml", "httpx", "aws_lambda_powertools.event_handler", "pms_connector.local",
                     "pms_connector.xmlcodec", "aws_lambda_powertools.utilities.parameters"]


def load_code(function: str) -> str:
    return LOAD.format(path=str(ROOT / "functions" / function / "app.py"))


def best_times(codes: dict[str, str], runs: int) -> dict[str, float]:
    """Best wall time of each snippet in a fresh interpreter; runs interleaved so noise hits all alike."""
    best = dict.fromkeys(codes, float("inf"))
    for round_ in range(runs + 1):
        for name, code in codes.items():
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
            if round_:  # the first round only compiles byte code and warms the file cache
                best[name] = min(best[name], time.perf_counter() - started)
    return best


@pytest.mark.parametrize("function", FUNCTIONS)
def test_the_handler_imports_nothing_heavy_it_does_not_need(function: str) -> None:
    code = load_code(function) + "; import json; print(json.dumps(sorted(sys.modules)))"
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                           text=True, cwd=ROOT).stdout))
    assert [m for m in NOT_AT_COLD_START if m in loaded] == []


def test_cold_import_ratio_to_boto3() -> None:
    times = best_times({"boto3": "import boto3", **{f: load_code(f) for f in FUNCTIONS}}, runs=5)
    boto3 = times["boto3"]
    ratios = {f: times[f] / boto3 for f in FUNCTIONS}
    print(f"\ncold import vs `import boto3` ({boto3 * 1000:.0f} ms): "
          + ", ".join(f"{f} {r:.2f}x" for f, r in ratios.items()))
    assert max(ratios.values()) <= 2.3, ratios
