"""The gates on evidence a test builds: each passes, fails or waits as SPEC 9 says, and missing
data never passes."""

from __future__ import annotations

import math

from gateway.rollout.gates import (
    ACCURACY,
    DRIFT,
    ERRORS,
    FAIL,
    LATENCY,
    PASS,
    SHADOW,
    WAIT,
    Evidence,
    judge,
    verdict_of,
)
from gateway.routing.rollout import Gates

GATES = Gates(max_error_rate_increase=0.01, max_p99_ratio=1.5, min_requests=200,
              accuracy_margin=0.02, min_shadow_agreement=0.95, max_prediction_psi=0.2)
BOUNDS = (0.001, 0.005, 0.01, 0.05, math.inf)


def served(requests: int, errors: int = 0, fast: bool = True, labelled: int = 0,
           accuracy: float = 0.98, psi: float = 0.01, window: int = 5000) -> Evidence:
    ok = requests - errors
    counts = (0, ok * 0.995, ok, ok, ok) if fast else (0, 0, ok * 0.5, ok, ok)
    return Evidence(requests, errors, BOUNDS, tuple(float(c) for c in counts), labelled,
                    round(labelled * accuracy), {}, {"label": psi}, window)


def verdicts(baseline: Evidence, canary: Evidence) -> dict[str, str]:
    return {r.gate: r.verdict for r in judge(GATES, 0.05, baseline, canary)}


def test_an_equal_canary_with_enough_evidence_passes_every_gate() -> None:
    results = judge(GATES, 0.05, served(20_000, labelled=6000),
                    served(20_000, labelled=6000))
    assert {r.gate: r.verdict for r in results} == {ERRORS: PASS, LATENCY: PASS,
                                                   ACCURACY: PASS, DRIFT: PASS}
    assert verdict_of(results) == PASS
    errors = results[0].as_json()
    assert errors["n_baseline"] == errors["n_canary"] == 20_000 and errors["threshold"] == 0.01


def test_each_gate_fails_on_its_own_evidence() -> None:
    base = served(20_000, labelled=6000)
    assert verdicts(base, served(20_000, errors=1000, labelled=6000))[ERRORS] == FAIL
    assert verdicts(base, served(20_000, fast=False, labelled=6000))[LATENCY] == FAIL
    assert verdicts(base, served(20_000, labelled=6000, accuracy=0.94))[ACCURACY] == FAIL
    assert verdicts(base, served(20_000, labelled=6000, psi=0.3))[DRIFT] == FAIL


def test_missing_or_thin_evidence_waits_and_never_passes() -> None:
    thin = verdicts(served(50), served(50))
    assert thin[ERRORS] == WAIT and thin[LATENCY] == WAIT
    assert thin[ACCURACY] == WAIT  # no labels at all
    assert verdicts(served(20_000), served(20_000, window=1000))[DRIFT] == WAIT
    assert verdict_of(judge(GATES, 0.05, served(50), served(50))) == WAIT
    assert verdict_of([]) == WAIT
    # Too few labels to tell 97.5% from the margin: wait, not pass.
    assert verdicts(served(20_000, labelled=100), served(20_000, labelled=100,
                                                          accuracy=0.975))[ACCURACY] == WAIT


def test_the_shadow_step_judges_agreement_only() -> None:
    agreeing = Evidence(shadow={"agree": 4990, "disagree": 10}, prediction_psi={"label": 0.01},
                        drift_window_rows=5000)
    results = judge(GATES, 0.05, Evidence(), agreeing, shadow_step=True)
    assert [(r.gate, r.verdict) for r in results] == [(SHADOW, PASS), (DRIFT, PASS)]
    poor = Evidence(shadow={"agree": 800, "disagree": 150, "error": 50})
    assert judge(GATES, 0.05, Evidence(), poor, shadow_step=True)[0].verdict == FAIL
    assert judge(GATES, 0.05, Evidence(), Evidence(), shadow_step=True)[0].verdict == WAIT
