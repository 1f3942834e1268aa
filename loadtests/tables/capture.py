"""Table 12: what prediction capture costs the gateway, and how fast a capture replays."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from loadtests.harness import (
    MODEL,
    ROOT,
    Context,
    Server,
    Table,
    alternate,
    start_gateway,
    write_gateway_config,
)

REPLAY_ROWS = 100_000
VERSION = 2


def run(ctx: Context) -> list[Table]:
    return [serving(ctx), replaying(ctx)]


def serving(ctx: Context) -> Table:
    """Capture at 100% against capture off, alternately, at 8 and 64 connections."""
    args, work_dir = ctx.args, ctx.work_dir
    routing = {"models": {MODEL: {"traffic": [{"version": VERSION, "weight": 100}]}}}
    configs = {
        "capture off": write_gateway_config(work_dir / "capture-off", ROOT / "models", routing),
        "capture 100%": write_gateway_config(
            work_dir / "capture-on", ROOT / "models", routing,
            capture={"enabled": True, "path": str(work_dir / "captured")}),
    }
    servers = [(name, start_gateway(f"gateway-{name.replace(' ', '-').replace('%', '')}",
                                    config, work_dir)) for name, config in configs.items()]
    rows = []
    try:
        for load in (ctx.loads[0], ctx.loads[2]):
            for connections in (8, 64):
                def measure(server: Server, load: object = load, c: int = connections) -> float:
                    return args.drive(server, f"/v2/models/{MODEL}/infer", load, c,
                                      args.duration, work_dir).rps
                off, on = (float(np.median(r)) for r in alternate(servers, measure, args.rounds))
                rows.append([load.name, str(connections), f"{off:,.0f}", f"{on:,.0f}",
                             f"{on / off:.2f}×"])
        on_server = servers[1][1]
        time.sleep(0.3)  # the writer's last tick
        written = _metric(on_server, "written")
        dropped = _metric(on_server, "dropped")
    finally:
        for _, server in servers:
            server.stop()
    size = sum(p.stat().st_size for p in (work_dir / "captured").iterdir())
    return Table(f"12a. prediction capture at 100% against off: req/s, medians of {args.rounds} "
                 f"alternating runs ({written:,.0f} records written, {dropped:,.0f} dropped; "
                 f"{size / 2**20:,.0f} MiB on disk, gzipped once closed)",
                 ["request", "connections", "capture off", "capture 100%", "ratio"], rows)


def _metric(server: Server, result: str) -> float:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    sample = f'gateway_capture_records_total{{model="{MODEL}",result="{result}"}}'
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(sample))


def write_capture(folder: Path, rows: np.ndarray, session: ort.InferenceSession) -> None:
    """A capture of one-row requests, written by the capture's own encoder."""
    from gateway.capture.records import file_name, infer_line

    labels, probabilities = session.run(None, {"input": rows})
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / file_name(MODEL, time.time()), "wb") as out:
        for i in range(len(rows)):
            out.write(infer_line(time.time(), f"r{i}", None, MODEL, VERSION, "split",
                                 {"input": rows[i:i + 1]}, {"input": "FP32"},
                                 {"label": labels[i:i + 1],
                                  "probabilities": probabilities[i:i + 1]}, None))


def replaying(ctx: Context) -> Table:
    """`gateway replay` in-process against onnxruntime called directly, request by request,
    on the same rows (already arrays), alternately."""
    from gateway.replay.reader import capture_files
    from gateway.replay.report import replay
    from gateway.replay.targets import InProcess
    from gateway.runtime.repository import scan_repository
    from gateway.settings import load_settings

    rows = np.random.default_rng(1).uniform(0, 30, (REPLAY_ROWS, 30)).astype(np.float32)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(ROOT / "models" / MODEL / str(VERSION) / "model.onnx"),
                                   options, providers=["CPUExecutionProvider"])
    folder = ctx.work_dir / "replay-capture"
    write_capture(folder, rows, session)
    settings = load_settings(write_gateway_config(ctx.work_dir / "replay", ROOT / "models"))
    target = InProcess(settings, scan_repository(settings.model_repository), MODEL, VERSION)
    files = capture_files(folder)
    replay_s: list[float] = []
    direct_s: list[float] = []
    agreement = 0.0
    for _ in range(ctx.args.rounds):
        start = time.perf_counter()
        report = replay(files, MODEL, VERSION, target, lambda n: None)
        replay_s.append(time.perf_counter() - start)
        agreement = report["agreement"]
        start = time.perf_counter()
        for i in range(REPLAY_ROWS):
            session.run(None, {"input": rows[i:i + 1]})
        direct_s.append(time.perf_counter() - start)
    whole_start = time.perf_counter()
    for i in range(0, REPLAY_ROWS, 1024):
        session.run(None, {"input": rows[i:i + 1024]})
    whole_s = time.perf_counter() - whole_start
    replayed, direct = (REPLAY_ROWS / float(np.median(s)) for s in (replay_s, direct_s))
    return Table(f"12b. replay of {REPLAY_ROWS:,} captured one-row requests in-process (read, "
                 f"decode, run, compare; agreement {agreement:.2%}) against onnxruntime called "
                 f"directly per request on the same rows as arrays; medians of "
                 f"{ctx.args.rounds} alternating runs",
                 ["contender", "rows/s", "× direct"],
                 [["gateway replay (in-process)", f"{replayed:,.0f}", f"{replayed / direct:.2f}×"],
                  ["onnxruntime, one call per request", f"{direct:,.0f}", "1.00×"],
                  ["onnxruntime, 1,024-row calls (for scale)", f"{REPLAY_ROWS / whole_s:,.0f}",
                   f"{REPLAY_ROWS / whole_s / direct:.2f}×"]])
