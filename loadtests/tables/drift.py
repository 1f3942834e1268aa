"""Table 7: drift ingestion and statistics, and the gateway with the monitor on against off."""

from __future__ import annotations

import numpy as np

from gateway.batching.execution import time_call
from loadtests.harness import (
    MODEL,
    ROOT,
    Context,
    Table,
    alternate,
    bench_config,
    start_gateway,
)


def run(ctx: Context) -> list[Table]:
    """Drift ingestion speed by batch size, the time for all statistics, and the gateway's
    throughput with the monitor on against off."""
    args, loads, work_dir = ctx.args, ctx.loads, ctx.work_dir
    tables: list[Table] = []
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
    singles = [np.resize(data, (1, data.shape[1])).astype(np.float32) for _ in range(1000)]
    one_row_outputs = {"label": np.zeros(1, np.int64),
                       "probabilities": np.full((1, 2), 0.5, np.float32)}

    def through_service() -> None:
        for row in singles:
            service.observe(MODEL, 2, {"input": row}, one_row_outputs)
        service.fold_gathered()

    seconds = time_call(through_service, repeats=20)
    rows_table.append(["1 (1,000 requests, as served)", f"{seconds / 1000 * 1e6:.1f} per row",
                       f"{1000 * data.shape[1] / seconds / 1e6:.1f}"])
    monitor = DriftMonitor.from_reference_file(reference)
    monitor.ingest(data)
    report_us = time_call(monitor.report, repeats=200) * 1e6
    servers = []
    for label, enabled in (("off", False), ("on", True)):
        config = bench_config(work_dir, f"drift-{label}", drift={"enabled": enabled})
        servers.append((label, start_gateway(f"gateway-drift-{label}", config, work_dir)))
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
    tables.append(Table(
        f"7. drift monitor: ingestion by batch size (30 features and 2 outputs); all "
                f"statistics of a version in {report_us:.0f} µs; gateway at 64 connections, "
                f"1-row JSON, medians of {args.rounds} alternating runs: {on_rps:,.0f} req/s "
                f"with the monitor on, {off_rps:,.0f} off "
                f"(on/off {on_rps / off_rps:.2f}×, errors {errors})",
                ["rows per batch", "µs per batch (folds included)", "M feature values/s"],
                rows_table))
    return tables
