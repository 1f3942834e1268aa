"""`gateway replay` (SPEC 10) on a capture a running gateway wrote, as a data scientist or a CI
job runs it: against the version that served (agrees on every row), against the other shipped
version (its disagreements and both accuracies, from labels posted with ids), in-process and
against a running gateway alike, with `--min-agreement` as the exit code (failed and redacted
rows counting against it); against a gateway that captures into the folder being replayed (it
ends); and bad captures."""

from __future__ import annotations

import gzip
import http.client
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
from tests.integration.test_capture import capture_lines, json_body, wait_for


@dataclass(frozen=True)
class Captured:
    folder: Path
    config: Path
    labels: np.ndarray
    rows: np.ndarray
    """Every row sent, in order, and its true label."""


def predicted(version: int, rows: np.ndarray, output: str = "label") -> np.ndarray:
    session = ort.InferenceSession(str(MODELS / MODEL / str(version) / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    return session.run([output], {"input": rows})[0]


def agreeing(a: int, b: int, rows: np.ndarray) -> np.ndarray:
    """SPEC 9's agreement of two versions per row, written out: the same label and every
    probability within 1e-3, absolute or relative."""
    p, q = (predicted(v, rows, "probabilities").astype(np.float64) for v in (a, b))
    close = (np.abs(p - q) <= 1e-3) | (np.abs(p - q) <= 1e-3 * np.maximum(abs(p), abs(q)))
    return np.asarray((predicted(a, rows) == predicted(b, rows)) & close.all(axis=1))


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
    agree = agreeing(2, 3, captured.rows)
    assert served["disagreeing_rows"] == int(np.count_nonzero(~agree)) > 0
    assert result["agreement"] == pytest.approx(float(np.mean(agree)))
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
    for key in ("rows", "agreement", "failed_requests", "failed_rows", "redacted_rows",
                "corrupt_lines"):
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
    agreement = float(np.mean(agreeing(2, 3, captured.rows)))
    assert replay(*args, "--min-agreement", str(agreement - 0.01),
                  config=captured.config).returncode == 0
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


def test_replay_against_a_gateway_capturing_into_the_same_folder_ends(tmp_path: Path) -> None:
    """The replayed requests are captured into the file being replayed (the target is the
    gateway that wrote it): replay reads the capture as it stood at the start, so it ends,
    having replayed exactly the rows that were there. More requests than replay reads at a
    time, so that reading on would find the replay's own requests."""
    routing = {"models": {MODEL: {"traffic": [{"version": 2, "weight": 100}]}}}
    folder = tmp_path / "capture"
    config = write_gateway_config(tmp_path / "config", MODELS, routing,
                                  capture={"enabled": True, "path": str(folder)})
    rows = sample_rows(1500, seed=5)
    server = GatewayProcess(config, tmp_path)
    written = f'gateway_capture_records_total{{model="{MODEL}",result="written"}}'
    try:
        for i, row in enumerate(rows):
            assert server.request("POST", f"/v2/models/{MODEL}/infer",
                                  json_body(row[None], f"live-{i}")).status == 200
        wait_for(lambda: server.metric(written) == len(rows))
        done = subprocess.run(
            [sys.executable, "-m", "gateway", "replay", str(folder), "--model", MODEL,
             "--version", "2", "--against", f"http://{server.url}", "--json", "--config",
             str(config)], cwd=ROOT, capture_output=True, text=True, timeout=240)
        # The gateway captured the replay too, into the same folder, while it was read.
        wait_for(lambda: server.metric(written) == 2 * len(rows))
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    result = orjson.loads(done.stdout)
    assert (result["rows"], result["agreement"], result["failed_requests"]) == (1500, 1.0, 0)
    assert result["lines"] == 1500 and result["corrupt_lines"] == 0


class _Shedding(BaseHTTPRequestHandler):
    """In front of a gateway: answers 503 to nine inference requests in ten, as an overloaded
    fleet does, and passes the rest (and every metadata request) through."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK wait
    upstream = ""
    posts = 0

    def do_GET(self) -> None:
        self._forward(None)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).posts += 1
        if type(self).posts % 10 != 1:
            self._answer(503, {"Content-Type": "application/json"},
                         b'{"error": "overloaded: try again later"}')
            return
        self._forward(body)

    def _forward(self, body: bytes | None) -> None:
        host, port = self.upstream.split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            conn.request(self.command, self.path, body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
            kept = {k: v for k, v in answer.getheaders()
                    if k.lower() in ("content-type", "inference-header-content-length")}
            self._answer(answer.status, kept, data)
        finally:
            conn.close()

    def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_min_agreement_fails_when_most_requests_fail(captured: Captured, tmp_path: Path) -> None:
    """The issue's case: most requests answered 503 by the target. The answered rows all agree,
    but a failed row is not an agreeing one: exit 1, and the report says how many and why."""
    plain = write_gateway_config(tmp_path / "plain", MODELS, {"models": {MODEL: {"traffic": [
        {"version": 2, "weight": 100}]}}})
    server = GatewayProcess(plain, tmp_path)
    handler = type("Shedding", (_Shedding,), {"upstream": server.url, "posts": 0})
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    args = (str(captured.folder), "--model", MODEL, "--version", "2", "--against",
            f"http://127.0.0.1:{proxy.server_address[1]}")
    try:
        done = replay(*args, "--min-agreement", "0.9", "--json", config=captured.config)
        handler.posts = 0
        text = replay(*args, "--min-agreement", "0.9", config=captured.config)
        handler.posts = 0
        no_bar = replay(*args, config=captured.config)
    finally:
        proxy.shutdown()
        server.stop()
    assert done.returncode == 1, done.stderr
    result = orjson.loads(done.stdout)
    n = len(captured.rows)
    requests = sum(r["kind"] == "infer" for r in capture_lines(captured.folder))
    failed = requests - (requests + 9) // 10  # all but the 1st, 11th, 21st, ...
    assert result["passed"] is False
    assert (result["failed_requests"], result["rows"] + result["failed_rows"]) == (failed, n)
    assert result["agreeing_rows"] == result["rows"] > 0
    assert result["agreement"] == pytest.approx(result["rows"] / n)
    assert result["agreement"] < 0.2
    assert result["failures"] == [f"{failed} x 503 overloaded: try again later"]
    assert f"of {n} captured rows, 0 were redacted and {result['failed_rows']} failed" \
        in result["reason"]
    assert text.returncode == 1 and "is below --min-agreement 90.0000%" in text.stdout
    assert f"{failed} requests" in text.stdout and f"failed: {failed} x 503" in text.stdout
    assert no_bar.returncode == 0  # without a bar, the exit code is as it was


def test_a_redacted_capture_cannot_be_replayed_and_fails_any_min_agreement(
        tmp_path: Path) -> None:
    """Capture that redacts the only input, as the README's example does: replay says plainly
    that redacted requests cannot be replayed and which inputs, and fails any bar."""
    routing = {"models": {MODEL: {"traffic": [{"version": 2, "weight": 100}]}}}
    folder = tmp_path / "capture"
    config = write_gateway_config(tmp_path / "config", MODELS, routing, capture={
        "enabled": True, "path": str(folder), "redact": {MODEL: ["input"]}})
    server = GatewayProcess(config, tmp_path)
    try:
        for i, size in enumerate((1, 3, 2)):
            assert server.request("POST", f"/v2/models/{MODEL}/infer",
                                  json_body(sample_rows(size, seed=i))).status == 200
        wait_for(lambda: server.metric(
            f'gateway_capture_records_total{{model="{MODEL}",result="written"}}') == 3)
    finally:
        server.stop()
    args = (str(folder), "--model", MODEL, "--version", "2")
    text = replay(*args, config=config)
    assert text.returncode == 0, text.stderr  # without a bar, as before
    assert ("3 requests (6 rows) cannot be replayed: their inputs were redacted when captured "
            "('input'; capture.redact in gateway.yaml)") in text.stdout
    gated = replay(*args, "--min-agreement", "0", "--json", config=config)
    assert gated.returncode == 1
    result = orjson.loads(gated.stdout)
    assert result["passed"] is False and result["rows"] == 0
    assert (result["redacted_requests"], result["redacted_rows"]) == (3, 6)
    assert result["redacted_inputs"] == {"input": 3}
    assert result["reason"].startswith("no row was replayed (of 6 captured rows, 6 were "
                                       "redacted and 0 failed)")
