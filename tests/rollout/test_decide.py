"""The decision from where the weights stand, the gates' verdicts and the step's age (SPEC 9)."""

from __future__ import annotations

from gateway.rollout.decide import (
    DONE,
    HOLD,
    MANUAL,
    PROGRESSING,
    PROMOTE,
    PROMOTED,
    ROLLBACK,
    ROLLED_BACK,
    SHADOW_STEP,
    START,
    decide,
)
from gateway.rollout.gates import FAIL, PASS, WAIT, GateResult
from gateway.routing.rollout import Gates, RolloutPlan, RolloutStatus

PLAN = RolloutPlan(1, 2, (5, 25, 50, 100), 300, 3600, 0.05,
                   Gates(max_error_rate_increase=0.01, accuracy_margin=0.02))
SHADOWED = RolloutPlan(1, 2, (5, 100), 300, 3600, 0.05, Gates(min_shadow_agreement=0.95))


def gate(verdict: str, name: str = "accuracy") -> GateResult:
    return GateResult(name, verdict, 4000, 4000, -0.04, -0.06, -0.03, -0.02)


def test_all_pass_after_step_s_promotes_one_step_and_the_last_finishes() -> None:
    held = decide(PLAN, None, 25, False, [gate(PASS), gate(PASS, "errors")], 200)
    assert (held.decision, held.weight, held.step) == (HOLD, 25, 1)
    assert "100 s left" in held.reason
    moved = decide(PLAN, None, 25, False, [gate(PASS), gate(PASS, "errors")], 301)
    assert (moved.decision, moved.weight, moved.step, moved.state) == (PROMOTE, 50, 2,
                                                                       PROGRESSING)
    last = decide(PLAN, None, 100, False, [gate(PASS), gate(PASS, "errors")], 301)
    assert (last.decision, last.weight, last.state) == (PROMOTE, 100, PROMOTED)


def test_any_failure_rolls_back_at_once_with_the_evidence() -> None:
    rolled = decide(PLAN, None, 50, False, [gate(FAIL), gate(PASS, "errors")], 5)
    assert (rolled.decision, rolled.weight, rolled.state) == (ROLLBACK, 0, ROLLED_BACK)
    assert rolled.reason.startswith("gate failed: accuracy (estimate -0.04, interval "
                                    "[-0.06, -0.03], threshold -0.02, n 4000/4000)")


def test_no_evidence_never_promotes_and_an_old_undecided_step_is_inconclusive() -> None:
    waiting = decide(PLAN, None, 5, False, [gate(WAIT), gate(PASS, "errors")], 3000)
    assert (waiting.decision, waiting.weight) == (HOLD, 5)
    assert "waiting for accuracy" in waiting.reason
    stale = decide(PLAN, None, 5, False, [gate(WAIT), gate(PASS, "errors")], 3600)
    assert (stale.decision, stale.weight, stale.state) == (ROLLBACK, 0, ROLLED_BACK)
    assert stale.reason.startswith("inconclusive") and "accuracy" in stale.reason
    nothing = decide(RolloutPlan(1, 2, (5, 100), 300, 3600, 0.05, Gates()), None, 5, False,
                     [], 1000)
    assert nothing.decision == HOLD and "no gate is set" in nothing.reason


def test_the_weights_are_the_state() -> None:
    start = decide(PLAN, None, 0, False, [], 0)
    assert (start.decision, start.weight, start.step) == (START, 5, 0)
    shadow = decide(SHADOWED, None, 0, True, [gate(PASS, "shadow_agreement")], 301)
    assert (shadow.decision, shadow.weight, shadow.step) == (PROMOTE, 5, 0)
    assert decide(SHADOWED, None, 0, True, [gate(WAIT)], 10).step == SHADOW_STEP
    manual = decide(PLAN, None, 30, False, [gate(PASS)], 1000)
    assert (manual.decision, manual.weight) == (MANUAL, 30) and not manual.writes
    finished = decide(PLAN, RolloutStatus(ROLLED_BACK, 2, None, "gate failed"), 0, False,
                      [gate(PASS)], 1000)
    assert finished.decision == DONE and not finished.writes
