"""Table 6: the routing decision's own time, and what a shadow costs the primary."""

from __future__ import annotations

import shutil

import numpy as np

from gateway.batching.execution import time_call
from loadtests.drivers import paced_percentiles_ms
from loadtests.harness import (
    MODEL,
    ROOT,
    Context,
    Table,
    alternate,
    start_gateway,
    write_gateway_config,
)


def run(ctx: Context) -> list[Table]:
    """The routing decision's own cost, and what a 100% shadow of an identical version costs
    the primary's p95 at 8 connections."""
    args, loads, work_dir = ctx.args, ctx.loads, ctx.work_dir
    tables: list[Table] = []
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
        config = write_gateway_config(work_dir / f"shadow-{label[:2]}", repository, routing)
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
    tables.append(Table(
        f"6. routing: the decision takes {sticky_us:.1f} µs with a sticky key, "
                f"{random_us:.1f} µs without; a shadow's cost to the primary at a paced "
                f"{args.paced_rate:g} req/s over 8 connections (1-row JSON, ms; medians of 3 "
                "alternating runs)",
                ["primary", "p50", "p95", "errors"], rows))
    return tables
