"""Tables 2 and 3: the gateway against the reference app, at full load and paced."""

from __future__ import annotations

import sys

from loadtests.drivers import paced_latency_ms
from loadtests.harness import (
    MODEL,
    MODEL_FILE,
    ROOT,
    Context,
    Server,
    Table,
    bench_config,
    free_port,
    start_gateway,
)


def run(ctx: Context) -> list[Table]:
    args, loads, work_dir = ctx.args, ctx.loads, ctx.work_dir
    tables: list[Table] = []
    gateway = start_gateway("gateway", bench_config(work_dir, "versus"), work_dir)
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
                          f"{g50 - ctx.floor(load.rows) / 1000:.3f}", str(g_errors + r_errors)])
    finally:
        gateway.stop()
        reference.stop()
    tables.append(Table(
        f"2. gateway vs reference app at full load, {args.duration:g} s per cell "
        f"({args.drive.__name__.removeprefix('run_')}; latency in ms, server CPU in µs per "
        "request)",
        ["request", "conns", "gw req/s", "ref req/s", "ratio", "gw p50", "ref p50", "gw p99",
         "ref p99", "gw CPU", "ref CPU", "errors"], saturated))
    tables.append(Table(
        f"3. latency at a paced {args.paced_rate:g} req/s over 8 connections, below saturation "
        "(ms; overhead: gateway p50 minus onnxruntime's own call; client time included)",
        ["request", "gw p50", "ref p50", "gw p99", "ref p99", "gw overhead", "errors"], paced))
    return tables
