"""Table 8: label feedback ingestion, and infer throughput while feedback arrives."""

from __future__ import annotations

import threading
import urllib.request

import numpy as np
import orjson

from gateway.batching.execution import time_call
from loadtests.drivers import Result
from loadtests.harness import (
    MODEL,
    ROOT,
    Context,
    Table,
    bench_config,
    start_gateway,
)


def run(ctx: Context) -> list[Table]:
    """Feedback parse + fold speed by batch size, and what a steady stream of feedback costs
    the infer throughput of the same gateway (alternating runs with and without it)."""
    args, loads, work_dir = ctx.args, ctx.loads, ctx.work_dir
    tables: list[Table] = []

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
    gateway = start_gateway("gateway-feedback", bench_config(work_dir, "feedback"), work_dir)
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
    tables.append(Table(
        f"8. label feedback: parse and fold by batch size; gateway at 64 connections, "
                f"1-row JSON, medians of {args.rounds} alternating runs: {with_:,.0f} req/s "
                f"while 100-label batches arrive back to back ({labels_per_s:,.0f} labels/s), "
                f"{without:,.0f} without (ratio {with_ / without:.2f}×)",
                ["items per batch", "parse µs", "fold µs", "labels/s"], rows_table)
)
    return tables
