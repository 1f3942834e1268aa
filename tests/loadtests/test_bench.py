"""Smoke run of `make bench`: it runs end to end and prints its tables (no speed assertion)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def test_bench_runs_and_prints_its_tables() -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install wrk; .ci/run installs it)")
    result = subprocess.run(
        [sys.executable, "loadtests/bench.py", "--duration", "1", "--connections", "1", "8",
         "--memory-requests", "1000", "--rounds", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for title in ("1. onnxruntime called directly", "2. gateway vs reference app",
                  "3. latency at a paced", "4. batching off vs on", "5. gateway memory",
                  "6. routing", "7. drift monitor", "8. label feedback"):
        assert title in out
    table = out.split("2. gateway vs reference app")[1].split("3. latency")[0]
    rows = [line.split() for line in table.splitlines() if line.startswith(("1-row", "32-row"))]
    assert len(rows) == 6  # three requests at two connection counts
    assert all(row[-1] == "0" for row in rows), table  # no request failed
