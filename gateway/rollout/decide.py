"""The rollout's decision, pure (SPEC 9): where the weights say the rollout stands, what its gates
said, how long the step has run; what to do next.

The weights in the file are the state. A canary at weight 0 is before the first step: with the
shadow gate set and the canary shadowed, that is step 0 (judged as a shadow); else it is moved
to the first step. A canary at one of the steps' weights is at that step. Any other weight was
set by a person: it is left alone (and logged) until a person fixes it. A finished rollout
(`rollout_status` promoted or rolled back) is left alone until a person edits the block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.rollout.gates import FAIL, PASS, GateResult, verdict_of
from gateway.routing.rollout import RolloutPlan, RolloutStatus

START, PROMOTE, HOLD, ROLLBACK, DONE, MANUAL = ("start", "promote", "hold", "rollback", "done",
                                                "manual")
PROGRESSING, PROMOTED, ROLLED_BACK = "progressing", "promoted", "rolled_back"
SHADOW_STEP = -1
"""The step index of step 0: the canary as a shadow, before its first weight."""


@dataclass(frozen=True)
class Stand:
    """Where the rollout stands, read from the canary's weight."""

    step: int | None
    """Index into the plan's steps, SHADOW_STEP, or None when the weight is no step."""
    before_first: bool = False
    """Weight 0 and no shadow step: to be moved to the first step."""


def stand(plan: RolloutPlan, canary_weight: float, canary_shadowed: bool) -> Stand:
    if canary_weight == 0:
        if plan.gates.min_shadow_agreement is not None and canary_shadowed:
            return Stand(SHADOW_STEP)
        return Stand(None, before_first=True)
    for index, weight in enumerate(plan.steps):
        if canary_weight == weight:
            return Stand(index)
    return Stand(None)


@dataclass(frozen=True)
class Decision:
    decision: str
    step: int
    """The step index after the decision (SHADOW_STEP at step 0)."""
    weight: int
    """The canary's weight after the decision."""
    state: str
    reason: str
    gates: tuple[GateResult, ...] = ()

    @property
    def writes(self) -> bool:
        """Whether the file changes (weights or status)."""
        return self.decision in (START, PROMOTE, ROLLBACK)


def decide(plan: RolloutPlan, status: RolloutStatus | None, canary_weight: float,
           canary_shadowed: bool, results: Sequence[GateResult], elapsed_s: float) -> Decision:
    """The next move. `results` are the gates judged on the step's evidence (judged as a shadow
    at step 0), `elapsed_s` the time since the step began."""
    weight = int(canary_weight)
    where = stand(plan, canary_weight, canary_shadowed)
    if status is not None and status.state in (PROMOTED, ROLLED_BACK):
        step = status.step - 1 if status.step is not None else 0  # the status counts from 1
        return Decision(DONE, step, weight,
                        status.state, f"rollout already {status.state}; edit the block to start "
                        "another")
    if where.before_first:
        return Decision(START, 0, plan.steps[0], PROGRESSING,
                        f"canary moved to the first step, weight {plan.steps[0]}")
    if where.step is None:
        return Decision(MANUAL, 0, weight, PROGRESSING,
                        f"canary weight {canary_weight:g} is no step of {list(plan.steps)}: "
                        "left alone until a person sets a step's weight")
    step = where.step
    gates = tuple(results)
    verdict = verdict_of(gates)
    if verdict == FAIL:
        failed = [r for r in gates if r.verdict == FAIL]
        reason = "; ".join(_evidence(r) for r in failed)
        return Decision(ROLLBACK, step, 0, ROLLED_BACK, f"gate failed: {reason}", gates)
    if verdict == PASS and elapsed_s >= plan.step_s:
        if step == len(plan.steps) - 1:
            return Decision(PROMOTE, step, weight, PROMOTED,
                            "every gate passed at the last step: the canary is promoted", gates)
        following = step + 1
        return Decision(PROMOTE, following, plan.steps[following], PROGRESSING,
                        f"every gate passed for {elapsed_s:.0f} s: weight "
                        f"{plan.steps[following]}", gates)
    if elapsed_s >= plan.max_step_s:
        waiting = [r.gate for r in gates if r.verdict != PASS] or ["no gate set"]
        return Decision(ROLLBACK, step, 0, ROLLED_BACK,
                        f"inconclusive: undecided after {plan.max_step_s:g} s "
                        f"(waiting: {', '.join(waiting)})", gates)
    waiting = [r.gate for r in gates if r.verdict != PASS]
    reason = (f"waiting for {', '.join(waiting)}" if waiting
              else f"every gate passes; {plan.step_s - elapsed_s:.0f} s left at this step")
    if not gates:
        reason = "no gate is set: nothing is evidence, so nothing promotes"
    return Decision(HOLD, step, weight, PROGRESSING, reason, gates)


def _evidence(result: GateResult) -> str:
    def shown(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4g}"

    return (f"{result.gate} (estimate {shown(result.estimate)}, interval "
            f"[{shown(result.low)}, {shown(result.high)}], threshold {result.threshold:g}, "
            f"n {result.n_baseline}/{result.n_canary})")
