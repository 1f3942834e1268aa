"""The rollout's decision, pure: where a model's weights and status stand, what its gates said
and how long the step has run, in; what to write next, out (see docs/routing.md).

The weights in the file are the state:
- a canary at weight 0 is before the first step: with the shadow gate set and the canary
  shadowed, that is step 0 (judged as a shadow); else it is moved to the first step;
- a canary at one of the steps' weights is at that step; a step that gives it all the traffic
  (100, less what other versions hold) is never judged: nothing is left to compare it with, so
  passing the step before it promotes at once, and a canary found there is promoted;
- any other weight was set by a person: it is left alone (and logged) until a person fixes it.

A person always wins. A canary at weight 0 while the status says `progressing` for it at a
weighted step was rolled back by hand: that is recorded, never reversed. A finished rollout
(promoted, rolled back) is left alone until a person names another canary in the block; a
status naming another canary than the block's belongs to an earlier release and is replaced.

Steps are numbered as the log and `rollout_status.step` count them: 0 is the shadow step, 1 the
first weight of `steps`, and so on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from gateway.rollout.gates import FAIL, PASS, GateResult, verdict_of
from gateway.routing.policy import ModelPolicy
from gateway.routing.rollout import RolloutPlan, RolloutStatus

START, PROMOTE, HOLD, ROLLBACK, DONE, MANUAL, BY_HAND = (
    "start", "promote", "hold", "rollback", "done", "manual", "by_hand")
PROGRESSING, PROMOTED, ROLLED_BACK = "progressing", "promoted", "rolled_back"


@dataclass(frozen=True)
class Stand:
    """Where a model's rollout stands, read from its weights and status."""

    plan: RolloutPlan
    status: RolloutStatus | None
    """The status, if it belongs to this block's canary (else None: a new rollout)."""
    weight: int
    """The canary's weight now."""
    others: int
    """What versions other than the baseline and the canary hold (a rollout never moves them)."""
    step: int | None
    """The step now (0: the shadow step), or None: before the first step, or a weight that is
    no step."""
    before_first: bool
    finished: bool

    @property
    def full(self) -> int:
        """The canary's weight once promoted: all that other versions do not hold."""
        return 100 - self.others

    @property
    def key(self) -> tuple[int, int | None, int]:
        """What identifies the step (its evidence and clock start afresh when it changes)."""
        return self.plan.canary, self.step, self.weight

    @property
    def judged_as_shadow(self) -> bool:
        return self.step == 0


def stand(entry: ModelPolicy) -> Stand:
    plan = entry.rollout
    assert plan is not None
    weights = {t.version: int(t.weight) for t in entry.traffic}
    weight = weights.get(plan.canary, 0)
    others = sum(w for v, w in weights.items() if v not in (plan.baseline, plan.canary))
    status = entry.rollout_status
    if status is not None and status.canary not in (None, plan.canary):
        status = None
    finished = status is not None and status.state in (PROMOTED, ROLLED_BACK)
    shadowed = plan.canary in {s.version for s in entry.shadow}
    step: int | None = None
    before_first = False
    if weight == 0:
        if plan.gates.min_shadow_agreement is not None and shadowed:
            step = 0
        else:
            before_first = True
    elif weight == 100 - others:
        step = len(plan.steps)  # all the traffic: the last step, whatever the plan says
    elif weight in plan.steps:
        step = plan.steps.index(weight) + 1
    return Stand(plan, status, weight, others, step, before_first, finished)


@dataclass(frozen=True)
class Decision:
    decision: str
    step: int | None
    """The step after the decision, counted as the log counts it (None: no step)."""
    weight: int
    """The canary's weight after the decision."""
    reason: str
    gates: tuple[GateResult, ...] = ()
    weights: dict[int, int] | None = None
    """The traffic weights to write (version -> weight), None when no weight moves."""
    status: dict[str, Any] | None = None
    """The `rollout_status` to write, None when it stays."""
    before: tuple[int | None, int] = (None, 0)
    """The step and the canary's weight before the decision."""

    @property
    def writes(self) -> bool:
        return self.weights is not None or self.status is not None

    def superseded(self, reason: str) -> Decision:
        """This decision not written (the file changed under it): a hold where it stood."""
        return replace(self, decision=HOLD, step=self.before[0], weight=self.before[1],
                       reason=reason, weights=None, status=None)


def stamp(now_s: float) -> str:
    """A time as the log and `rollout_status.since` write it (RFC 3339, UTC)."""
    return datetime.fromtimestamp(now_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def decide(where: Stand, results: Sequence[GateResult] | str, elapsed_s: float,
           now_s: float, progressed: int | None = None) -> Decision:
    """The next move. `results`: the gates judged on the step's evidence, or why there is no
    evidence (metrics that could not be read); `elapsed_s`: the step's age; `progressed`: the
    furthest weighted step the caller has seen this canary at (a rollback by hand that also
    removed the status is still one)."""
    plan = where.plan
    gates = tuple(results) if not isinstance(results, str) else ()
    before = (where.step, where.weight)

    def status(state: str, step: int | None, reason: str) -> dict[str, Any]:
        return {"state": state, "canary": plan.canary, "step": step, "since": stamp(now_s),
                "reason": reason}

    def move(decision: str, step: int | None, weight: int, state: str, reason: str,
             weights: bool = True) -> Decision:
        written = ({plan.canary: weight, plan.baseline: where.full - weight}
                   if weights else None)
        return Decision(decision, step, weight, reason, gates, written,
                        status(state, step, reason), before)

    def hold(decision: str, reason: str) -> Decision:
        return Decision(decision, where.step, where.weight, reason, gates, before=before)

    current = where.status
    if where.finished and current is not None:
        legacy = ("" if current.canary is not None else
                  f" (this status names no canary: an older controller wrote it; add `canary: "
                  f"<the version it released>` to it once if that was not {plan.canary})")
        return hold(DONE, f"rollout already {current.state}; name another canary in the "
                          f"block to start the next one{legacy}")
    reached = max(current.step or 0 if current is not None and current.state == PROGRESSING
                  else 0, progressed or 0)
    if where.weight == 0 and reached >= 1:
        return move(BY_HAND, reached, 0, ROLLED_BACK,
                    f"rolled back by hand: the canary's weight was set to 0 at step {reached}",
                    weights=False)
    if where.before_first:
        first = min(plan.steps[0], where.full)
        if first == where.full:
            return move(PROMOTE, len(plan.steps), first, PROMOTED,
                        "the first step gives the canary all the traffic: nothing to judge")
        return move(START, 1, first, PROGRESSING,
                    f"canary moved to the first step, weight {first}")
    if where.step is None:
        return hold(MANUAL, f"canary weight {where.weight} is no step of {list(plan.steps)}: "
                            "left alone until a person sets a step's weight")
    if where.weight == where.full:
        return move(PROMOTE, where.step, where.weight, PROMOTED,
                    f"the canary has all the traffic (weight {where.weight}): nothing is left "
                    "to compare it with, so the rollout is promoted", weights=False)
    if where.step == 0 and current is None:
        return move(START, 0, 0, PROGRESSING, "step 0: the canary is judged as a shadow",
                    weights=False)
    if isinstance(results, str):
        return hold(HOLD, f"{results}: no evidence, no move")
    verdict = verdict_of(gates)
    if verdict == FAIL:
        failed = "; ".join(_evidence(r) for r in gates if r.verdict == FAIL)
        return move(ROLLBACK, where.step, 0, ROLLED_BACK, f"gate failed: {failed}")
    if verdict == PASS and elapsed_s >= plan.step_s:
        following = where.step + 1
        weight = plan.steps[following - 1] if following <= len(plan.steps) else where.full
        if weight >= where.full:
            return move(PROMOTE, len(plan.steps), where.full, PROMOTED,
                        f"every gate passed for {elapsed_s:.0f} s at the last judged step: "
                        "the canary is promoted")
        return move(PROMOTE, following, weight, PROGRESSING,
                    f"every gate passed for {elapsed_s:.0f} s: weight {weight}")
    if elapsed_s >= plan.max_step_s:
        waiting = [r.gate for r in gates if r.verdict != PASS] or ["no gate set"]
        return move(ROLLBACK, where.step, 0, ROLLED_BACK,
                    f"inconclusive: undecided after {plan.max_step_s:g} s "
                    f"(waiting: {', '.join(waiting)})")
    waiting = [r.gate for r in gates if r.verdict != PASS]
    if not gates:
        return hold(HOLD, "no gate is set: nothing is evidence, so nothing promotes")
    if waiting:
        return hold(HOLD, f"waiting for {', '.join(waiting)}")
    return hold(HOLD, f"every gate passes; {plan.step_s - elapsed_s:.0f} s left at this step")


def _evidence(result: GateResult) -> str:
    def shown(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4g}"

    return (f"{result.gate} (estimate {shown(result.estimate)}, interval "
            f"[{shown(result.low)}, {shown(result.high)}], threshold {result.threshold:g}, "
            f"n {result.n_baseline}/{result.n_canary})")
