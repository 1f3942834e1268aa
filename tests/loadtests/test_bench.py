"""Smoke run of `make bench`: every table is measured end to end and returned as data (no speed
assertion; the figures are for people, the ratios in one run)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from loadtests import bench
from tests.conftest import ROOT

TITLES = ("1. onnxruntime called directly", "2. gateway vs reference app", "3. latency at a paced",
          "4. batching off vs on", "5. gateway memory", "6. routing", "7. drift monitor",
          "8. label feedback", "9. every feature", "10. drift detection", "10b. drift flag",
          "10c. drift pages", "11. rollout controller", "11a. rollout controller",
          "11b. rollout controller", "12a. prediction capture", "12b. replay of 100,000",
          "13. gRPC and HTTP", "14. workers")


@pytest.fixture(autouse=True)
def needs_wrk() -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install wrk; .ci/run installs it)")


def test_every_table_is_measured_and_returned() -> None:
    args = bench.parse_args(["--duration", "1", "--connections", "8",
                             "--memory-requests", "1000", "--rounds", "1",
                             "--path-requests", "400"])
    tables = bench.run(args, show=lambda table: None)
    assert [t.title.split(" ")[0] for t in tables] == [f"{n}." for n in range(1, 11)] + [
        "10b.", "10c.", "11.", "11a.", "11b.", "12a.", "12b.", "13.", "14."]
    for table, title in zip(tables, TITLES, strict=True):
        assert table.title.startswith(title)
        assert table.rows and all(len(row) == len(table.header) for row in table.rows)
    versus = tables[1]
    assert len(versus.rows) == 3  # three requests at 8 connections
    errors = versus.header.index("errors")
    assert all(row[errors] == "0" for row in versus.rows), versus.rows  # no request failed
    features = tables[8]
    assert [row[0] for row in features.rows][:3] == [
        "the limit: onnxruntime on the event loop", "one version at 100%", "+ 90/10 split"]
    assert features.rows[-1][0].startswith("reference app")
    assert all(row[-1] == "0" for row in features.rows), features.rows
    path = features.header.index("path µs")
    assert all(float(row[path]) > 0 for row in features.rows[1:7])  # measured in process too
    detection = {row[0]: row[1:] for row in tables[9].rows}
    assert float(detection["a new category takes 2%"][0]) == 1.0  # flagged at 1,000 rows
    assert float(detection["no drift (false alarms per window)"][1]) <= 0.05
    rollouts = {row[0]: row[1:] for row in tables[12].rows}
    assert list(rollouts) == ["equal (A/A)", "at the errors limit", "at the latency limit",
                              "at the accuracy limit", "at the shadow_agreement limit"]
    assert all(float(row[-1][:-1]) >= 90 for row in tables[13].rows), tables[13].rows
    assert tables[14].rows[0][2] == "hold" and float(tables[14].rows[0][0]) > 0
    capture, replay = tables[15], tables[16]
    written = re.search(r"\(([\d,]+) records written, 0 dropped", capture.title)
    assert written and int(written[1].replace(",", "")) > 0, capture.title
    assert "agreement 100.00%" in replay.title and float(replay.rows[0][2][:-1]) > 0
    dropped = features.header.index("shadow dropped at 8")
    assert features.rows[6][dropped].endswith(tuple("0123456789"))  # the 10% shadow was sent
    grpc = tables[-2]  # both transports, every request kind, no error
    assert grpc.title.startswith("13. gRPC and HTTP")
    assert {row[2] for row in grpc.rows} >= {"HTTP JSON", "gRPC typed", "gRPC raw"}
    assert {row[1] for row in grpc.rows} == {"gateway", "reference app", "gRPC reference",
                                             "grpc.aio, no model"}
    errors, rps, cpu = (grpc.header.index(h) for h in ("errors", "req/s", "server CPU"))
    assert all(row[errors] == "0" for row in grpc.rows), grpc.rows
    assert all(float(row[rps].replace(",", "")) > 0 and float(row[cpu]) > 0
               for row in grpc.rows), grpc.rows
    workers = tables[-1]
    assert workers.title.startswith("14. workers")
    assert all(row[-1] == "0" for row in workers.rows), workers.rows


def test_make_bench_runs_one_table_from_the_command_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.bench", "--tables", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1. onnxruntime called directly" in result.stdout
    assert "2. gateway vs reference app" not in result.stdout
