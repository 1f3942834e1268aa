"""`server.workers: 2` against real processes, as users run it (SPEC section 2): the group is one
replica to everything outside it. Exact request, label and drift-row counts through /metrics and
the drift report whichever worker answers; a routing edit applied by both workers within 2 s and
counted once; killed workers restarted on the group's settings (not gateway.yaml as edited since)
with no counter going backwards; SIGTERM drains both; a gRPC port another group or a grpcio
server has is busy; a killed supervisor's folder removed by the next; and one worker is the old
single process."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import orjson
import pytest
import tritonclient.grpc as grpcclient

from tests.conftest import (
    MODEL,
    ROOT,
    ConfigWriter,
    add_model,
    sample_rows,
    slow_model,
)
from tests.integration.conftest import Start
from tests.integration.server import GatewayProcess, free_port
from tests.integration.test_shutdown import send_all

V1 = {"models": {MODEL: {"traffic": [{"version": 1, "weight": 100}]}}}
INFER = f"/v2/models/{MODEL}/infer"


def children(server: GatewayProcess) -> list[int]:
    """The pids of the supervisor's child processes (its workers)."""
    pid = server.process.pid
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s:g} s")
        time.sleep(0.05)


def start_group(start: Start, write_config: ConfigWriter, routing: object = V1,
                grpc: bool = False, **settings: object) -> GatewayProcess:
    server_settings = {"workers": 2, **settings.pop("server", {})}  # type: ignore[dict-item]
    server = start(write_config(routing=routing, server=server_settings, **settings), grpc=grpc)
    wait_for(lambda: server.log().count("Application startup complete") == 2,
             "both workers started")
    return server


def group_folder(server: GatewayProcess) -> Path:
    match = re.search(r"group folder (\S+)\)", server.log())
    assert match, server.log()
    return Path(match.group(1))


def infer(server: GatewayProcess, rows: np.ndarray) -> http.client.HTTPResponse:
    """One JSON request on a connection of its own (the kernel picks the worker)."""
    body = orjson.dumps({"inputs": [{"name": "input", "shape": list(rows.shape),
                                     "datatype": "FP32", "data": rows.ravel().tolist()}]})
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("POST", INFER, body, {"content-type": "application/json"})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def scrape(server: GatewayProcess) -> dict[str, float]:
    """Every sample of one /metrics answer, on a new connection."""
    text = server.request("GET", "/metrics").body.decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line and not line.startswith("#")}


def counters(samples: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in samples.items()
            if k.split("{")[0].endswith(("_total", "_count", "_sum", "_bucket"))}


def test_counts_are_the_groups_whichever_worker_answers(write_config: ConfigWriter,
                                                        start: Start) -> None:
    server = start_group(start, write_config, grpc=True)
    rows = sample_rows(3 * 96, seed=1)
    with ThreadPoolExecutor(8) as pool:  # 96 HTTP requests of 3 rows, 8 at a time
        answers = list(pool.map(lambda i: infer(server, rows[3 * i:3 * i + 3]).status,
                                range(96)))
    assert answers == [200] * 96
    client = grpcclient.InferenceServerClient(server.grpc_url)
    for i in range(6):  # and 6 gRPC calls of 2 rows, each on a new channel's connection
        client = grpcclient.InferenceServerClient(server.grpc_url)
        tensor = grpcclient.InferInput("input", [2, 30], "FP32")
        tensor.set_data_from_numpy(rows[2 * i:2 * i + 2])
        assert client.infer(MODEL, [tensor]).as_numpy("label").shape == (2,)
        client.close()
    labels = [{"label": i % 2, "version": 1, "prediction": i % 2} for i in range(3)]
    with ThreadPoolExecutor(8) as pool:  # 40 feedback posts: 3 labelled rows and 1 not, each
        posted = list(pool.map(lambda i: server.request(
            "POST", f"/v2/models/{MODEL}/feedback",
            orjson.dumps({"feedback": [*labels, {"label": 1}]}),
            {"content-type": "application/json"}).status, range(40)))
    assert posted == [200] * 40
    requests, drift_rows = 96 + 6, 96 * 3 + 6 * 2
    expected = {
        f'gateway_requests_total{{code="200",model="{MODEL}",route="split",version="1"}}':
            requests,
        f'gateway_request_duration_seconds_count{{model="{MODEL}",route="split",version="1"}}':
            requests,
        f'gateway_feedback_rows_total{{model="{MODEL}",version="1"}}': 40 * 3,
        f'gateway_feedback_rows_total{{model="{MODEL}",version="none"}}': 40,
        f'gateway_feedback_correct_rows_total{{model="{MODEL}",version="1"}}': 40 * 3,
        f'gateway_label_rows_total{{label="0",model="{MODEL}"}}': 40 * 2,
        f'gateway_label_rows_total{{label="1",model="{MODEL}"}}': 40 * 2,
        f'gateway_label_window_rows{{model="{MODEL}"}}': 40 * 4,
        f'gateway_feedback_window_rows{{model="{MODEL}",version="1"}}': 40 * 3,
        f'gateway_live_accuracy{{model="{MODEL}",version="1"}}': 1.0,
        f'gateway_drift_rows_total{{model="{MODEL}",version="1"}}': drift_rows,
        f'gateway_drift_window_rows{{model="{MODEL}",version="1"}}': drift_rows,
        f'gateway_inflight_requests{{model="{MODEL}"}}': 0,
    }

    def seen() -> dict[str, float | None]:
        samples = scrape(server)
        return {k: samples.get(k) for k in expected}
    # Peers publish every 0.5 s and drift reports every 1 s: the counts settle, then hold.
    wait_for(lambda: seen() == expected, f"exact counts in /metrics (last: {seen()})", 15)
    folder = group_folder(server)
    windows = [json.loads((folder / f"state-w{i}.json").read_text())["drift"][0]["features"][1]
               for i in (0, 1)]
    assert sum(windows) == drift_rows and min(windows) > 0, windows  # both workers served
    for _ in range(8):  # new connections: the scrape lands on either worker; each is exact
        assert seen() == expected
        report = server.request("GET", f"/v2/models/{MODEL}/versions/1/drift").json()
        assert report["window_rows"] == drift_rows
        assert report["performance"]["labelled_rows"] == 40 * 3
        labels_report = server.request("GET", f"/v2/models/{MODEL}/drift").json()["labels"]
        assert labels_report["window_rows"] == 40 * 4


def test_a_routing_edit_applies_in_both_workers_within_2_s_and_counts_once(
        write_config: ConfigWriter, start: Start) -> None:
    routing = {"models": {MODEL: {"traffic": [{"version": 1, "weight": 100},
                                              {"version": 2, "weight": 0}]}}}
    server = start_group(start, write_config, routing=routing)
    if len(os.sched_getaffinity(0)) >= 2:
        assert "workers share" not in server.log()
    one = sample_rows(1)
    assert {infer(server, one).headers["x-model-version"] for _ in range(20)} == {"1"}
    policy = write_config(routing=routing, server={"workers": 2}).parent / "routing.yaml"
    applied = server.log().count("routing policy applied")
    reloads = {r: server.metric(f'gateway_config_reloads_total{{result="{r}"}}')
               for r in ("success", "error")}
    policy.write_text(json.dumps({"models": {MODEL: {"traffic": [
        {"version": 1, "weight": 0}, {"version": 2, "weight": 100}]}}}))
    edited = time.monotonic()
    time.sleep(2.0)
    assert time.monotonic() - edited < 2.5
    versions = [infer(server, one).headers["x-model-version"] for _ in range(40)]
    assert set(versions) == {"2"}, versions
    assert server.log().count("routing policy applied") == applied + 2  # once in each worker
    # ... and counted once for the group, as one process counts it (before: once per worker)
    assert server.metric('gateway_config_reloads_total{result="success"}') == \
        reloads["success"] + 1
    policy.write_text("models: {breast-cancer: {traffic: [{version: 9}]}}\n")
    wait_for(lambda: server.log().count("routing policy rejected") == 2, "rejected by both")
    assert server.metric('gateway_config_reloads_total{result="error"}') == reloads["error"] + 1
    assert server.metric("gateway_config_last_reload_success") == 0


def test_killed_workers_are_restarted_as_the_group_began_and_no_counter_goes_backwards(
        write_config: ConfigWriter, start: Start) -> None:
    """Restarted workers serve the settings the group started with, not gateway.yaml as
    edited on disk since (before, each read it again: the group ran two configs, and with
    `max_batch_rows: 1` appended a restarted worker answered two-row requests with 503)."""
    config = write_config(routing=V1, server={"workers": 2})
    server = start(config)
    wait_for(lambda: server.log().count("Application startup complete") == 2,
             "both workers started")
    rows = sample_rows(2)
    for _ in range(40):
        assert infer(server, rows).status == 200
    before = scrape(server)
    with config.open("a") as file:  # an edit on disk, which needs a restart of the group
        file.write("limits: {max_batch_rows: 1}\n")
    victims = children(server)
    for victim in victims:  # both: every request then lands on a restarted worker
        os.kill(victim, signal.SIGKILL)
    for victim in victims:
        wait_for(lambda v=victim: f"(pid {v}) exited with signal SIGKILL" in server.log(),
                 "the death logged")
    wait_for(lambda: len(children(server)) == 2 and not set(victims) & set(children(server)),
             "new workers")
    wait_for(lambda: server.log().count("Application startup complete") == 4,
             "the new workers serving")
    for _ in range(20):  # the group answers, on new connections, with the group's settings
        assert infer(server, rows).status == 200
    assert server.request("GET", "/v2/health/ready").status == 200
    after = scrape(server)
    assert after["process_start_time_seconds"] == before["process_start_time_seconds"]
    went_back = {k: (v, after.get(k, 0.0)) for k, v in counters(before).items()
                 if after.get(k, 0.0) < v}
    assert not went_back
    key = f'gateway_requests_total{{code="200",model="{MODEL}",route="split",version="1"}}'
    assert after[key] == before[key] + 20


def test_sigterm_drains_both_workers(model_repo: Path, write_config: ConfigWriter,
                                     start: Start) -> None:
    add_model(model_repo, "slow", 1, slow_model(layers=400))
    server = start(write_config(model_repo, routing={"models": {}},
                                server={"workers": 2, "shutdown_grace_s": 20},
                                batching={"execution": "thread"}, drift={"enabled": False}))
    wait_for(lambda: server.log().count("Application startup complete") == 2,
             "both workers started")
    folder = group_folder(server)
    results, threads = send_all(server, 12)

    def inflight(worker: int) -> int:
        try:
            state = json.loads((folder / f"state-w{worker}.json").read_text())
        except (OSError, ValueError):
            return 0
        return int(state.get("inflight", {}).get("slow", 0))
    wait_for(lambda: inflight(0) > 0 and inflight(1) > 0, "requests in flight on both", 60)
    sent_s = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0
    assert time.monotonic() - sent_s < 20 + 3
    for thread in threads:
        thread.join()
    assert results == [200] * 12
    assert not folder.exists()  # the group folder goes with the group


def test_one_worker_is_the_single_process(write_config: ConfigWriter, start: Start) -> None:
    server = start(write_config(routing=V1, server={"workers": 1}))
    assert infer(server, sample_rows(1)).status == 200
    assert children(server) == []
    environ = Path(f"/proc/{server.process.pid}/environ").read_bytes().split(b"\0")
    assert not any(v.startswith(b"PROMETHEUS_MULTIPROC_DIR=") for v in environ)
    assert "gateway.workers" not in server.log()


def test_each_worker_captures_to_its_own_files_and_replay_reads_them_all(
        tmp_path: Path, write_config: ConfigWriter, start: Start) -> None:
    folder = tmp_path / "capture"
    config = write_config(routing=V1, server={"workers": 2},
                          capture={"enabled": True, "path": str(folder)})
    server = start(config, wrap=["taskset", "-c", "0"])  # one core: the log says so
    wait_for(lambda: server.log().count("Application startup complete") == 2,
             "both workers started")
    assert "2 workers share the 1 core this process may use" in server.log()
    rows = sample_rows(60, seed=2)
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda i: infer(server, rows[2 * i:2 * i + 2]).status,
                                range(30)))
    assert answers == [200] * 30
    assert server.stop() == 0  # files closed and gzipped at exit
    names = sorted(p.name for p in folder.iterdir())
    assert {n.rsplit("-", 1)[1] for n in names} == {"w0.jsonl.gz", "w1.jsonl.gz"}, names
    done = subprocess.run([sys.executable, "-m", "gateway", "replay", str(folder), "--model",
                           MODEL, "--version", "1", "--json", "--config", str(config)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = orjson.loads(done.stdout)
    assert (result["rows"], result["agreement"]) == (60, 1.0)


def test_a_busy_port_fails_the_group_as_it_fails_one_process(write_config: ConfigWriter) -> None:
    config = write_config(routing=V1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        done = [subprocess.run([sys.executable, "-m", "gateway", "serve", "--config",
                                str(config), "--host", "127.0.0.1", "--port",
                                str(taken.getsockname()[1]), "--grpc-port", "0", "--workers",
                                workers], cwd=ROOT, capture_output=True, text=True, timeout=60)
                for workers in ("1", "2")]
    assert done[1].returncode == done[0].returncode != 0
    for run in done:
        assert "error while attempting to bind on address" in run.stderr, run.stderr
        assert "address already in use" in run.stderr
    assert "worker 0 started" not in done[1].stderr  # no worker was started


def test_a_start_up_error_fails_the_group_as_it_fails_one_process(
        write_config: ConfigWriter) -> None:
    config = write_config(routing="models: {breast-cancer: {traffic: [{version: 9}]}}\n")
    done = [subprocess.run([sys.executable, "-m", "gateway", "serve", "--config", str(config),
                            "--host", "127.0.0.1", "--port", str(free_port()), "--grpc-port",
                            "0", "--workers", workers], cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
            for workers in ("1", "2")]
    single = [line for line in done[0].stderr.splitlines() if line.startswith("gateway serve:")]
    assert single and done[0].returncode != 0
    assert done[1].returncode == done[0].returncode
    assert single[0] in done[1].stderr.splitlines()
    assert "exited before it served" in done[1].stderr


def test_workers_never_outlive_their_supervisor_nor_its_folder_the_next_start(
        write_config: ConfigWriter, start: Start) -> None:
    server = start_group(start, write_config)
    workers = children(server)
    folder = group_folder(server)
    assert folder.name.startswith(f"gateway-workers-{server.process.pid}-")
    server.process.kill()  # SIGKILL: no signal is passed on; Linux sends each worker SIGTERM
    server.process.wait()

    def running(pid: int) -> bool:  # a zombie (state Z) waits for init: it has ended
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    def gone() -> bool:
        return not any(running(pid) for pid in workers)
    wait_for(gone, "the workers ended")
    assert folder.exists()  # a killed supervisor cannot remove it: the next one does
    later = start_group(start, write_config)
    assert group_folder(later) != folder and not folder.exists()


def serve_exit(config: Path, grpc_port: int, workers: str) -> subprocess.CompletedProcess[str]:
    """`gateway serve` on a free HTTP port and the given gRPC port, run to its end."""
    return subprocess.run([sys.executable, "-m", "gateway", "serve", "--config", str(config),
                           "--host", "127.0.0.1", "--port", str(free_port()), "--grpc-port",
                           str(grpc_port), "--workers", workers], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_a_grpc_port_another_group_or_grpc_server_has_is_busy(write_config: ConfigWriter,
                                                              start: Start) -> None:
    """Before, the supervisor's reservation (SO_REUSEPORT) proved nothing: a second group on
    group A's gRPC port started and took about half of A's new channels, and a group started
    on a grpcio server's port (grpcio sets SO_REUSEPORT), where one process refuses."""
    import grpc

    first = start_group(start, write_config, grpc=True)
    other = grpc.server(ThreadPoolExecutor(1))
    grpc_port = other.add_insecure_port("127.0.0.1:0")
    other.start()
    try:
        config = write_config(routing=V1)
        with ThreadPoolExecutor(3) as pool:
            second, single, group = pool.map(lambda a: serve_exit(config, *a), [
                (first.grpc_port, "2"), (grpc_port, "1"), (grpc_port, "2")])
    finally:
        other.stop(None)
    assert single.returncode == 3, single.stderr
    for run in (second, group):
        assert run.returncode == single.returncode, run.stderr
        assert "the port is taken; pick another with --grpc-port" in run.stderr
        assert "worker 0 started" not in run.stderr  # refused before any worker
    assert "the port is taken" in single.stderr
    client = grpcclient.InferenceServerClient(first.grpc_url)  # A still serves its port
    assert client.is_server_live()
    client.close()
