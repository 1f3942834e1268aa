"""Table 11: whole rollouts simulated through the real gates (what alpha promises, measured),
11a: the evidence each gate needs, 11b: what one evaluation of `gateway rollout` costs."""

from __future__ import annotations

import shutil
import time
from typing import TYPE_CHECKING

import numpy as np
import yaml
from prometheus_client import generate_latest

from loadtests.harness import MODEL, ROOT, Context, Table, write_gateway_config

if TYPE_CHECKING:
    from gateway.rollout.simulate import Version
    from gateway.routing.rollout import RolloutPlan

MODELS = 10
REPLICAS = 3


ROLLOUTS = 1000
"""Simulated rollouts per row of tables 11 and 11a (`--rounds 1`, the smoke run: 40)."""
GATE_NAMES = ("errors", "latency", "accuracy", "shadow_agreement")


def _readme_plan() -> RolloutPlan:
    from gateway.routing.rollout import Gates, RolloutPlan

    return RolloutPlan(1, 2, (5, 25, 50, 100), 300.0, 3600.0, 0.05, Gates(
        max_error_rate_increase=0.01, max_p99_ratio=1.5, min_requests=200,
        accuracy_margin=0.02, min_shadow_agreement=0.95, max_prediction_psi=0.2))


def _baselines(rng: np.random.Generator, runs: int) -> list[Version]:
    """The baseline of each rollout: its median latency drawn between 1 and 100 ms (log-
    uniform), so the figures are not those of one place in the histogram's buckets."""
    from gateway.rollout.simulate import Version

    return [Version(median_s=float(m)) for m in np.exp(rng.uniform(np.log(1e-3), np.log(0.1),
                                                                    runs))]


def _share(count: int, runs: int) -> str:
    return f"{count / runs:.1%}"


def _whole_rollouts(runs: int) -> Table:
    """Table 11: the README's plan end to end, an equal canary and one at each gate's limit."""
    from gateway.rollout.gates import alpha_share
    from gateway.rollout.simulate import PROMOTED, Traffic, at_limit, simulate

    plan, traffic = _readme_plan(), Traffic()
    rng = np.random.default_rng(0)
    rows = []
    for name in ("equal (A/A)", *GATE_NAMES):
        outcomes = []
        for baseline in _baselines(rng, runs):
            canary = baseline if name.startswith("equal") else at_limit(plan, name, baseline)
            outcomes.append(simulate(plan, baseline, canary, traffic, rng))
        promoted = [o for o in outcomes if o.state == PROMOTED]
        failed = [o for o in outcomes if o.failed]
        by_gate = {g: sum(g in o.failed for o in failed) for g in (*GATE_NAMES, "prediction_drift")}
        which = ", ".join(f"{g} {_share(n, runs)}" for g, n in by_gate.items() if n) or "-"
        inconclusive = runs - len(promoted) - len(failed)
        minutes = (f"{np.median([o.elapsed_s for o in promoted]) / 60:.0f}" if promoted
                   else "-")
        rows.append([name if name.startswith("equal") else f"at the {name} limit",
                     _share(len(promoted), runs), _share(len(failed), runs), which,
                     _share(inconclusive, runs), minutes])
    return Table(
        f"11. rollout controller: {runs:,} simulated rollouts per row of the README's plan "
        f"(steps 5, 25, 50, 100 after a shadow step; alpha 0.05, {alpha_share(plan):.4f} per gate "
        f"and step; a look every {traffic.check_s:g} s; {traffic.requests_per_s:g} req/s, "
        f"{traffic.labelled_share:.0%} labelled, {traffic.shadow_rows_per_s:g} shadow rows/s; "
        "baseline 0.1% 5xx, lognormal latency sigma 0.5 with a median of 1-100 ms, 98% "
        "accurate, 99.9% agreeing): an equal canary must be rolled back at most 5%, one at a "
        "gate's limit promoted at most 5%",
        ["canary", "promoted", "rolled back by a gate", "which gate", "inconclusive",
         "median minutes to promote"], rows)


def _needed(runs: int) -> Table:
    """Table 11a: the evidence each gate alone needs at the first step (5%) to pass an equal
    canary and to roll back a clearly worse one, at the README plan's share of alpha."""
    from dataclasses import replace

    from gateway.rollout.gates import alpha_share
    from gateway.rollout.simulate import PROMOTED, Traffic, simulate
    from gateway.routing.rollout import Gates, RolloutPlan

    readme = _readme_plan()
    share = alpha_share(readme)
    traffic = Traffic(shadow_rows_per_s=5.0)  # 50 rows a look, as the canary's requests
    rng = np.random.default_rng(1)
    cases = (
        ("errors", "requests", Gates(max_error_rate_increase=0.01, min_requests=200),
         {"error_rate": 0.03}, "5xx 0.1% -> 3%"),
        ("latency", "requests", Gates(max_p99_ratio=1.5, min_requests=200),
         {"median_s": 3.0}, "p99 x3"),
        ("accuracy", "labels", Gates(accuracy_margin=0.02), {"accuracy": 0.94},
         "accuracy 98% -> 94%"),
        ("shadow_agreement", "shadow rows", Gates(min_shadow_agreement=0.95),
         {"agreement": 0.9}, "agreement 90%"),
    )
    rows = []
    for gate, unit, gates, worse, worse_name in cases:
        steps = (100,) if gate == "shadow_agreement" else (5, 100)
        plan = RolloutPlan(1, 2, steps, traffic.check_s, 1e6, share, gates)
        for label, change in (("equal", {}), (worse_name, worse)):
            counts = []
            for baseline in _baselines(rng, runs):
                scaled = {k: v * baseline.median_s if k == "median_s" else v
                          for k, v in change.items()}
                canary = replace(baseline, **scaled)
                outcome = simulate(plan, baseline, canary, traffic, rng)
                if (outcome.state == PROMOTED) == (label == "equal"):
                    seen = outcome.canary
                    counts.append({"requests": seen.requests, "labels": seen.labelled,
                                   "shadow rows": sum(seen.shadow_rows.values())}[unit])
            decided = "promoted" if label == "equal" else "rolled back"
            rows.append([gate, label, decided, unit,
                         f"{np.median(counts):,.0f}" if counts else "-",
                         f"{np.percentile(counts, 90):,.0f}" if counts else "-",
                         _share(len(counts), runs)])
    return Table(
        f"11a. rollout controller: the canary's evidence each gate needs to decide at the first "
        f"step (5%: the baseline has 19x as much), alone, at the README plan's {share:.4f} of "
        f"alpha, a look every {traffic.check_s:g} s; {runs:,} simulated steps per row "
        "(baseline as in table 11)",
        ["gate", "canary", "decided", "evidence", "median", "90th percentile",
         "decided as it should"], rows)


def run(ctx: Context) -> list[Table]:
    """10 models with a rollout each, 3 replicas' /metrics (requests, latency buckets, labels,
    shadows): the controller's CPU per evaluation, its parse of the texts and its decisions."""
    from gateway.observability.metrics import GatewayMetrics
    from gateway.rollout.controller import Controller
    from gateway.rollout.evidence import parse_metrics
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
            metrics.count_shadow_rows(name, 2, "agree", 2000)
        texts.append(generate_latest(metrics.registry).decode())
    sources = {f"replica-{i}": text for i, text in enumerate(texts)}
    settings = load_settings(config)
    controller = Controller(settings, lambda: parse_metrics(sources), once=True, dry_run=True)
    controller.evaluate()  # warm
    rounds = 20
    start = time.process_time()
    for _ in range(rounds):
        controller.evaluate()
    total_ms = (time.process_time() - start) / rounds * 1e3
    start = time.process_time()
    for _ in range(rounds):
        parse_metrics(sources)
    parse_ms = (time.process_time() - start) / rounds * 1e3
    decisions = sorted({d["decision"] for d in controller.decisions})
    size_kib = sum(len(t) for t in texts) / 1024
    runs = getattr(ctx.args, "rollouts", None) or (ROLLOUTS if ctx.args.rounds > 1 else 40)
    return [_whole_rollouts(runs), _needed(min(runs, 200)), Table(
        f"11b. rollout controller: one evaluation of {MODELS} models with a rollout each from "
        f"{REPLICAS} replicas' /metrics ({size_kib:,.0f} KiB of text), CPU ms, median of "
        f"{rounds} (target under 100 ms)",
        ["evaluation", "of which parsing the metrics", "decisions"],
        [[f"{total_ms:.1f}", f"{parse_ms:.1f}", ", ".join(decisions)]])]
