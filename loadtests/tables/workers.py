"""Table 14: one gateway with 1 worker against the same with 2 (`server.workers`), one JSON row
at 8 and 64 connections, alternating (1, 2, 1, 2), medians.

wrk runs on the same cores as the gateway (on a 2-core machine, two workers and wrk share two
cores), so the ratio is what a second worker buys on a machine with no core to spare. Server CPU
counts the supervisor and every worker (from /proc); memory is the workers' VmRSS summed and
divided by the workers, with the supervisor's beside it.

At 8 connections each of 2 workers serves 4, and a gateway costs more CPU per request at low
concurrency (one process, measured in one run: 255 µs per request at 4 connections, 169 at 8,
142 at 64), so there the ratio is bounded by the single process's cost at 4 connections, not by
the group: 2 workers at 8 connections cost what 1 worker at 4 does (240 µs).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from loadtests.drivers import Result
from loadtests.harness import (
    CLOCK_TICKS,
    MODEL,
    PAGE_BYTES,
    Context,
    Server,
    Table,
    alternate,
    bench_config,
    free_port,
)

CONNECTIONS = (8, 64)
WORKERS = (1, 2)
ROUNDS = 2


def workers_of(server: Server) -> list[int]:
    """The pids of a gateway's worker processes (none for a single process)."""
    pid = server.process.pid
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mib(pid: int) -> float:
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * PAGE_BYTES / 2**20


class Group(Server):
    """A gateway whose CPU time is its own and its workers' (each read from /proc)."""

    def cpu_s(self) -> float:
        return super().cpu_s() + sum(map(cpu_s, workers_of(self)))

    def memory(self) -> tuple[float, float]:
        """(RSS per worker, the supervisor's RSS) in MiB; a single process is its own worker
        and has no supervisor."""
        workers = workers_of(self)
        if not workers:
            return self.rss_mib(), 0.0
        return sum(map(rss_mib, workers)) / len(workers), self.rss_mib()


def start_group(ctx: Context, workers: int) -> Group:
    config = bench_config(ctx.work_dir, f"workers-{workers}", server={"workers": workers})
    port = free_port()
    server = Group(f"gateway-workers-{workers}",
                   [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--host",
                    "127.0.0.1", "--port", str(port), "--grpc-port", "0"], port, ctx.work_dir)
    if workers > 1:
        _wait_for_workers(server, workers)
    return server


def _wait_for_workers(server: Group, workers: int) -> None:
    """Until every worker serves (the port answers as soon as the first does)."""
    deadline = time.monotonic() + 60
    while server.log_path.read_text().count("Application startup complete") < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name}: not every worker started in 60 s")
        time.sleep(0.1)


def run(ctx: Context) -> list[Table]:
    args = ctx.args
    load = next(load for load in ctx.loads if load.name == "1-row JSON")
    path = f"/v2/models/{MODEL}/infer"
    servers = [(f"{n} worker{'s' if n > 1 else ''}", start_group(ctx, n)) for n in WORKERS]
    rows: list[list[str]] = []
    try:
        for connections in CONNECTIONS:
            results = alternate(servers, lambda s, c=connections: args.drive(
                s, path, load, c, args.duration, ctx.work_dir), rounds=ROUNDS)
            base = statistics.median(r.rps for r in results[0])
            for (name, server), measured in zip(servers, results, strict=True):
                rows.append(_row(name, connections, measured, base, server))
    finally:
        for _, server in servers:
            server.stop()
    return [Table(
        f"14. workers: one gateway with 1 and 2 worker processes (server.workers), 1-row JSON, "
        f"{args.duration:g} s per cell, alternating, medians of {ROUNDS}; wrk on the same "
        "cores; server CPU (supervisor and workers) in µs per request; memory: VmRSS per "
        "worker, and the supervisor's",
        ["server", "connections", "req/s", "p50", "p99", "server CPU", "vs 1 worker",
         "RSS per worker", "supervisor RSS", "errors"], rows)]


def _row(name: str, connections: int, measured: list[Result], base_rps: float,
         server: Group) -> list[str]:
    rps = statistics.median(r.rps for r in measured)
    per_worker, supervisor = server.memory()
    return [name, str(connections), f"{rps:,.0f}",
            f"{statistics.median(r.p50_ms for r in measured):.2f}",
            f"{statistics.median(r.p99_ms for r in measured):.2f}",
            f"{statistics.median(r.cpu_us_per_request for r in measured):.0f}",
            f"{rps / base_rps:.2f}×", f"{per_worker:.0f} MiB",
            f"{supervisor:.0f} MiB" if supervisor else "-",
            str(sum(r.errors for r in measured))]
