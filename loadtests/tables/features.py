"""Table 9: what each feature costs, added one at a time, as a share of the stack's limit.

The gateway as it is meant to run (a sticky canary split, a flag, a shadow, the drift monitor,
labels coming back, tracing) is built up from one version at 100% one feature per row; every row
is its own gateway process, measured in the same rounds as the others and the two reference apps
(A, B, C, ... then again), so a change in the machine's load over the run falls on all of them.
The CPU a row adds over the row above is what that feature costs per request.

"The limit" is loadtests/reference_app.py with `--inline`: Starlette on uvicorn calling
onnxruntime on the event loop, no features at all, the fastest this stack answers a cheap model;
every row's req/s is given as a share of it, and its CPU per request as a multiple of the
limit's. The threadpool reference (the same app handing session.run to Starlette's threadpool,
as a server that must stay responsive under a slow model does) is the last row. Spans of the
tracing rows go to a real OTLP/HTTP receiver in this process, which takes and drops them.
"""

from __future__ import annotations

import http.server
import shutil
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import orjson

from loadtests.drivers import Result
from loadtests.harness import (
    MODEL,
    MODEL_FILE,
    ROOT,
    Context,
    Server,
    Table,
    free_port,
    start_gateway,
    write_gateway_config,
)
from loadtests.inprocess import path_cpu_us

STICKY = "x-user-id"
COLLECTOR = "{collector}"
"""Stands for the OTLP receiver's address in a step's environment (`_Sink`)."""
FEEDBACK_BATCHES_PER_S = 10
"""Labels coming back while a row is measured: 10 batches of 100 a second."""


@dataclass(frozen=True)
class Step:
    label: str
    policy: dict[str, Any]
    drift: bool = False
    sticky: bool = False
    feedback: bool = False
    env: dict[str, str] = field(default_factory=dict)


def steps() -> list[Step]:
    """The rows, each adding one feature to the row above (the last tracing row instead traces
    every request); the last is a 100% shadow alone."""
    one = Step("one version at 100%", {"traffic": [{"version": 2, "weight": 100}]})
    split = replace(one, label="+ 90/10 split",
                    policy={"traffic": [{"version": 2, "weight": 90},
                                        {"version": 4, "weight": 10}]})
    sticky = replace(split, label="+ sticky key (new per request)", sticky=True,
                     policy={**split.policy, "sticky_key": STICKY})
    flag = replace(sticky, label="+ flag (never matching)", policy={
        **sticky.policy, "flags": [{"name": "beta", "header": "x-beta", "values": ["true"],
                                    "version": 4}]})
    drift = replace(flag, label="+ drift monitor", drift=True)
    shadow = replace(drift, label="+ 10% shadow", policy={
        **drift.policy, "shadow": [{"version": 5, "percent": 10}]})
    feedback = replace(shadow, label="+ labels arriving", feedback=True)
    tracing = replace(feedback, label="+ tracing, 1% sampled", env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": COLLECTOR,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"})
    every_span = replace(tracing, label="+ tracing, every request",
                         env={"OTEL_EXPORTER_OTLP_ENDPOINT": COLLECTOR})
    full_shadow = replace(one, label="one version, 100% shadow", policy={
        **one.policy, "shadow": [{"version": 5, "percent": 100}]})
    return [one, split, sticky, flag, drift, shadow, feedback, tracing, every_span, full_shadow]


def shadow_counts(server: Server) -> dict[str, float]:
    """gateway_shadow_requests_total by result, summed over versions."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("gateway_shadow_requests_total{"):
            name, _, value = line.rpartition(" ")
            result = name.split('result="')[1].split('"')[0]
            counts[result] = counts.get(result, 0.0) + float(value)
    return counts


class _Sink(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver that takes every export and keeps nothing."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def otlp_sink() -> Iterator[str]:
    """A real OTLP/HTTP receiver on a free port, for as long as the rows run: its address."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class Labels:
    """Posts 100-label batches at a steady rate on a thread while a row is measured."""

    def __init__(self, server: Server) -> None:
        rng = np.random.default_rng(1)
        self.body = orjson.dumps({"feedback": [
            {"label": int(y), "version": 2, "prediction": int(p)}
            for y, p in zip(rng.integers(0, 2, 100), rng.integers(0, 2, 100), strict=True)]})
        self.url = f"http://127.0.0.1:{server.port}/v2/models/{MODEL}/feedback"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._post, daemon=True)

    def _post(self) -> None:
        while not self.stop.wait(1 / FEEDBACK_BATCHES_PER_S):
            request = urllib.request.Request(self.url, data=self.body, method="POST")
            with urllib.request.urlopen(request, timeout=10) as reply:
                reply.read()

    def __enter__(self) -> Labels:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def run(ctx: Context) -> list[Table]:
    with otlp_sink() as collector:
        return _run(ctx, collector)


def _run(ctx: Context, collector: str) -> list[Table]:
    args, work_dir = ctx.args, ctx.work_dir
    repository = work_dir / "feature-models"
    shutil.copytree(ROOT / "models", repository, ignore=shutil.ignore_patterns("*.py"))
    for twin in (4, 5):  # identical to version 2: a canary and a shadow that cost what it costs
        shutil.copytree(repository / MODEL / "2", repository / MODEL / str(twin))
    load = ctx.loads[0]
    sticky_load = replace(load, fresh_key=STICKY)
    connections_list = [c for c in args.connections if c > 1] or args.connections
    all_steps = steps()
    servers: list[tuple[Step | None, Server]] = []
    try:
        for i, step in enumerate(all_steps):
            config = write_gateway_config(work_dir / f"features-{i}", repository,
                                          {"models": {MODEL: step.policy}},
                                          drift={"enabled": step.drift})
            env = {k: v.replace(COLLECTOR, collector) for k, v in step.env.items()}
            servers.append((step, start_gateway(f"gateway-f{i}", config, work_dir, env)))
        for name, extra in (("reference-f", []), ("limit-f", ["--inline"])):
            port = free_port()
            servers.append((None, Server(name, [
                sys.executable, str(ROOT / "loadtests" / "reference_app.py"), "--model",
                str(MODEL_FILE), "--port", str(port), *extra], port, work_dir)))
        results: dict[tuple[int, int], list[Result]] = {}
        shadow: dict[int, dict[str, float]] = {}
        for _ in range(args.rounds):
            for connections in connections_list:
                for i, (step, server) in enumerate(servers):
                    before = shadow_counts(server) if step is not None else {}
                    with Labels(server) if step is not None and step.feedback else _Nothing():
                        result = args.drive(server, f"/v2/models/{MODEL}/infer",
                                            sticky_load if step and step.sticky else load,
                                            connections, args.duration, work_dir)
                    results.setdefault((i, connections), []).append(result)
                    if step is not None and connections == max(connections_list):
                        after = shadow_counts(server)
                        total = shadow.setdefault(i, {})
                        for key, value in after.items():
                            total[key] = total.get(key, 0.0) + value - before.get(key, 0.0)
    finally:
        for _, server in servers:
            server.stop()
    # Labels are not on the request path; tracing's exporter threads would run through every
    # other app's rounds in the one process and be counted against them.
    on_path = [(i, step) for i, step in enumerate(all_steps)
               if not step.feedback and not step.env]
    in_process = dict(zip([i for i, _ in on_path], path_cpu_us(
        [(work_dir / f"features-{i}" / "gateway.yaml", sticky_load if step.sticky else load,
          step.env) for i, step in on_path], MODEL, requests=args.path_requests,
        rounds=args.rounds), strict=True))
    return [_table(ctx, connections_list, all_steps, results, shadow, in_process)]


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _median(runs: list[Result], attribute: str) -> float:
    return float(np.median([getattr(r, attribute) for r in runs]))


def _table(ctx: Context, connections: list[int], all_steps: list[Step],
           results: dict[tuple[int, int], list[Result]], shadow: dict[int, dict[str, float]],
           in_process: dict[int, tuple[float, int]]) -> Table:
    args = ctx.args
    low, high = min(connections), max(connections)
    limit = len(all_steps) + 1
    limit_rps = {c: _median(results[(limit, c)], "rps") for c in connections}
    limit_cpu = _median(results[(limit, low)], "cpu_us_per_request")
    base_cpu = _median(results[(0, low)], "cpu_us_per_request")
    rows = []
    previous_cpu = base_cpu
    labels = [*(step.label for step in all_steps), "reference app (threadpool)",
              "the limit: onnxruntime on the event loop"]
    for i, step in [(limit, None), *enumerate([*all_steps, None])]:
        cpu = _median(results[(i, low)], "cpu_us_per_request")
        row = [labels[i]]
        for c in (low, high):
            rps = _median(results[(i, c)], "rps")
            row.append(f"{rps:,.0f} ({rps / limit_rps[c]:.0%})")
        row.append(f"{_median(results[(i, low)], 'p99_ms'):.2f}")
        row.append(f"{cpu:.0f} ({cpu / limit_cpu:.2f}×)")
        cumulative = step is not None and i < len(all_steps) - 1
        row.append(f"{cpu - previous_cpu:+.0f}" if cumulative and i else "")
        row.append(f"{cpu / base_cpu - 1:+.0%}" if step is not None and i else "")
        path = in_process.get(i)
        row.append(f"{path[0]:.0f}" if path else "")
        counts = shadow.get(i, {})
        offered = sum(counts.values())
        row.append(f"{counts.get('dropped', 0.0) / offered:.1%} of {offered:,.0f}"
                   if offered else "")
        errors = sum(r.errors for c in connections for r in results[(i, c)])
        row.append(str(errors))
        rows.append(row)
        if cumulative:
            previous_cpu = cpu
    shadow_cost = 1 - (_median(results[(len(all_steps) - 1, high)], "rps")
                       / _median(results[(0, high)], "rps"))
    return Table(
        f"9. every feature, added one row at a time, as a share of the limit (1-row JSON, "
        f"{args.duration:g} s per cell, "
        f"medians of {args.rounds} rounds with every server alternating; CPU in server µs per "
        f"request at {low} connections, Δ against the row above, + against one version; path: "
        "the app called in process, no HTTP, CPU µs per request, not for labels or tracing); "
        f"a 100% shadow takes {shadow_cost:.0%} of one version's req/s at {high} connections",
        ["server", f"req/s at {low} (of limit)", f"req/s at {high} (of limit)",
         f"p99 ms at {low}", "CPU µs (× limit)", "Δ µs", "vs one", "path µs",
         f"shadow dropped at {high}", "errors"], rows)
