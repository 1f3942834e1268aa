"""`gateway replay` (SPEC 10) on a capture a running gateway wrote, as a data scientist or a CI
job runs it: against the version that served (agrees on every row), against the other shipped
version (its disagreements and both accuracies, from labels posted with ids), in-process and
against a running gateway alike, with `--min-agreement` as the exit code; and bad captures."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson
import pytest
import tritonclient.http as httpclient
import yaml

from loadtests.harness import write_gateway_config
from tests.conftest import MODEL, MODELS, ROOT, sample_rows
from tests.integration.server import GatewayProcess
from tests.integration.test_capture import json_body, wait_for


@dataclass(frozen=True)
class Captured:
    folder: Path
    config: Path
    labels: np.ndarray
    rows: np.ndarray
    """Every row sent, in order, and its true label."""


def predicted(version: int, rows: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(MODELS / MODEL / str(version) / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    return session.run(["label"], {"input": rows})[0]


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Captured]:
    """Every row of the breast-cancer data sent in requests of 1 to 3 rows to version 2, and
    each row's true label posted back through feedback with the request's id."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    rows, labels = data.data.astype(np.float32), data.target
    tmp = tmp_path_factory.mktemp("replay")
    routing = {"models": {MODEL: {"traffic": [{"version": 2, "weight": 100},
                                              {"version": 3, "weight": 0}]}}}
    config = write_gateway_config(tmp / "config", MODELS, routing,
                                  capture={"enabled": True, "path": str(tmp / "capture")})
    server = GatewayProcess(config, tmp)
    try:
        sizes = np.random.default_rng(0).integers(1, 4, len(rows))
        start, items = 0, []
        for i, size in enumerate(sizes):
            if start >= len(rows):
                break
            chunk = rows[start:start + size]
            reply = server.request("POST", f"/v2/models/{MODEL}/infer",
                                   json_body(chunk, f"req-{i}"))
            assert reply.status == 200
            label_output = reply.json()["outputs"][0]["data"]
            items += [{"label": int(y), "version": 2, "prediction": p, "id": f"req-{i}"}
                      for y, p in zip(labels[start:start + size], label_output, strict=True)]
            start += len(chunk)
        for at in range(0, len(items), 200):
            assert server.request("POST", f"/v2/models/{MODEL}/feedback", orjson.dumps(
                {"feedback": items[at:at + 200]})).status == 200
        wait_for(lambda: server.metric(
            f'gateway_capture_records_total{{model="{MODEL}",result="written"}}') > 0)
    finally:
        server.stop()
    yield Captured(tmp / "capture", config, labels, rows)


def replay(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "replay", *args, "--config",
                           str(config)], cwd=ROOT, capture_output=True, text=True, timeout=300)


def report(*args: str, config: Path) -> dict[str, Any]:
    done = replay(*args, "--json", config=config)
    assert done.returncode == 0, done.stderr
    return dict(orjson.loads(done.stdout))


def test_replay_on_the_version_that_served_agrees_on_every_row(captured: Captured) -> None:
    result = report(str(captured.folder), "--model", MODEL, "--version", "2",
                    config=captured.config)
    (served,) = result["served_versions"]
    n = len(captured.rows)
    assert (result["rows"], result["agreement"], result["corrupt_lines"]) == (n, 1.0, 0)
    assert (served["version"], served["rows"], served["disagreeing_rows"]) == (2, n, 0)
    assert served["labelled_rows"] == n and result["feedback_rows"] == n
    accuracy = float(np.mean(predicted(2, captured.rows) == captured.labels))
    assert served["served"]["value"] == pytest.approx(accuracy)
    assert served["replayed"]["value"] == pytest.approx(accuracy)
    assert served["served"]["low"] < accuracy < served["served"]["high"]
    assert 0 <= served["latency_ms"]["p50"] <= served["latency_ms"]["p99"]


def test_replay_on_another_version_reports_its_disagreements_and_both_accuracies(
        captured: Captured) -> None:
    result = report(str(captured.folder), "--model", MODEL, "--version", "3",
                    config=captured.config)
    (served,) = result["served_versions"]
    v2, v3 = predicted(2, captured.rows), predicted(3, captured.rows)
    assert served["disagreeing_rows"] == int(np.count_nonzero(v2 != v3)) > 0
    assert result["agreement"] == pytest.approx(float(np.mean(v2 == v3)))
    assert served["measure"] == "accuracy"
    assert served["served"]["value"] == pytest.approx(float(np.mean(v2 == captured.labels)))
    assert served["replayed"]["value"] == pytest.approx(float(np.mean(v3 == captured.labels)))
    table = replay(str(captured.folder), "--model", MODEL, "--version", "3",
                   config=captured.config)
    assert table.returncode == 0
    assert "version 3" in table.stdout and "accuracy" in table.stdout


def test_replay_against_a_running_gateway_gives_the_same_numbers(
        captured: Captured, tmp_path: Path) -> None:
    config = yaml.safe_load(captured.config.read_text())
    config.pop("capture")
    plain = captured.config.with_name("no-capture.yaml")
    plain.write_text(yaml.safe_dump(config))
    server = GatewayProcess(plain, tmp_path)
    try:
        remote = report(str(captured.folder), "--model", MODEL, "--version", "3", "--against",
                        f"http://{server.url}", config=captured.config)
    finally:
        server.stop()
    local = report(str(captured.folder), "--model", MODEL, "--version", "3",
                   config=captured.config)
    assert remote["target"] == f"http://{server.url}"
    for key in ("rows", "agreement", "failed_requests", "corrupt_lines"):
        assert remote[key] == local[key], key
    for a, b in zip(remote["served_versions"], local["served_versions"], strict=True):
        for key in ("requests", "rows", "disagreeing_rows", "labelled_rows", "served",
                    "replayed"):
            assert a[key] == b[key], key


def test_nan_a_client_sent_binary_replays_against_a_gateway(tmp_path: Path) -> None:
    """tritonclient sends binary FP32, NaN included; capture writes NaN as `null` (JSON has no
    NaN); a replay against a running gateway must send it as NaN again, not `null` (a 400)."""
    routing = {"models": {MODEL: {"traffic": [{"version": 2, "weight": 100}]}}}
    capture = {"enabled": True, "path": str(tmp_path / "capture")}
    config = write_gateway_config(tmp_path / "config", MODELS, routing, capture=capture)
    rows = sample_rows(12)
    rows[::3, 4] = np.nan
    server = GatewayProcess(config, tmp_path)
    try:
        client = httpclient.InferenceServerClient(server.url)
        for at in range(0, 12, 3):
            tensor = httpclient.InferInput("input", [3, 30], "FP32")
            tensor.set_data_from_numpy(rows[at:at + 3])  # binary, tritonclient's default
            client.infer(MODEL, [tensor], request_id=f"nan-{at}")
        wait_for(lambda: server.metric(
            f'gateway_capture_records_total{{model="{MODEL}",result="written"}}') == 4)
    finally:
        server.stop()
    plain = write_gateway_config(tmp_path / "plain", MODELS, routing)
    server = GatewayProcess(plain, tmp_path)
    try:
        remote = report(str(tmp_path / "capture"), "--model", MODEL, "--version", "2",
                        "--against", f"http://{server.url}", config=config)
    finally:
        server.stop()
    local = report(str(tmp_path / "capture"), "--model", MODEL, "--version", "2", config=config)
    assert remote["failed_requests"] == 0, remote
    assert remote["rows"] == local["rows"] == 12
    assert remote["agreement"] == local["agreement"] == 1.0


def test_min_agreement_sets_the_exit_code(captured: Captured) -> None:
    args = (str(captured.folder), "--model", MODEL, "--version", "3")
    below = replay(*args, "--min-agreement", "1", config=captured.config)
    assert below.returncode == 1
    assert "is below --min-agreement" in below.stdout
    assert replay(*args, "--min-agreement", "0.5", config=captured.config).returncode == 0
    assert replay(str(captured.folder), "--model", MODEL, "--version", "2", "--min-agreement",
                  "1", config=captured.config).returncode == 0


def test_corrupt_and_truncated_lines_are_skipped_and_counted(
        captured: Captured, tmp_path: Path) -> None:
    folder = tmp_path / "capture"
    shutil.copytree(captured.folder, folder)
    first = sorted(folder.iterdir())[0]
    lines = gzip.decompress(first.read_bytes()).splitlines(keepends=True)
    infer = next(line for line in lines if b'"kind":"infer"' in line)
    (folder / "capture-breast-cancer-29991231T000000.000000Z.jsonl").write_bytes(
        b"not json at all\n" + infer + b'{"kind":"infer","model":"breast-cancer","vers\n'
        + infer[:len(infer) // 2])
    result = report(str(folder), "--model", MODEL, "--version", "2", config=captured.config)
    request_rows = orjson.loads(infer)["inputs"][0]["shape"][0]
    assert result["corrupt_lines"] == 3
    assert result["rows"] == len(captured.rows) + request_rows
    assert result["agreement"] == 1.0


def test_another_model_or_a_version_not_in_the_repository_is_a_clear_error(
        captured: Captured, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    record = {"kind": "infer", "time": "2026-12-03T00:00:00.000000Z", "request_id": "x",
              "trace_id": None, "model": "fraud", "version": 1, "route": "split",
              "inputs": [], "outputs": []}
    (other / "capture-fraud-20261203T000000.000000Z.jsonl").write_bytes(
        orjson.dumps(record) + b"\n")
    done = replay(str(other), "--model", MODEL, "--version", "2", config=captured.config)
    assert done.returncode == 2
    assert "holds no request of model 'breast-cancer', only of 'fraud'" in done.stderr
    missing = replay(str(captured.folder), "--model", MODEL, "--version", "9",
                     config=captured.config)
    assert missing.returncode == 2
    assert "has no version 9 in the repository (it has 1, 2, 3)" in missing.stderr
    empty = replay(str(tmp_path), "--model", MODEL, "--version", "2", config=captured.config)
    assert empty.returncode == 2 and "holds no capture files" in empty.stderr
