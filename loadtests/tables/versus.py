"""Tables 2 and 3: the gateway against the reference app, at full load and paced.

Table 2 also runs the limit (the reference app calling onnxruntime on the event loop, `--inline`:
the fastest this stack answers a cheap model) and gives the gateway's req/s as a share of it,
for each kind of request; every cell alternates gateway, reference, limit.
"""

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
    limit = Server("limit", [sys.executable, str(ROOT / "loadtests" / "reference_app.py"),
                             "--model", str(MODEL_FILE), "--port", str(limit_port := free_port()),
                             "--inline"], limit_port, work_dir)
    path = f"/v2/models/{MODEL}/infer"
    saturated, paced = [], []
    try:
        for load in loads:
            for connections in args.connections:
                g = args.drive(gateway, path, load, connections, args.duration, work_dir)
                r = args.drive(reference, path, load, connections, args.duration, work_dir)
                lim = args.drive(limit, path, load, connections, args.duration, work_dir)
                saturated.append([load.name, str(connections),
                                  f"{g.rps:,.0f}", f"{r.rps:,.0f}", f"{g.rps / r.rps:.2f}×",
                                  f"{lim.rps:,.0f}", f"{g.rps / lim.rps:.0%}",
                                  f"{g.p50_ms:.2f}", f"{r.p50_ms:.2f}", f"{g.p99_ms:.2f}",
                                  f"{r.p99_ms:.2f}", f"{g.cpu_us_per_request:.0f}",
                                  f"{r.cpu_us_per_request:.0f}", f"{lim.cpu_us_per_request:.0f}",
                                  str(g.errors + r.errors + lim.errors)])
            g50, g99, g_errors = paced_latency_ms(gateway, path, load, 8, args.paced_rate,
                                                  args.duration)
            r50, r99, r_errors = paced_latency_ms(reference, path, load, 8, args.paced_rate,
                                                  args.duration)
            paced.append([load.name, f"{g50:.3f}", f"{r50:.3f}", f"{g99:.3f}", f"{r99:.3f}",
                          f"{g50 - ctx.floor(load.rows) / 1000:.3f}", str(g_errors + r_errors)])
    finally:
        gateway.stop()
        reference.stop()
        limit.stop()
    tables.append(Table(
        f"2. gateway vs reference app at full load, and vs the limit (onnxruntime on the event "
        f"loop), {args.duration:g} s per cell ({args.drive.__name__.removeprefix('run_')}; "
        "latency in ms, server CPU in µs per request)",
        ["request", "conns", "gw req/s", "ref req/s", "ratio", "limit req/s", "gw of limit",
         "gw p50", "ref p50", "gw p99", "ref p99", "gw CPU", "ref CPU", "limit CPU", "errors"],
        saturated))
    tables.append(Table(
        f"3. latency at a paced {args.paced_rate:g} req/s over 8 connections, below saturation "
        "(ms; overhead: gateway p50 minus onnxruntime's own call; client time included)",
        ["request", "gw p50", "ref p50", "gw p99", "ref p99", "gw overhead", "errors"], paced))
    return tables
