"""Table 11: what one evaluation of `gateway rollout` costs the controller."""

from __future__ import annotations

import shutil
import time

import numpy as np
import yaml
from prometheus_client import generate_latest

from loadtests.harness import MODEL, ROOT, Context, Table, write_gateway_config

MODELS = 10
REPLICAS = 3


def _labels_needed(runs: int = 200) -> Table:
    """Labelled rows per version the accuracy gate needs to decide, simulated: the canary against
    a 98% baseline with margin 0.02 and alpha 0.05, looked at every 50 rows."""
    from gateway.rollout.stats import difference

    rng = np.random.default_rng(0)
    rows = []
    for canary, surely in ((0.94, "below"), (0.95, "below"), (0.975, "above"), (0.99, "above")):
        needed = []
        for _ in range(runs):
            base = np.cumsum(rng.random(20_000) < 0.98)
            other = np.cumsum(rng.random(20_000) < canary)
            for n in range(50, 20_001, 50):
                interval = difference(int(other[n - 1]), n, int(base[n - 1]), n, 0.05)
                if (interval.high < -0.02) if surely == "below" else (interval.low > -0.02):
                    needed.append(n)
                    break
        decided = len(needed) / runs
        rows.append([f"{canary:.1%}", "rollback" if surely == "below" else "pass",
                     f"{np.median(needed):,.0f}" if needed else "-",
                     f"{np.percentile(needed, 90):,.0f}" if needed else "-", f"{decided:.0%}"])
    return Table(
        f"11. rollout controller: labelled rows per version before the accuracy gate decides "
        f"(baseline 98%, margin 0.02, alpha 0.05, a look every 50 rows, {runs} simulated "
        "rollouts each, at most 20,000 rows)",
        ["canary accuracy", "decision", "median rows", "90th percentile", "decided"], rows)


def run(ctx: Context) -> list[Table]:
    """10 models with a rollout each, 3 replicas' /metrics (requests, latency buckets, labels,
    shadows): the controller's CPU per evaluation, its parse of the texts and its decisions."""
    from gateway.observability.metrics import GatewayMetrics
    from gateway.rollout.controller import Controller
    from gateway.rollout.evidence import read_metrics
    from gateway.settings import load_settings

    repository = ctx.work_dir / "rollout-models"
    names = [f"model-{i}" for i in range(MODELS)]
    for name in names:
        shutil.copytree(ROOT / "models" / MODEL, repository / name,
                        ignore=shutil.ignore_patterns("*.py"))
    routing = {"models": {name: {
        "traffic": [{"version": 1, "weight": 75}, {"version": 2, "weight": 25}],
        "rollout": {"baseline": 1, "canary": 2, "steps": [5, 25, 50, 100],
                    "gates": {"max_error_rate_increase": 0.01, "max_p99_ratio": 1.5,
                              "min_requests": 200, "accuracy_margin": 0.02,
                              "max_prediction_psi": 0.2}}} for name in names}}
    config = write_gateway_config(ctx.work_dir / "rollout-config", repository,
                                  yaml.safe_dump(routing))
    rng = np.random.default_rng(0)
    texts = []
    for _ in range(REPLICAS):
        metrics = GatewayMetrics()
        for name in names:
            for version in ("1", "2"):
                for code, count in ((200, 2000), (500, 3), (400, 20)):
                    for duration in rng.exponential(0.002, count // 10):
                        metrics.observe_request(name, version, "split", code, float(duration))
            metrics.count_shadow(name, 2, "agree", 500)
        texts.append(generate_latest(metrics.registry).decode())
    settings = load_settings(config)
    controller = Controller(settings, lambda: read_metrics(texts), once=True, dry_run=True)
    controller.evaluate()  # warm
    rounds = 20
    start = time.process_time()
    for _ in range(rounds):
        controller.evaluate()
    total_ms = (time.process_time() - start) / rounds * 1e3
    start = time.process_time()
    for _ in range(rounds):
        read_metrics(texts)
    parse_ms = (time.process_time() - start) / rounds * 1e3
    decisions = sorted({d["decision"] for d in controller.decisions})
    size_kib = sum(len(t) for t in texts) / 1024
    return [_labels_needed(), Table(
        f"11b. rollout controller: one evaluation of {MODELS} models with a rollout each from "
        f"{REPLICAS} replicas' /metrics ({size_kib:,.0f} KiB of text), CPU ms, median of "
        f"{rounds} (target under 100 ms)",
        ["evaluation", "of which parsing the metrics", "decisions"],
        [[f"{total_ms:.1f}", f"{parse_ms:.1f}", ", ".join(decisions)]])]
