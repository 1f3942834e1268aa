"""Table 13: the same gateway over gRPC and over HTTP, at 8 and 64 concurrent calls, beside the
references of each transport.

One gateway process serves both transports; its own CPU per request (from /proc) is what the
transports cost, comparable across rows. HTTP is driven by wrk (as tables 2 and 9), gRPC by an
async grpc.aio client (loadtests/grpc_load.py) in a process of its own; on a small machine the
Python client takes more of the CPU than wrk does, so gRPC's req/s is the lower bound of what the
gateway can do, and server CPU per request the fairer figure.

The references: the reference app of table 2 over HTTP (loadtests/reference_app.py), and over
gRPC the smallest grpc.aio server that runs the model (loadtests/grpc_reference.py), and the same
server answering a fixed message without running anything: what grpc.aio itself costs per call.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from loadtests.drivers import Result
from loadtests.grpc_load import infer_request
from loadtests.harness import (
    MODEL,
    MODEL_FILE,
    ROOT,
    Context,
    Load,
    Server,
    Table,
    bench_config,
    free_port,
    start_gateway,
)


def grpc_result(server: Server, grpc_port: int, body: bytes, concurrency: int,
                duration_s: float, ctx: Context, counted: bool = True) -> Result:
    """One cell over gRPC; the calls the server did are its own count (`counted`: the
    gateway's gateway_requests_total) or else the client's, warm-up included both ways."""
    body_file = ctx.work_dir / "grpc-body.bin"
    body_file.write_bytes(body)
    answered_before = answered(server) if counted else 0.0
    cpu_before = server.cpu_s()
    done = subprocess.run([sys.executable, "-m", "loadtests.grpc_load",
                           "--target", f"127.0.0.1:{grpc_port}", "--body", str(body_file),
                           "--concurrency", str(concurrency), "--duration", str(duration_s)],
                          cwd=ROOT, capture_output=True, text=True, timeout=duration_s + 60,
                          check=True)
    cpu = server.cpu_s() - cpu_before
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    calls = answered(server) - answered_before if counted else seen["calls"]
    return Result(int(seen["requests"]), int(seen["errors"]), seen["rps"], seen["p50_ms"],
                  seen["p99_ms"], cpu / max(calls, 1) * 1e6)


def answered(server: Server) -> float:
    """Requests the gateway has answered, by its own gateway_requests_total."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("gateway_requests_total{"))


def reference_server(name: str, command: list[str], work_dir: Path) -> tuple[Server, int]:
    port = free_port()
    return Server(name, [sys.executable, *command, "--model", str(MODEL_FILE), "--port",
                         str(port)], port, work_dir), port


def run(ctx: Context) -> list[Table]:
    args = ctx.args
    grpc_port = free_port()
    gateway = start_gateway("gateway-grpc", bench_config(ctx.work_dir, "grpc"), ctx.work_dir,
                            grpc_port=grpc_port)
    servers = {"gateway": (gateway, grpc_port)}
    try:
        servers["reference app"] = reference_server(
            "reference-http", [str(ROOT / "loadtests" / "reference_app.py")], ctx.work_dir)
        servers["gRPC reference"] = reference_server(
            "reference-grpc", ["-m", "loadtests.grpc_reference"], ctx.work_dir)
        servers["grpc.aio, no model"] = reference_server(
            "reference-noop", ["-m", "loadtests.grpc_reference", "--noop"], ctx.work_dir)
        rows = measure(ctx, servers)
    finally:
        for server, _ in servers.values():
            server.stop()
    return [Table(
        f"13. gRPC and HTTP on one gateway, beside each transport's reference, "
        f"{args.duration:g} s per cell (HTTP: {args.drive.__name__.removeprefix('run_')}; "
        "gRPC: an async grpc.aio client; latency in ms, server CPU in µs per request; vs "
        "HTTP: req/s and CPU against the gateway's HTTP row of that request, JSON for 1 row, "
        "binary for 32)",
        ["request", "server", "transport", "calls", "req/s", "p50", "p99", "server CPU",
         "vs HTTP", "errors"], rows)]


def measure(ctx: Context, servers: dict[str, tuple[Server, int]]) -> list[list[str]]:
    args = ctx.args
    http_loads = {load.name: load for load in ctx.loads}
    typed_1 = infer_request(MODEL, ctx.rows_1, raw=False)
    raw_1 = infer_request(MODEL, ctx.rows_1, raw=True)
    typed_32 = infer_request(MODEL, ctx.rows_32, raw=False)
    raw_32 = infer_request(MODEL, ctx.rows_32, raw=True)
    cells: list[tuple[str, str, str, str, Load | bytes]] = [
        ("1-row", "gateway", "HTTP JSON", "http", http_loads["1-row JSON"]),
        ("1-row", "reference app", "HTTP JSON", "http", http_loads["1-row JSON"]),
        ("1-row", "gateway", "gRPC typed", "grpc", typed_1),
        ("1-row", "gateway", "gRPC raw", "grpc", raw_1),
        ("1-row", "gRPC reference", "gRPC raw", "grpc", raw_1),
        ("1-row", "grpc.aio, no model", "gRPC raw", "grpc", raw_1),
        ("32-row", "gateway", "HTTP JSON", "http", http_loads["32-row JSON"]),
        ("32-row", "gateway", "HTTP binary", "http", http_loads["32-row binary"]),
        ("32-row", "reference app", "HTTP binary", "http", http_loads["32-row binary"]),
        ("32-row", "gateway", "gRPC typed", "grpc", typed_32),
        ("32-row", "gateway", "gRPC raw", "grpc", raw_32),
        ("32-row", "gRPC reference", "gRPC raw", "grpc", raw_32),
    ]
    path = f"/v2/models/{MODEL}/infer"
    rows: list[list[str]] = []
    # The run's connection counts above one (8 and 64 by default), as tables 9 and 14 take them.
    for concurrency in [c for c in args.connections if c > 1] or [8]:
        http: dict[str, Result] = {}
        for size, name, label, transport, load in cells:
            server, port = servers[name]
            if isinstance(load, Load):
                r = args.drive(server, path, load, concurrency, args.duration, ctx.work_dir)
            else:
                r = grpc_result(server, port, load, concurrency, args.duration, ctx,
                                counted=name == "gateway")
            versus = ""
            if name == "gateway" and transport == "http":
                if size == "1-row" or label == "HTTP binary":
                    http[size] = r
            elif name == "gateway" and size in http:
                versus = (f"{r.rps / http[size].rps:.2f}× / "
                          f"{r.cpu_us_per_request / http[size].cpu_us_per_request:.2f}×")
            rows.append([size, name, label, str(concurrency), f"{r.rps:,.0f}",
                         f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}", f"{r.cpu_us_per_request:.0f}",
                         versus, str(r.errors)])
    return rows
