"""Table 5: the gateway's memory (RSS) across a long run."""

from __future__ import annotations

from loadtests.harness import (
    MODEL,
    Context,
    Table,
    bench_config,
    start_gateway,
)


def run(ctx: Context) -> list[Table]:
    args, loads, work_dir = ctx.args, ctx.loads, ctx.work_dir
    tables: list[Table] = []
    gateway = start_gateway("gateway-memory", bench_config(work_dir, "memory"), work_dir)
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
    tables.append(Table("5. gateway memory (RSS) across a long run, 1-row JSON at 64 connections",
                ["requests", "RSS after warm-up MiB", "RSS after MiB", "change"],
                [[f"{served:,}", f"{before:.1f}", f"{after:.1f}",
                  f"{(after - before) / before:+.1%}"]]))
    return tables
