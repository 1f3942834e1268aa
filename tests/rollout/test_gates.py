"""The gates on evidence a test builds: each passes, fails or waits as SPEC 9 says, missing or
thin data never passes, and alpha is shared over the gates and the steps."""

from __future__ import annotations

import dataclasses
import math

from gateway.observability.metrics import LATENCY_BUCKETS_S
from gateway.rollout.gates import (
    ACCURACY,
    DRIFT,
    ERRORS,
    FAIL,
    GATES,
    LATENCY,
    PASS,
    SHADOW,
    WAIT,
    Evidence,
    alpha_share,
    judge,
    verdict_of,
)
from gateway.routing.rollout import Gates, RolloutPlan

GATES_SET = Gates(max_error_rate_increase=0.01, max_p99_ratio=1.5, min_requests=200,
                  accuracy_margin=0.02, min_shadow_agreement=0.95, max_prediction_psi=0.2)
PLAN = RolloutPlan(1, 2, (5, 25, 50, 100), 300.0, 3600.0, 0.05, GATES_SET)
BOUNDS = (*LATENCY_BUCKETS_S, math.inf)
FAST = (0.0,) * 5 + (0.2, 0.995, 0.9999) + (1.0,) * 8
"""Cumulative share per bound: most answers 2.5-10 ms, one in 10,000 at 10-25 ms."""
SLOW = (0.0,) * 5 + (0.05, 0.5, 0.9, 0.999) + (1.0,) * 7
"""Five times slower: half above 10 ms, a tenth above 25 ms."""


def served(requests: int, errors: int = 0, shape: tuple[float, ...] = FAST, labelled: int = 0,
           accuracy: float = 0.98, psi: float | None = 0.01) -> Evidence:
    ok = requests - errors
    return Evidence(requests, errors, BOUNDS, tuple(ok * c for c in shape), labelled,
                    round(labelled * accuracy), {}, {} if psi is None else {"label": psi}, 5000)


def verdicts(baseline: Evidence, canary: Evidence, plan: RolloutPlan = PLAN) -> dict[str, str]:
    return {r.gate: r.verdict for r in judge(plan, baseline, canary, shadow_step=False)}


def gates(**changes: object) -> RolloutPlan:
    return dataclasses.replace(PLAN, gates=dataclasses.replace(GATES_SET, **changes))


def test_an_equal_canary_with_enough_evidence_passes_every_gate() -> None:
    results = judge(PLAN, served(20_000, 10, labelled=8000), served(20_000, 10, labelled=8000),
                    shadow_step=False)
    assert {r.gate: r.verdict for r in results} == {ERRORS: PASS, LATENCY: PASS,
                                                   ACCURACY: PASS, DRIFT: PASS}
    assert verdict_of(results) == PASS
    errors = results[0].as_json()
    assert errors["n_baseline"] == errors["n_canary"] == 20_000 and errors["threshold"] == 0.01
    assert set(errors) == {"gate", "verdict", "n_baseline", "n_canary", "estimate", "low",
                           "high", "threshold"}


def test_each_gate_fails_on_its_own_evidence() -> None:
    base = served(20_000, labelled=8000)
    assert verdicts(base, served(20_000, errors=1000, labelled=8000))[ERRORS] == FAIL
    assert verdicts(base, served(20_000, shape=SLOW, labelled=8000))[LATENCY] == FAIL
    assert verdicts(base, served(20_000, labelled=8000, accuracy=0.94))[ACCURACY] == FAIL
    assert verdicts(base, served(20_000, labelled=8000, psi=0.3))[DRIFT] == FAIL
    assert verdicts(base, served(20_000, labelled=8000, psi=0.2))[DRIFT] == FAIL  # at: fails


def test_missing_or_thin_evidence_waits_and_never_passes() -> None:
    thin = verdicts(served(50), served(50))
    assert thin[ERRORS] == WAIT and thin[LATENCY] == WAIT
    assert thin[ACCURACY] == WAIT  # no labels at all
    assert verdicts(served(20_000), served(20_000, psi=None))[DRIFT] == WAIT  # no window yet
    assert verdict_of(judge(PLAN, served(50), served(50), shadow_step=False)) == WAIT
    assert verdict_of([]) == WAIT
    # Too few labels to tell 97.5% from the margin: wait, not pass.
    assert verdicts(served(20_000, labelled=100), served(20_000, labelled=100,
                                                          accuracy=0.975))[ACCURACY] == WAIT


def test_with_min_requests_unset_one_request_per_version_is_no_pass() -> None:
    """The floor (200 requests per version) stands in for an unset min_requests."""
    unset = gates(min_requests=0)
    assert verdicts(served(1), served(1), unset)[LATENCY] == WAIT
    assert verdicts(served(150), served(150), unset)[ERRORS] == WAIT


def test_zero_errors_in_300_canary_requests_waits_at_a_limit_of_one_percent() -> None:
    """With its own variance the canary's 0 of 300 read as surely below 1% and passed; a true
    rate of 1.1% gives 0 of 300 in 3.6% of steps."""
    assert verdicts(served(5700, errors=6), served(300))[ERRORS] == WAIT


def test_every_5xx_of_the_canary_counts_as_slow() -> None:
    """Fast successes and 3% of answers 504 (timed out): the canary's p99 is a timeout."""
    base = served(20_000, errors=2)
    assert verdicts(base, served(20_000, errors=600))[LATENCY] == FAIL
    # Even a canary timing out on every request waits for min_requests (SPEC 9), then fails.
    assert verdicts(base, served(150, errors=150))[LATENCY] == WAIT
    assert verdicts(base, served(200, errors=200))[LATENCY] == FAIL


def test_two_versions_both_past_the_last_bucket_wait_and_never_read_as_equal() -> None:
    """Every answer of both versions slower than the last finite bound (5 s): nothing says how
    much slower either is, so the gate neither passes nor fails."""
    past = (0.0,) * 15 + (1.0,)
    both = verdicts(served(20_000, shape=past), served(20_000, shape=past))
    assert both[LATENCY] == WAIT
    # A canary fast where the baseline is past the last bound is surely within the ratio.
    assert verdicts(served(20_000, shape=past), served(20_000))[LATENCY] == PASS


def test_the_shadow_step_judges_agreement_and_drift_only() -> None:
    agreeing = Evidence(shadow_rows={"agree": 4990, "disagree": 10},
                        prediction_psi={"label": 0.01}, drift_rows=5000)
    results = judge(PLAN, Evidence(), agreeing, shadow_step=True)
    assert [(r.gate, r.verdict) for r in results] == [(SHADOW, PASS), (DRIFT, PASS)]
    poor = Evidence(shadow_rows={"agree": 800, "disagree": 150, "error": 50})
    assert judge(PLAN, Evidence(), poor, shadow_step=True)[0].verdict == FAIL
    assert judge(PLAN, Evidence(), Evidence(), shadow_step=True)[0].verdict == WAIT
    # Errors count as disagreeing: 4,990 of 5,000 agree, 200 more rows failed.
    failing = Evidence(shadow_rows={"agree": 4990, "disagree": 10, "error": 400})
    assert judge(PLAN, Evidence(), failing, shadow_step=True)[0].verdict == FAIL
    # 300 agreeing rows of 300 are no proof of 99%.
    few = Evidence(shadow_rows={"agree": 300})
    assert judge(gates(min_shadow_agreement=0.99), Evidence(), few,
                 shadow_step=True)[0].verdict == WAIT


def test_alpha_is_shared_over_the_gates_and_the_judged_steps() -> None:
    """The README plan: shadow agreement at step 0, and errors, latency and accuracy at each of
    5, 25 and 50 (100 is never judged): ten pairs. Drift is a threshold and spends none."""
    assert alpha_share(PLAN) == 0.05 / 10
    assert alpha_share(gates(min_shadow_agreement=None)) == 0.05 / 9
    no_hundred = dataclasses.replace(PLAN, steps=(5, 25, 50))
    assert alpha_share(no_hundred) == 0.05 / 10
    assert alpha_share(dataclasses.replace(PLAN, steps=(10, 100))) == 0.05 / 4
    only_drift = RolloutPlan(1, 2, (5, 100), 300.0, 3600.0, 0.05, Gates(max_prediction_psi=0.2))
    assert alpha_share(only_drift) == 0.05
    assert alpha_share(dataclasses.replace(PLAN, steps=(100,))) == 0.05  # only step 0 judged


def test_the_gate_table_names_every_gate_key_once_with_its_metrics() -> None:
    keys = [g.config_key for g in GATES]
    assert sorted(keys) == sorted(f.name for f in dataclasses.fields(Gates)
                                  if f.name != "min_requests")
    assert [g.name for g in GATES] == [ERRORS, LATENCY, ACCURACY, SHADOW, DRIFT]
    assert all(g.metrics and all(m.startswith("gateway_") for m in g.metrics) for g in GATES)
