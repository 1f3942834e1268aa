"""Table 13: the same gateway over gRPC and over HTTP, at 8 and 64 concurrent calls.

One gateway process serves both transports; its own CPU per request (from /proc) is what the
transports cost, comparable across rows. HTTP is driven by wrk (as tables 2 and 9), gRPC by an
async grpc.aio client (loadtests/grpc_load.py) in a process of its own; on a small machine the
Python client takes more of the CPU than wrk does, so gRPC's req/s is the lower bound of what the
gateway can do, and server CPU per request the fairer figure.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

from loadtests.drivers import Result
from loadtests.grpc_load import infer_request
from loadtests.harness import (
    MODEL,
    ROOT,
    Context,
    Server,
    Table,
    bench_config,
    free_port,
    start_gateway,
)

CONCURRENCY = (8, 64)


def grpc_result(server: Server, grpc_port: int, body: bytes, concurrency: int,
                duration_s: float, ctx: Context) -> Result:
    body_file = ctx.work_dir / "grpc-body.bin"
    body_file.write_bytes(body)
    answered_before = answered(server)
    cpu_before = server.cpu_s()
    done = subprocess.run([sys.executable, "-m", "loadtests.grpc_load",
                           "--target", f"127.0.0.1:{grpc_port}", "--body", str(body_file),
                           "--concurrency", str(concurrency), "--duration", str(duration_s)],
                          cwd=ROOT, capture_output=True, text=True, timeout=duration_s + 60,
                          check=True)
    cpu = server.cpu_s() - cpu_before
    calls = answered(server) - answered_before  # the client's warm-up calls included, as is
    seen = json.loads(done.stdout.strip().splitlines()[-1])  # their CPU
    return Result(int(seen["requests"]), int(seen["errors"]), seen["rps"], seen["p50_ms"],
                  seen["p99_ms"], cpu / max(calls, 1) * 1e6)


def answered(server: Server) -> float:
    """Requests the gateway has answered, by its own gateway_requests_total."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("gateway_requests_total{"))


def run(ctx: Context) -> list[Table]:
    args = ctx.args
    grpc_port = free_port()
    server = start_gateway("gateway-grpc", bench_config(ctx.work_dir, "grpc"), ctx.work_dir,
                           grpc_port=grpc_port)
    http_loads = {load.name: load for load in ctx.loads}
    cells: list[tuple[str, str, str, object]] = [
        ("1-row", "HTTP JSON", "http", http_loads["1-row JSON"]),
        ("1-row", "gRPC typed", "grpc", infer_request(MODEL, ctx.rows_1, raw=False)),
        ("1-row", "gRPC raw", "grpc", infer_request(MODEL, ctx.rows_1, raw=True)),
        ("32-row", "HTTP JSON", "http", http_loads["32-row JSON"]),
        ("32-row", "HTTP binary", "http", http_loads["32-row binary"]),
        ("32-row", "gRPC typed", "grpc", infer_request(MODEL, ctx.rows_32, raw=False)),
        ("32-row", "gRPC raw", "grpc", infer_request(MODEL, ctx.rows_32, raw=True)),
    ]
    rows: list[list[str]] = []
    path = f"/v2/models/{MODEL}/infer"
    try:
        for concurrency in CONCURRENCY:
            for size, label, transport, load in cells:
                if transport == "http":
                    r = args.drive(server, path, load, concurrency, args.duration, ctx.work_dir)
                else:
                    assert isinstance(load, bytes)
                    r = grpc_result(server, grpc_port, load, concurrency, args.duration, ctx)
                rows.append([size, label, str(concurrency), f"{r.rps:,.0f}", f"{r.p50_ms:.2f}",
                             f"{r.p99_ms:.2f}", f"{r.cpu_us_per_request:.0f}", str(r.errors)])
    finally:
        server.stop()
    return [Table(
        f"13. gRPC and HTTP on one gateway, {args.duration:g} s per cell (HTTP: "
        f"{args.drive.__name__.removeprefix('run_')}; gRPC: an async grpc.aio client; latency "
        "in ms, server CPU in µs per request)",
        ["request", "transport", "calls", "req/s", "p50", "p99", "server CPU", "errors"], rows)]
