"""`make bench`: the gateway against onnxruntime called directly and against a minimal reference
app (loadtests/reference_app.py), in one run on this machine, under the same load from wrk.
Run as `python -m loadtests.bench`; each table is a module of loadtests/tables/.

Prints fourteen tables:
1. onnxruntime's own time per call (the floor), by rows and intra-op threads;
2. gateway vs reference at 1, 8 and 64 connections for a 1-row JSON, a 32-row JSON and a 32-row
   binary request, at full load: req/s, p50, p99, server CPU per request, and the ratio; and
   the gateway's req/s as a share of the limit (the reference app calling onnxruntime on the
   event loop, `--inline`);
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
   10,000 items, and the gateway's infer throughput while feedback arrives against without;
9. every feature added one at a time (split, sticky key, flag, drift, 10% shadow, labels
   arriving, tracing) and a 100% shadow alone, as a share of the limit at 8 and 64
   connections, beside the reference app: req/s, p99, server CPU per request and what each
   feature adds, shadow drops;
10. drift detection on labelled scenarios (shifts, variance and shape changes, categories moved
   or new, values gone missing) at windows of 1,000 and 5,000 rows: the share flagged, and the
   false alarms per window without drift;
11. the rollout controller: whole rollouts simulated through the real gates (equal canaries and
   canaries at each gate's limit: false rollbacks and promotions against alpha), 11a the
   evidence each gate needs, 11b one evaluation of 10 models from 3 replicas' /metrics, CPU ms.
12. prediction capture at 100% against off (req/s, alternating), and `gateway replay` of
   100,000 captured rows in-process against onnxruntime called directly on the same rows.
13. gRPC against HTTP on one gateway at 8 and 64 concurrent calls: 1-row and 32-row requests,
   typed and raw contents against JSON and binary, driven by an async grpc.aio client, beside
   each transport's reference (and grpc.aio answering without running anything).
14. one gateway with 1 worker process against 2 (server.workers) at 8 and 64 connections, 1-row
   JSON, alternating: req/s, the ratio, server CPU per request and memory per worker.

Absolute figures depend on the machine and its load; the ratios measured in one run are what count.
Drives the load with wrk (Debian: apt-get install wrk), else with locust. Loopback only; every
run is bounded in time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from loadtests.drivers import run_locust, run_wrk
from loadtests.harness import Context, Table, make_loads
from loadtests.tables import (
    batching,
    capture,
    detection,
    drift,
    features,
    feedback,
    floor,
    grpc,
    memory,
    rollout,
    routing,
    versus,
    workers,
)

DRIFT_ROUNDS = 6
TABLES: dict[int, Callable[[Context], list[Table]]] = {
    1: floor.run, 2: versus.run, 3: versus.run, 4: batching.run, 5: memory.run,
    6: routing.run, 7: drift.run, 8: feedback.run, 9: features.run,
    10: detection.run, 11: rollout.run, 12: capture.run, 13: grpc.run, 14: workers.run,
}
"""Table number -> the function that measures it (tables 2 and 3 come from one run)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per cell")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--memory-requests", type=int, default=200_000,
                        help="requests for the RSS table (0 skips it)")
    parser.add_argument("--paced-rate", type=float, default=1000.0,
                        help="request rate of the paced latency table, per second")
    parser.add_argument("--tables", type=int, nargs="+", default=list(TABLES),
                        help="which tables to measure (default: all fourteen)")
    parser.add_argument("--rounds", type=int, default=DRIFT_ROUNDS,
                        help="alternating runs whose median tables 7, 8 and 12 report")
    parser.add_argument("--path-requests", type=int, default=20_000,
                        help="requests per in-process round of table 9's path column")
    parser.add_argument("--skip-batching", action="store_true", help="skip table 4")
    parser.add_argument("--rollouts", type=int, default=None,
                        help="simulated rollouts per row of tables 11 and 11a (default 1,000)")
    args = parser.parse_args(argv)
    args.drive = run_wrk if shutil.which("wrk") else run_locust
    return args


def run(args: argparse.Namespace, show: Callable[[Table], None] = Table.print) -> list[Table]:
    """Measure the tables `args` asks for, in order; each is shown as soon as it is measured."""
    rng = np.random.default_rng(0)
    rows_1, rows_32 = (rng.uniform(0, 30, (n, 30)).astype(np.float32) for n in (1, 32))
    skipped = {4} if args.skip_batching else set()
    if not args.memory_requests:
        skipped.add(5)
    measured: list[Table] = []
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        ctx = Context(args, make_loads(rows_1, rows_32), rows_1, rows_32, Path(tmp))
        done: set[Callable[[Context], list[Table]]] = set()
        for number in sorted(set(args.tables) - skipped):
            measure = TABLES[number]
            if measure in done:
                continue
            done.add(measure)
            for table in measure(ctx):
                show(table)
                measured.append(table)
    return measured


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.drive is run_locust:
        print("wrk is not installed (apt-get install wrk); driving the load with locust, "
              "which saturates before the servers do: compare ratios only", file=sys.stderr)
    print(f"gateway bench, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
          f"onnxruntime {ort.__version__}, Python {sys.version.split()[0]}")
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
