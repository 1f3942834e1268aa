"""The decision from where the weights and status stand, the gates' verdicts and the step's age:
the last step, a person's rollback, the next release, other arms."""

from __future__ import annotations

from functools import cache

import pytest

from gateway.rollout.decide import (
    BY_HAND,
    DONE,
    HOLD,
    MANUAL,
    PROGRESSING,
    PROMOTE,
    PROMOTED,
    ROLLBACK,
    ROLLED_BACK,
    START,
    Decision,
    decide,
    stand,
)
from gateway.rollout.gates import FAIL, PASS, WAIT, GateResult
from gateway.routing.policy import ModelPolicy, parse_policy
from gateway.runtime.repository import Repository, scan_repository
from tests.conftest import MODEL, MODELS

NOW = 1_800_000_000.0


@cache
def repository() -> Repository:
    return scan_repository(MODELS)


def entry(traffic: str, extra: str = "", steps: str = "[5, 25, 50, 100]",
          gates: str = "{accuracy_margin: 0.02}") -> ModelPolicy:
    text = f"""\
models:
  {MODEL}:
    traffic: {traffic}
    rollout: {{baseline: 1, canary: 2, steps: {steps}, step_s: 300, max_step_s: 3600,
               gates: {gates}}}
{extra}"""
    return parse_policy(text, repository()).models[MODEL]


def split(canary: int, others: str = "") -> str:
    rest = 100 - canary - (10 if others else 0)
    return f"[{{version: 1, weight: {rest}}}, {{version: 2, weight: {canary}}}{others}]"


def status(state: str, step: int, canary: int = 2) -> str:
    return (f"    rollout_status: {{state: {state}, canary: {canary}, step: {step}, "
            f'since: "2026-01-01T00:00:00Z"}}\n')


def gate(verdict: str, name: str = "accuracy") -> GateResult:
    return GateResult(name, verdict, 4000, 4000, -0.04, -0.06, -0.03, -0.02)


def run(policy: ModelPolicy, verdicts: list[GateResult] | str, elapsed_s: float) -> Decision:
    return decide(stand(policy), verdicts, elapsed_s, NOW)


def test_passing_the_step_before_100_promotes_at_once_and_100_is_never_judged() -> None:
    """Item 1: the README's plan used to sit at 100 with no baseline traffic until max_step_s
    rolled it back. Passing at 50 now writes weight 100 and `promoted` in one write."""
    held = run(entry(split(50)), [gate(PASS)], 200)
    assert (held.decision, held.weight, held.step) == (HOLD, 50, 3) and not held.writes
    done = run(entry(split(50)), [gate(PASS)], 301)
    assert (done.decision, done.weight, done.step) == (PROMOTE, 100, 4)
    assert done.weights == {2: 100, 1: 0}
    assert done.status is not None and done.status["state"] == PROMOTED
    assert done.status["canary"] == 2
    # A canary found at 100 (an old controller put it there) is promoted, whatever the gates.
    found = run(entry(split(100), status(PROGRESSING, 4)), [gate(WAIT)], 4000)
    assert (found.decision, found.weight, found.weights) == (PROMOTE, 100, None)
    assert found.status is not None and found.status["state"] == PROMOTED
    # A plan that ends below 100 ends the same way after its last step.
    short = entry(split(25), steps="[5, 25]")
    ended = run(short, [gate(PASS)], 301)
    assert (ended.decision, ended.weight, ended.weights) == (PROMOTE, 100, {2: 100, 1: 0})


def test_a_promoted_rollout_is_never_moved_again() -> None:
    finished = entry(split(100), status(PROMOTED, 4))
    for verdicts in ([gate(FAIL)], [gate(WAIT)], "metrics unreadable"):
        decision = run(finished, verdicts, 10_000)
        assert decision.decision == DONE and not decision.writes


def test_a_rollback_by_hand_is_recorded_and_never_reversed() -> None:
    """Item 8: status progressing at step 2, the file set back to 100/0 by a person."""
    by_hand = run(entry(split(0), status(PROGRESSING, 2)), [gate(PASS)], 1000)
    assert (by_hand.decision, by_hand.weight, by_hand.weights) == (BY_HAND, 0, None)
    assert by_hand.status is not None and by_hand.status["state"] == ROLLED_BACK
    assert "by hand" in by_hand.status["reason"]
    then = run(entry(split(0), status(ROLLED_BACK, 2)), [gate(PASS)], 1000)
    assert then.decision == DONE and not then.writes


def test_a_block_naming_another_canary_starts_a_new_rollout() -> None:
    """Item 9: the status belongs to version 3's finished rollout; the block now names 2."""
    fresh = run(entry(split(0), status(PROMOTED, 4, canary=3)), [gate(PASS)], 0)
    assert (fresh.decision, fresh.weight, fresh.weights) == (START, 5, {2: 5, 1: 95})
    assert fresh.status is not None and fresh.status["canary"] == 2
    assert fresh.status["state"] == PROGRESSING


def test_other_arms_keep_their_weights_and_steps_that_cannot_fit_are_refused() -> None:
    """Item 11: v1:40, v2:50, v3:10 summed to 110 after a promotion."""
    three = entry(split(25, ", {version: 3, weight: 10}"), steps="[5, 25, 50, 90]")
    moved = run(three, [gate(PASS)], 301)
    assert moved.weights == {2: 50, 1: 40}  # version 3 keeps its 10
    last = run(entry(split(50, ", {version: 3, weight: 10}"), steps="[5, 25, 50, 90]"),
               [gate(PASS)], 301)
    assert (last.weight, last.weights) == (90, {2: 90, 1: 0})
    assert last.status is not None and last.status["state"] == PROMOTED
    rolled = run(three, [gate(FAIL)], 5)
    assert rolled.weights == {2: 0, 1: 90}
    with pytest.raises(Exception, match=r"step 100 cannot fit beside version 3 at 10"):
        entry(split(25, ", {version: 3, weight: 10}"))


def test_failures_roll_back_at_once_and_thin_evidence_holds_then_is_inconclusive() -> None:
    rolled = run(entry(split(25)), [gate(FAIL)], 5)
    assert (rolled.decision, rolled.weights) == (ROLLBACK, {2: 0, 1: 100})
    assert rolled.status is not None and rolled.status["reason"].startswith(
        "gate failed: accuracy (estimate -0.04, interval [-0.06, -0.03], threshold -0.02, "
        "n 4000/4000)")
    waiting = run(entry(split(5)), [gate(WAIT)], 3000)
    assert waiting.decision == HOLD and "waiting for accuracy" in waiting.reason
    stale = run(entry(split(5)), [gate(WAIT)], 3600)
    assert stale.decision == ROLLBACK and stale.reason.startswith("inconclusive")
    unread = run(entry(split(5)), "metrics unreadable (refused)", 5000)
    assert unread.decision == HOLD and "no evidence, no move" in unread.reason


def test_the_weights_are_the_state() -> None:
    start = run(entry(split(0)), [], 0)
    assert (start.decision, start.weight, start.step) == (START, 5, 1)
    manual = run(entry(split(30)), [gate(PASS)], 1000)
    assert (manual.decision, manual.weight) == (MANUAL, 30) and not manual.writes
    shadowed = entry(split(0), "    shadow: [{version: 2, percent: 100}]\n",
                     steps="[5, 100]", gates="{min_shadow_agreement: 0.95}")
    first = run(shadowed, [gate(WAIT, "shadow_agreement")], 0)
    assert (first.decision, first.step, first.weights) == (START, 0, None)
    assert first.status is not None and first.status["step"] == 0
    judged = entry(split(0), "    shadow: [{version: 2, percent: 100}]\n" +
                   status(PROGRESSING, 0), steps="[5, 100]",
                   gates="{min_shadow_agreement: 0.95}")
    moved = run(judged, [gate(PASS, "shadow_agreement")], 301)
    assert (moved.decision, moved.step, moved.weights) == (PROMOTE, 1, {2: 5, 1: 95})


def test_a_lost_race_reports_the_weight_that_stands() -> None:
    """Item 12: the log and the gauge must not show a weight never written."""
    moved = run(entry(split(25)), [gate(PASS)], 301)
    lost = moved.superseded("a person's edit wins")
    assert (lost.decision, lost.weight, lost.step, lost.writes) == (HOLD, 25, 2, False)
