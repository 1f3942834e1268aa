"""Table 4: batching off against on, on a deep narrow MLP built here."""

from __future__ import annotations

import hashlib

import numpy as np
import yaml

from loadtests.harness import (
    Context,
    Table,
    make_loads,
    start_gateway,
    write_gateway_config,
)
from loadtests.models import deep_mlp, onnxruntime_call_us


def run(ctx: Context) -> list[Table]:
    args, work_dir = ctx.args, ctx.work_dir
    tables: list[Table] = []
    mlp = deep_mlp()
    repository = work_dir / "mlp-models"
    version_dir = repository / "mlp" / "1"
    version_dir.mkdir(parents=True)
    (version_dir / "model.onnx").write_bytes(mlp)
    (version_dir / "manifest.yaml").write_text(yaml.safe_dump(
        {"sha256": hashlib.sha256(mlp).hexdigest(), "created": "bench",
         "features": [f"x{i}" for i in range(30)]}))
    one, batch = (onnxruntime_call_us(mlp, np.random.rand(n, 30).astype(np.float32), 1)
                  for n in (1, 32))
    routing = {"models": {"mlp": {"traffic": [{"version": 1, "weight": 100}]}}}
    row = make_loads(np.random.rand(1, 30).astype(np.float32),
                     np.random.rand(32, 30).astype(np.float32))[0]
    table = []
    for label, batching in (("off", {"max_batch_size": 1}),
                            ("on", {"max_batch_size": 32, "max_queue_delay_us": 500})):
        config = write_gateway_config(work_dir / f"mlp-{label}", repository, routing,
                                      batching=batching)
        server = start_gateway(f"gateway-mlp-{label}", config, work_dir)
        try:
            result = args.drive(server, "/v2/models/mlp/infer", row, 64, args.duration, work_dir)
        finally:
            server.stop()
        table.append([label, f"{result.rps:,.0f}", f"{result.p50_ms:.2f}",
                      f"{result.p99_ms:.2f}", str(result.errors)])
    table.append(["on/off", f"{parse_rps(table[1]) / parse_rps(table[0]):.2f}×", "", "", ""])
    tables.append(Table(
        f"4. batching off vs on, 64 connections, 1-row JSON, deep MLP (onnxruntime: "
                f"{one:.0f} µs per 1-row call, {batch:.0f} µs per 32-row call)",
                ["batching", "req/s", "p50 ms", "p99 ms", "errors"], table))
    return tables


def parse_rps(row: list[str]) -> float:
    return float(row[1].replace(",", ""))
