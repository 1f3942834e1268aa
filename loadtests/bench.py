"""`make bench`: the gateway against onnxruntime called directly and against a minimal reference
app (loadtests/reference_app.py), in one run on this machine, under the same load from wrk.

Prints eight tables:
1. onnxruntime's own time per call (the floor), by rows and intra-op threads;
2. gateway vs reference at 1, 8 and 64 connections for a 1-row JSON, a 32-row JSON and a 32-row
   binary request, at full load: req/s, p50, p99, server CPU per request, and the ratio;
3. the same requests at a paced rate over 8 connections, below saturation, where latency is what
   the server adds rather than time queued: p50, p99, and the gateway's p50 over onnxruntime's;
4. batching on vs off at 64 connections on a deep, narrow MLP built here, whose 32-row call
   costs little more than a 1-row call;
5. the gateway's RSS before and after a long run (200,000 requests by default);
6. the routing decision's own time, and what a 100% shadow of an identical version costs the
   primary's p95 at a paced rate over 8 connections;
7. drift ingestion in feature values per second by batch size, the time for all statistics,
   and the gateway's throughput with the drift monitor on against off;
8. label feedback ingestion (parse and fold) in labels per second for batches of 1, 100 and
   10,000 items, and the gateway's infer throughput while feedback arrives against without.

Absolute figures depend on the machine and its load; the ratios measured in one run are what count.
Drives the load with wrk (Debian: apt-get install wrk), else with locust. Loopback only; every
run is bounded in time.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import onnxruntime as ort
import orjson
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from gateway.batching.execution import time_call  # noqa: E402

T = TypeVar("T")
DRIFT_ROUNDS = 6
MODEL = "breast-cancer"
MODEL_FILE = ROOT / "models" / MODEL / "2" / "model.onnx"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A server subprocess on a loopback port; CPU time and RSS read from /proc."""

    def __init__(self, name: str, command: list[str], port: int, log_dir: Path) -> None:
        self.name, self.port = name, port
        self.log = (log_dir / f"{name}.log").open("wb")
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{name} exited; see {self.log.name}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{name} did not start")

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def rss_mib(self) -> float:
        pages = int(Path(f"/proc/{self.process.pid}/statm").read_text().split()[1])
        return pages * PAGE_BYTES / 2**20

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


@dataclass(frozen=True)
class Load:
    name: str
    body: bytes
    headers: dict[str, str]
    rows: int


def make_loads(rows_1: np.ndarray, rows_32: np.ndarray) -> list[Load]:
    def json_body(rows: np.ndarray) -> bytes:
        return orjson.dumps({"inputs": [{"name": "input", "shape": list(rows.shape),
                                         "datatype": "FP32", "data": rows.ravel().tolist()}]})

    header = orjson.dumps({"inputs": [{"name": "input", "shape": list(rows_32.shape),
                                       "datatype": "FP32",
                                       "parameters": {"binary_data_size": rows_32.nbytes}}]})
    return [
        Load("1-row JSON", json_body(rows_1), {"Content-Type": "application/json"}, 1),
        Load("32-row JSON", json_body(rows_32), {"Content-Type": "application/json"}, 32),
        Load("32-row binary", header + rows_32.tobytes(),
             {"Content-Type": "application/octet-stream",
              "Inference-Header-Content-Length": str(len(header))}, 32),
    ]


@dataclass
class Result:
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_request: float


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _latency_ms(text: str, percentile: str) -> float:
    match = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    return float(match.group(1)) * _UNITS[match.group(2)] if match else float("nan")


def run_wrk(server: Server, path: str, load: Load, connections: int, duration_s: float,
            work_dir: Path) -> Result:
    body_file = work_dir / "body.bin"
    body_file.write_bytes(load.body)
    script = work_dir / "post.lua"
    lines = [f'local f = io.open("{body_file}", "rb")', "wrk.body = f:read('*a')", "f:close()",
             'wrk.method = "POST"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in load.headers.items()]
    script.write_text("\n".join(lines) + "\n")
    cpu_before = server.cpu_s()
    completed = subprocess.run(
        ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{max(1, round(duration_s))}s",
         "--latency", "--timeout", "10s", "-s", str(script),
         f"http://127.0.0.1:{server.port}{path}"],
        capture_output=True, text=True, timeout=duration_s + 60, check=True)
    cpu = server.cpu_s() - cpu_before
    text = completed.stdout
    requests = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    errors_match = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", text)
    errors = int(errors_match.group(1)) if errors_match else 0
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    return Result(requests, errors, rps, _latency_ms(text, "50"), _latency_ms(text, "99"),
                  cpu / max(requests, 1) * 1e6)


_LOCUSTFILE = """
from pathlib import Path
from locust import FastHttpUser, task

BODY = Path({body!r}).read_bytes()
HEADERS = {headers!r}


class Caller(FastHttpUser):
    @task
    def infer(self):
        self.client.post({path!r}, data=BODY, headers=HEADERS, name="infer")
"""


def run_locust(server: Server, path: str, load: Load, connections: int, duration_s: float,
               work_dir: Path) -> Result:
    """The fallback driver when wrk is missing: locust's FastHttpUser, headless and bounded."""
    body_file = work_dir / "body.bin"
    body_file.write_bytes(load.body)
    locustfile = work_dir / "bench_locustfile.py"
    locustfile.write_text(_LOCUSTFILE.format(body=str(body_file), headers=load.headers,
                                             path=path))
    csv_prefix = work_dir / "locust"
    cpu_before = server.cpu_s()
    subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
         "--host", f"http://127.0.0.1:{server.port}", "--users", str(connections),
         "--spawn-rate", str(connections), "--run-time", f"{max(1, round(duration_s))}s",
         "--only-summary", "--csv", str(csv_prefix)],
        capture_output=True, text=True, timeout=duration_s + 60, check=False)
    cpu = server.cpu_s() - cpu_before
    import csv

    with open(f"{csv_prefix}_stats.csv", newline="") as stats_file:
        total = next(row for row in csv.DictReader(stats_file) if row["Name"] == "Aggregated")
    requests = int(total["Request Count"])
    return Result(requests, int(total["Failure Count"]), float(total["Requests/s"]),
                  float(total["50%"]), float(total["99%"]), cpu / max(requests, 1) * 1e6)


def paced_latency_ms(server: Server, path: str, load: Load, connections: int,
                     rate_per_s: float, duration_s: float) -> tuple[float, float, int]:
    """p50 and p99 latency (ms) and errors at a fixed request rate, well below saturation."""
    percentiles, errors = paced_percentiles_ms(server, path, load, connections, rate_per_s,
                                               duration_s, (50, 99))
    return percentiles[0], percentiles[1], errors


def paced_percentiles_ms(server: Server, path: str, load: Load, connections: int,
                         rate_per_s: float, duration_s: float,
                         percentiles: tuple[float, ...]) -> tuple[list[float], int]:
    """Latency percentiles (ms) and errors at a fixed request rate, well below saturation.

    wrk keeps every connection busy, so at its load the latency is mostly time spent queued;
    paced requests show what the server itself adds to a call. Raw HTTP/1.1 over keep-alive
    connections from this process, so the client's own time is included (a conservative bias).
    """
    import asyncio

    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(load.body)}"]
    head += [f"{k}: {v}" for k, v in load.headers.items()]
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + load.body
    latencies: list[float] = []
    errors = 0

    async def connection(offset_s: float, end: float) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        interval = connections / rate_per_s
        next_send = time.perf_counter() + offset_s
        while next_send < end:
            await asyncio.sleep(max(0.0, next_send - time.perf_counter()))
            start = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            errors += not status_line.startswith(b"HTTP/1.1 200")
            next_send = max(next_send + interval, time.perf_counter())
        writer.close()

    async def run() -> None:
        end = time.perf_counter() + duration_s
        await asyncio.gather(*(connection(i / rate_per_s, end) for i in range(connections)))

    asyncio.run(run())
    samples = np.array(latencies) * 1e3
    return [float(np.percentile(samples, p)) for p in percentiles], errors


def onnxruntime_call_us(model: bytes | str, rows: np.ndarray, intra_op: int) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return time_call(lambda: session.run(None, {"input": rows}), repeats=300) * 1e6


def deep_mlp(hidden: int = 16, layers: int = 1000, seed: int = 0) -> bytes:
    """A deep, narrow MLP: per-operator overhead dominates, so 32 rows cost little more than 1."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    initializers, nodes, previous, width = [], [], "input", 30
    for i in range(layers):
        weights = (rng.standard_normal((width, hidden)) / np.sqrt(width)).astype(np.float32)
        initializers.append(numpy_helper.from_array(weights, f"w{i}"))
        nodes += [helper.make_node("MatMul", [previous, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Tanh", [f"m{i}"], [f"t{i}"])]
        previous, width = f"t{i}", hidden
    head = (rng.standard_normal((width, 2)) / np.sqrt(width)).astype(np.float32)
    initializers.append(numpy_helper.from_array(head, "head"))
    nodes += [helper.make_node("MatMul", [previous, "head"], ["logits"]),
              helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 30])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])],
        initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def write_gateway_config(work_dir: Path, name: str, repository: Path, routing: dict[str, object],
                         batching: dict[str, object]) -> Path:
    config_dir = work_dir / name
    config_dir.mkdir()
    (config_dir / "routing.yaml").write_text(yaml.safe_dump(routing))
    config = {"model_repository": str(repository), "routing": "routing.yaml",
              "execution_provider": "cpu", "batching": batching}
    (config_dir / "gateway.yaml").write_text(yaml.safe_dump(config))
    return config_dir / "gateway.yaml"


def start_gateway(name: str, config: Path, work_dir: Path) -> Server:
    port = free_port()
    return Server(name, [sys.executable, "-m", "gateway", "serve", "--config", str(config),
                         "--host", "127.0.0.1", "--port", str(port)], port, work_dir)


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    sys.stdout.flush()


def bench_floor(rows_1: np.ndarray, rows_32: np.ndarray) -> dict[int, float]:
    table, floor = [], {}
    for rows in (rows_1, rows_32):
        per_thread = [onnxruntime_call_us(str(MODEL_FILE), rows, n) for n in (1, 2)]
        floor[len(rows)] = per_thread[0]
        table.append([str(len(rows)), f"{per_thread[0]:.1f}", f"{per_thread[1]:.1f}"])
    print_table(f"1. onnxruntime called directly, {MODEL} version 2 (median µs per call)",
                ["rows", "intra_op=1", "intra_op=2"], table)
    return floor


def bench_gateway_vs_reference(args: argparse.Namespace, loads: list[Load],
                               floor: dict[int, float], work_dir: Path) -> None:
    gateway = start_gateway("gateway", ROOT / "config" / "gateway.yaml", work_dir)
    reference = Server("reference", [sys.executable, str(ROOT / "loadtests" / "reference_app.py"),
                                     "--model", str(MODEL_FILE), "--port",
                                     str(reference_port := free_port())], reference_port, work_dir)
    path = f"/v2/models/{MODEL}/infer"
    saturated, paced = [], []
    try:
        for load in loads:
            for connections in args.connections:
                g = args.drive(gateway, path, load, connections, args.duration, work_dir)
                r = args.drive(reference, path, load, connections, args.duration, work_dir)
                saturated.append([load.name, str(connections),
                                  f"{g.rps:,.0f}", f"{r.rps:,.0f}", f"{g.rps / r.rps:.2f}×",
                                  f"{g.p50_ms:.2f}", f"{r.p50_ms:.2f}", f"{g.p99_ms:.2f}",
                                  f"{r.p99_ms:.2f}", f"{g.cpu_us_per_request:.0f}",
                                  f"{r.cpu_us_per_request:.0f}", str(g.errors + r.errors)])
            g50, g99, g_errors = paced_latency_ms(gateway, path, load, 8, args.paced_rate,
                                                  args.duration)
            r50, r99, r_errors = paced_latency_ms(reference, path, load, 8, args.paced_rate,
                                                  args.duration)
            paced.append([load.name, f"{g50:.3f}", f"{r50:.3f}", f"{g99:.3f}", f"{r99:.3f}",
                          f"{g50 - floor[load.rows] / 1000:.3f}", str(g_errors + r_errors)])
    finally:
        gateway.stop()
        reference.stop()
    print_table(
        f"2. gateway vs reference app at full load, {args.duration:g} s per cell "
        f"({args.drive.__name__.removeprefix('run_')}; latency in ms, server CPU in µs per "
        "request)",
        ["request", "conns", "gw req/s", "ref req/s", "ratio", "gw p50", "ref p50", "gw p99",
         "ref p99", "gw CPU", "ref CPU", "errors"], saturated)
    print_table(
        f"3. latency at a paced {args.paced_rate:g} req/s over 8 connections, below saturation "
        "(ms; overhead: gateway p50 minus onnxruntime's own call; client time included)",
        ["request", "gw p50", "ref p50", "gw p99", "ref p99", "gw overhead", "errors"], paced)


def bench_batching(args: argparse.Namespace, work_dir: Path) -> None:
    mlp = deep_mlp()
    repository = work_dir / "mlp-models"
    version_dir = repository / "mlp" / "1"
    version_dir.mkdir(parents=True)
    (version_dir / "model.onnx").write_bytes(mlp)
    (version_dir / "manifest.yaml").write_text(yaml.safe_dump(
        {"sha256": hashlib.sha256(mlp).hexdigest(), "created": "bench",
         "features": [f"x{i}" for i in range(30)]}))
    one, batch = (onnxruntime_call_us(mlp, np.random.rand(n, 30).astype(np.float32), 1)
                  for n in (1, 32))
    routing = {"models": {"mlp": {"traffic": [{"version": 1, "weight": 100}]}}}
    row = make_loads(np.random.rand(1, 30).astype(np.float32),
                     np.random.rand(32, 30).astype(np.float32))[0]
    table = []
    for label, batching in (("off", {"max_batch_size": 1}),
                            ("on", {"max_batch_size": 32, "max_queue_delay_us": 500})):
        config = write_gateway_config(work_dir, f"mlp-{label}", repository, routing, batching)
        server = start_gateway(f"gateway-mlp-{label}", config, work_dir)
        try:
            result = args.drive(server, "/v2/models/mlp/infer", row, 64, args.duration, work_dir)
        finally:
            server.stop()
        table.append([label, f"{result.rps:,.0f}", f"{result.p50_ms:.2f}",
                      f"{result.p99_ms:.2f}", str(result.errors)])
    table.append(["on/off", f"{parse_rps(table[1]) / parse_rps(table[0]):.2f}×", "", "", ""])
    print_table(f"4. batching off vs on, 64 connections, 1-row JSON, deep MLP (onnxruntime: "
                f"{one:.0f} µs per 1-row call, {batch:.0f} µs per 32-row call)",
                ["batching", "req/s", "p50 ms", "p99 ms", "errors"], table)


def bench_routing(args: argparse.Namespace, loads: list[Load], work_dir: Path) -> None:
    """The routing decision's own cost, and what a 100% shadow of an identical version costs
    the primary's p95 at 8 connections."""
    from gateway.routing.decide import choose_version
    from gateway.routing.policy import Flag, ModelPolicy, TrafficEntry

    policy = ModelPolicy((TrafficEntry(1, 80), TrafficEntry(2, 15), TrafficEntry(3, 5)),
                         "x-user-id", (Flag("beta", "x-beta", None, frozenset({"true"}), 2),), ())
    headers = {"x-user-id": "user-12345", "content-type": "application/json"}
    sticky_us = time_call(lambda: choose_version(policy, headers, {}), repeats=2000) * 1e6
    random_us = time_call(lambda: choose_version(policy, {}, {}), repeats=2000) * 1e6

    repository = work_dir / "shadow-models"
    shutil.copytree(ROOT / "models", repository, ignore=shutil.ignore_patterns("*.py"))
    twin = repository / MODEL / "4"
    shutil.copytree(repository / MODEL / "2", twin)  # an identical version to shadow with
    servers = []
    for label, extra in (("no shadow", {}), ("100% shadow", {"shadow": [{"version": 4,
                                                                         "percent": 100}]})):
        routing = {"models": {MODEL: {"traffic": [{"version": 2, "weight": 100}], **extra}}}
        config = write_gateway_config(work_dir, f"shadow-{label[:2]}", repository, routing, {})
        servers.append((label, start_gateway(f"gateway-{label[:2]}", config, work_dir)))
    try:
        measured = alternate(servers, lambda server: paced_percentiles_ms(
            server, f"/v2/models/{MODEL}/infer", loads[0], 8, args.paced_rate,
            args.duration, (50, 95)))
    finally:
        for _, server in servers:
            server.stop()
    rows = []
    for (label, _), runs in zip(servers, measured, strict=True):
        p50, p95 = (float(np.median([r[0][i] for r in runs])) for i in (0, 1))
        rows.append([label, f"{p50:.3f}", f"{p95:.3f}", str(sum(r[1] for r in runs))])
    cost = float(rows[1][2]) / float(rows[0][2]) - 1
    rows.append(["shadow cost", "", f"{cost:+.1%}", ""])
    print_table(f"6. routing: the decision takes {sticky_us:.1f} µs with a sticky key, "
                f"{random_us:.1f} µs without; a shadow's cost to the primary at a paced "
                f"{args.paced_rate:g} req/s over 8 connections (1-row JSON, ms; medians of 3 "
                "alternating runs)",
                ["primary", "p50", "p95", "errors"], rows)


def alternate(servers: list[tuple[str, Server]], measure: Callable[[Server], T],
              rounds: int = 3) -> list[list[T]]:
    """Measure A, B, A, B, ...: both servers see the machine in the same states, so a drift
    in the machine's load over the run does not pass for a difference between them."""
    results: list[list[T]] = [[] for _ in servers]
    for _ in range(rounds):
        for i, (_, server) in enumerate(servers):
            results[i].append(measure(server))
    return results


def bench_drift(args: argparse.Namespace, loads: list[Load], work_dir: Path) -> None:
    """Drift ingestion speed by batch size, the time for all statistics, and the gateway's
    throughput with the monitor on against off."""
    from sklearn.datasets import load_breast_cancer

    from gateway.observability.drift import DriftMonitor

    reference = ROOT / "models" / MODEL / "2" / "reference.json"
    data = load_breast_cancer().data
    rows_table = []
    for rows in (1, 32, 1024):
        batch = np.resize(data, (rows, data.shape[1]))
        outputs = {"label": np.zeros(rows, np.int64),
                   "probabilities": np.full((rows, 2), 0.5, np.float32)}
        monitor = DriftMonitor.from_reference_file(reference)
        calls = max(1, 4096 // rows)  # enough for several folds, each included in the time

        def ingest_and_fold(b: np.ndarray = batch, o: dict[str, np.ndarray] = outputs,
                            m: DriftMonitor = monitor, n: int = calls) -> None:
            for _ in range(n):
                m.ingest(b, o)
            m.flush()

        seconds = time_call(ingest_and_fold, repeats=10) / calls
        rows_table.append([str(rows), f"{seconds * 1e6:.1f}",
                           f"{rows * data.shape[1] / seconds / 1e6:.1f}"])
    # Single-row requests as the gateway feeds them: observe() on the request path, one fold of
    # what gathered in the buffer (here 1,000 requests) on the drift thread.
    from gateway.observability.drift.service import DriftService
    from gateway.settings import DriftSettings
    from gateway.tensors import TensorSpec

    service = DriftService(DriftSettings())
    service.track(MODEL, 2, reference, (TensorSpec("input", "FP32", (-1, 30)),))
    tracked = service.tracked_reports()[0]
    singles = [np.resize(data, (1, data.shape[1])).astype(np.float32) for _ in range(1000)]
    one_row_outputs = {"label": np.zeros(1, np.int64),
                       "probabilities": np.full((1, 2), 0.5, np.float32)}

    def through_service() -> None:
        for row in singles:
            service.observe(MODEL, 2, {"input": row}, one_row_outputs)
        taken = list(tracked.buffer)
        tracked.buffer.clear()
        tracked.buffered_rows = 0
        service._fold([(tracked, taken)], False)

    seconds = time_call(through_service, repeats=20)
    rows_table.append(["1 (1,000 requests, as served)", f"{seconds / 1000 * 1e6:.1f} per row",
                       f"{1000 * data.shape[1] / seconds / 1e6:.1f}"])
    monitor = DriftMonitor.from_reference_file(reference)
    monitor.ingest(data)
    report_us = time_call(monitor.report, repeats=200) * 1e6
    servers = []
    for label, enabled in (("off", False), ("on", True)):
        config_dir = work_dir / f"drift-{label}"
        config_dir.mkdir()
        shutil.copy(ROOT / "config" / "routing.yaml", config_dir / "routing.yaml")
        (config_dir / "gateway.yaml").write_text(yaml.safe_dump(
            {"model_repository": str(ROOT / "models"), "routing": "routing.yaml",
             "execution_provider": "cpu", "drift": {"enabled": enabled}}))
        servers.append((label, start_gateway(f"gateway-drift-{label}",
                                             config_dir / "gateway.yaml", work_dir)))
    try:
        measured = alternate(servers, lambda server: args.drive(
            server, f"/v2/models/{MODEL}/infer", loads[0], 64, args.duration, work_dir),
            rounds=args.rounds)
    finally:
        for _, server in servers:
            server.stop()
    # Medians of many short alternating runs: two identical gateways differ by up to 12% in
    # one 5-second run on this shared machine, less in the median.
    off_rps, on_rps = (float(np.median([r.rps for r in runs])) for runs in measured)
    errors = sum(r.errors for runs in measured for r in runs)
    print_table(f"7. drift monitor: ingestion by batch size (30 features and 2 outputs); all "
                f"statistics of a version in {report_us:.0f} µs; gateway at 64 connections, "
                f"1-row JSON, medians of {args.rounds} alternating runs: {on_rps:,.0f} req/s "
                f"with the monitor on, {off_rps:,.0f} off "
                f"(on/off {on_rps / off_rps:.2f}×, errors {errors})",
                ["rows per batch", "µs per batch (folds included)", "M feature values/s"],
                rows_table)


def bench_feedback(args: argparse.Namespace, loads: list[Load], work_dir: Path) -> None:
    """Feedback parse + fold speed by batch size, and what a steady stream of feedback costs
    the infer throughput of the same gateway (alternating runs with and without it)."""
    import threading
    import urllib.request

    from gateway.observability.feedback import FeedbackService
    from gateway.protocol.feedback import parse_feedback
    from gateway.runtime.repository import scan_repository

    rng = np.random.default_rng(0)
    service = FeedbackService(5000)
    service.sync(scan_repository(ROOT / "models"))
    model = service.model(MODEL)
    assert model is not None
    versions = frozenset({1, 2, 3})
    rows_table = []
    for items in (1, 100, 10_000):
        body = orjson.dumps({"feedback": [
            {"label": int(y), "version": 2, "prediction": int(p), "id": f"r{i}"}
            for i, (y, p) in enumerate(zip(rng.integers(0, 2, items), rng.integers(0, 2, items),
                                           strict=True))]})
        parse_s = time_call(lambda b=body: parse_feedback(b, model.space, versions, 10_000),
                            repeats=max(5, 2000 // items))
        batch = parse_feedback(body, model.space, versions, 10_000)
        fold_s = time_call(lambda b=batch: model.fold(b), repeats=max(5, 2000 // items))
        total = parse_s + fold_s
        rows_table.append([f"{items:,}", f"{parse_s * 1e6:,.1f}", f"{fold_s * 1e6:,.1f}",
                           f"{items / total:,.0f}"])
    gateway = start_gateway("gateway-feedback", ROOT / "config" / "gateway.yaml", work_dir)
    feedback_body = orjson.dumps({"feedback": [
        {"label": int(y), "version": 2, "prediction": int(y)} for y in rng.integers(0, 2, 100)]})
    posted = [0]

    def measure(with_feedback: bool) -> Result:
        stop = threading.Event()

        def post() -> None:
            url = f"http://127.0.0.1:{gateway.port}/v2/models/{MODEL}/feedback"
            while not stop.is_set():
                request = urllib.request.Request(url, data=feedback_body, method="POST")
                with urllib.request.urlopen(request, timeout=10) as reply:
                    reply.read()
                posted[0] += 100

        poster = threading.Thread(target=post) if with_feedback else None
        if poster:
            poster.start()
        try:
            return args.drive(gateway, f"/v2/models/{MODEL}/infer", loads[0], 64,
                              args.duration, work_dir)
        finally:
            stop.set()
            if poster:
                poster.join()

    try:
        runs = [[], []]  # without, with
        for _ in range(args.rounds):
            for i, with_feedback in enumerate((False, True)):
                runs[i].append(measure(with_feedback))
    finally:
        gateway.stop()
    without, with_ = (float(np.median([r.rps for r in results])) for results in runs)
    labels_per_s = posted[0] / (args.rounds * args.duration)
    print_table(f"8. label feedback: parse and fold by batch size; gateway at 64 connections, "
                f"1-row JSON, medians of {args.rounds} alternating runs: {with_:,.0f} req/s "
                f"while 100-label batches arrive back to back ({labels_per_s:,.0f} labels/s), "
                f"{without:,.0f} without (ratio {with_ / without:.2f}×)",
                ["items per batch", "parse µs", "fold µs", "labels/s"], rows_table)


def parse_rps(row: list[str]) -> float:
    return float(row[1].replace(",", ""))


def bench_memory(args: argparse.Namespace, loads: list[Load], work_dir: Path) -> None:
    gateway = start_gateway("gateway-memory", ROOT / "config" / "gateway.yaml", work_dir)
    try:
        warm = args.drive(gateway, f"/v2/models/{MODEL}/infer", loads[0], 8, 2, work_dir)
        before = gateway.rss_mib()
        served = warm.requests
        while served < args.memory_requests:
            served += args.drive(gateway, f"/v2/models/{MODEL}/infer", loads[0], 64, 10,
                                 work_dir).requests
        after = gateway.rss_mib()
    finally:
        gateway.stop()
    print_table("5. gateway memory (RSS) across a long run, 1-row JSON at 64 connections",
                ["requests", "RSS after warm-up MiB", "RSS after MiB", "change"],
                [[f"{served:,}", f"{before:.1f}", f"{after:.1f}",
                  f"{(after - before) / before:+.1%}"]])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per cell")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--memory-requests", type=int, default=200_000,
                        help="requests for the RSS table (0 skips it)")
    parser.add_argument("--paced-rate", type=float, default=1000.0,
                        help="request rate of the paced latency table, per second")
    parser.add_argument("--tables", type=int, nargs="+", default=list(range(1, 9)),
                        help="which tables to print (default: all eight)")
    parser.add_argument("--rounds", type=int, default=DRIFT_ROUNDS,
                        help="alternating runs whose median tables 7 and 8 report")
    parser.add_argument("--skip-batching", action="store_true", help="skip table 4")
    args = parser.parse_args()
    args.drive = run_wrk if shutil.which("wrk") else run_locust
    if args.drive is run_locust:
        print("wrk is not installed (apt-get install wrk); driving the load with locust, "
              "which saturates before the servers do: compare ratios only", file=sys.stderr)
    print(f"gateway bench, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
          f"onnxruntime {ort.__version__}, Python {sys.version.split()[0]}")
    rng = np.random.default_rng(0)
    rows_1, rows_32 = (rng.uniform(0, 30, (n, 30)).astype(np.float32) for n in (1, 32))
    loads = make_loads(rows_1, rows_32)
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        work_dir = Path(tmp)
        wanted = set(args.tables)
        if wanted & {1, 2, 3}:
            floor = bench_floor(rows_1, rows_32)
            if wanted & {2, 3}:
                bench_gateway_vs_reference(args, loads, floor, work_dir)
        if 4 in wanted and not args.skip_batching:
            bench_batching(args, work_dir)
        if 5 in wanted and args.memory_requests:
            bench_memory(args, loads, work_dir)
        if 6 in wanted:
            bench_routing(args, loads, work_dir)
        if 7 in wanted:
            bench_drift(args, loads, work_dir)
        if 8 in wanted:
            bench_feedback(args, loads, work_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
