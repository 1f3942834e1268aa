"""`gateway rollout`: read the routing file and the fleet's metrics, decide, write (see
docs/routing.md).

One evaluation reads the routing file (its exact text is what a write must still find), then
the replicas' metrics, and for every model with a rollout block judges the gates on what the
counters gained since the controller first saw the current step (a controller that restarts
begins the step's evidence afresh; the step itself is read back from the weights). With `once`,
there is no earlier reading: the evidence is the counters' totals.

It runs unattended, so nothing it reads makes it exit: a routing file it cannot read, parse or
edit in place, a half-finished edit, or metrics it cannot fetch, are a `hold` with the reason,
tried again at the next check. Each decision is one JSON line. Decisions are written in turn,
each on the text the previous write left (checked against exactly those bytes), so a person's
edit in between wins, and every decision after it in that evaluation is a hold.

Decided here, where the contract is silent:
- The step's clock starts when this controller first sees the step; after a restart it begins
  again, so a restart can only delay a promotion, never hurry one.
- A file that cannot be read or parsed holds every model the controller last knew (one line
  with `model: null` before it knew any).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from gateway.errors import ConfigError
from gateway.rollout.decide import HOLD, Decision, Stand, decide, stamp, stand
from gateway.rollout.evidence import Gains, Scrape, Series, evidence, since
from gateway.rollout.gates import Evidence, GateResult, judge, unjudged
from gateway.rollout.metrics import RolloutMetrics
from gateway.rollout.stats import quantile_from_buckets
from gateway.rollout.store import FileStore, PolicyStore
from gateway.rollout.writer import with_decision
from gateway.routing.policy import parse_policy
from gateway.runtime.repository import (
    Fingerprint,
    Repository,
    repository_fingerprint,
    scan_repository,
)
from gateway.settings import Settings

logger = logging.getLogger("gateway.rollout")


@dataclass
class _StepStart:
    key: tuple[int, int | None, int]
    started_s: float
    gained: dict[Series, float]
    """The tracker's gains when the step began: the step's evidence is what came after."""


@dataclass(frozen=True)
class StepEvidence:
    baseline: Evidence
    canary: Evidence
    elapsed_s: float


def judge_step(where: Stand, found: StepEvidence | str) -> list[GateResult] | str:
    """Every gate the plan sets, judged on the step's evidence (as a shadow at step 0; before
    the first step as the first step would be, so a person sees the comparison)."""
    if isinstance(found, str):
        return found
    return judge(where.plan, found.baseline, found.canary, shadow_step=where.judged_as_shadow)


@dataclass
class Controller:
    settings: Settings
    read: Callable[[], Scrape]
    """The fleet's metrics now (OSError or ValueError: a replica or Prometheus out of reach)."""
    once: bool = False
    dry_run: bool = False
    out: TextIO | None = None
    clock: Callable[[], float] = time.time
    store: PolicyStore | None = None
    """Where the policy is read and written (default: the routing file of `settings`)."""
    metrics: RolloutMetrics | None = None
    decisions: list[dict[str, Any]] = field(default_factory=list)
    """Every decision of the last evaluation, as logged."""
    _gains: Gains | None = None
    _steps: dict[str, _StepStart] = field(default_factory=dict)
    _known: list[str | None] = field(default_factory=list)
    _progressed: dict[tuple[str, int], int] = field(default_factory=dict)
    _repository: tuple[Fingerprint, Repository] | None = None
    _idle_said: bool = False

    def repository(self) -> Repository:
        """The model repository, scanned again only when its fingerprint changes."""
        root = self.settings.model_repository
        fingerprint = repository_fingerprint(root)
        if self._repository is None or self._repository[0] != fingerprint:
            self._repository = (fingerprint, scan_repository(root))
        return self._repository[1]

    def evaluate(self) -> list[dict[str, Any]]:
        self.decisions = []
        store = self.store or FileStore(self.settings.routing)
        try:
            text, token = store.read()
            policy = parse_policy(text, self.repository())
        except (OSError, ConfigError, ValueError, UnicodeError) as exc:
            self._hold_all(f"routing file not usable now ({exc}); trying again next check")
            return self.decisions
        rollouts = {m: e for m, e in policy.models.items() if e.rollout is not None}
        self._known = [*rollouts]
        if not rollouts:
            if not self._idle_said:
                logger.info("no model in %s has a rollout block: idle until one has",
                            self.settings.routing)
                self._idle_said = True
            return self.decisions
        self._idle_said = False
        found = self._scrape()
        writable = True
        for model, entry in rollouts.items():
            where = stand(entry)
            step_evidence = self._evidence(model, where, found)
            progressed = self._progress(model, where)
            decision = decide(where, judge_step(where, step_evidence),
                              self._elapsed(model, where), self.clock(), progressed)
            if decision.writes and not self.dry_run:
                if writable:
                    decision, text, token, writable = self._write(store, text, token, model,
                                                                  decision)
                else:  # an earlier write of this check failed: this decision is not written
                    decision = decision.superseded(
                        f"{decision.decision} not written: the routing file changed under an "
                        "earlier write of this check; reading it again next check")
            self._emit(self._line(model, where, decision, step_evidence))
        return self.decisions

    def _progress(self, model: str, where: Stand) -> int | None:
        """The furthest weighted step this controller has seen the canary progressing at (so a
        rollback by hand that also removed the status, as `git checkout` does, is still one)."""
        key = (model, where.plan.canary)
        if where.finished:
            self._progressed.pop(key, None)
        elif where.step is not None and where.step >= 1:
            self._progressed[key] = max(self._progressed.get(key, 0), where.step)
        return self._progressed.get(key)

    def _scrape(self) -> Gains | str:
        try:
            scrape = self.read()
        except (OSError, ValueError, UnicodeError) as exc:
            return (f"metrics unreadable ({exc}; is every --metrics URL a running gateway? by "
                    "default, the gateway of --config on this machine)")
        if self._gains is None or self.once:
            self._gains = Gains(from_zero=self.once)
        self._gains.observe(scrape)
        return self._gains

    def _evidence(self, model: str, where: Stand, found: Gains | str) -> StepEvidence | str:
        if isinstance(found, str):
            return found
        start = self._steps.get(model)
        if start is None or start.key != where.key:
            start = self._steps[model] = _StepStart(
                where.key, self.clock(), {} if self.once else dict(found.gained))
        gained = since(found.gained, start.gained)
        window = self.settings.drift.window_rows
        plan = where.plan
        return StepEvidence(evidence(gained, found.gauges, (model, plan.baseline), window),
                            evidence(gained, found.gauges, (model, plan.canary), window),
                            self.clock() - start.started_s)

    def _elapsed(self, model: str, where: Stand) -> float:
        """The step's age: since this controller first saw it, or with `once` since the
        status last moved it."""
        if not self.once:
            start = self._steps.get(model)
            return self.clock() - start.started_s if start is not None else 0.0
        status = where.status
        if status is None or status.since is None:
            return 0.0
        try:
            moved = datetime.fromisoformat(status.since.replace("Z", "+00:00"))
        except ValueError:
            return 0.0
        return max(0.0, self.clock() - moved.timestamp())

    def _write(self, store: PolicyStore, text: str, token: str, model: str,
               decision: Decision) -> tuple[Decision, str, str, bool]:
        """Write one decision on `text`; what was logged, the text and token now, and whether
        later decisions of this evaluation may still be written."""
        try:
            new = with_decision(text, model, decision.weights or {}, decision.status)
        except ValueError as exc:
            return (decision.superseded(f"{decision.decision} not written: the routing file "
                                        f"cannot be edited in place ({exc})"), text, token, True)
        try:
            stored = store.write(token, new)
        except OSError as exc:
            return (decision.superseded(f"{decision.decision} not written: {exc}"), text,
                    token, False)
        if stored is None:
            return (decision.superseded(f"the policy changed while deciding ({decision.decision} "
                                        "not written): a person's edit wins; reading it again "
                                        "next check"), text, token, False)
        self._steps.pop(model, None)  # the next step's evidence starts now
        return decision, new, stored, True

    def _line(self, model: str, where: Stand, decision: Decision,
              found: StepEvidence | str) -> dict[str, Any]:
        plan = where.plan
        line: dict[str, Any] = {
            "time": stamp(self.clock()), "model": model, "baseline": plan.baseline,
            "canary": plan.canary, "step": decision.step, "weight": decision.weight,
            "decision": decision.decision, "reason": decision.reason,
            "gates": [g.as_json() for g in decision.gates]}
        if not isinstance(found, str):
            line["versions"] = [summary(plan.baseline, found.baseline),
                                summary(plan.canary, found.canary)]
        elif not decision.gates:  # every gate's row all the same, and why it says nothing
            line["gates"] = [g.as_json() for g in unjudged(plan, where.judged_as_shadow)]
            if found not in decision.reason:
                line["reason"] = f"{decision.reason} ({found})"
        return line

    def _hold_all(self, reason: str) -> None:
        for model in self._known or [None]:
            self._emit({"time": stamp(self.clock()), "model": model, "decision": HOLD,
                        "reason": reason, "gates": []})

    def _emit(self, line: dict[str, Any]) -> None:
        self.decisions.append(line)
        if self.metrics is not None and line.get("model") is not None:
            try:
                self.metrics.record(line)
            except Exception:  # its own gauges must never stop the controller
                logger.exception("could not count decision %s", line)
        if self.out is not None:
            self.out.write(json.dumps(line) + "\n")
            self.out.flush()

    def run(self, check_s: float, stop: Callable[[], bool] = lambda: False,
            sleep: Callable[[float], object] = time.sleep) -> None:
        """Evaluate every `check_s` until `stop` (once with `once`). Nothing an evaluation
        meets ends the loop: an error is logged as a hold and tried again."""
        while not stop():
            try:
                self.evaluate()
            except Exception as exc:  # unattended: say why, hold, try again
                logger.exception("evaluation failed; holding until the next check")
                with contextlib.suppress(Exception):
                    self._hold_all(f"evaluation failed ({type(exc).__name__}: {exc})")
            if self.once:
                return
            sleep(check_s)


def summary(version: int, found: Evidence) -> dict[str, Any]:
    """One version's evidence for a person: requests, 5xx share, p99, labelled accuracy."""
    p99 = quantile_from_buckets(found.duration_bounds, found.duration_counts)
    return {"version": version, "requests": found.requests,
            "error_share": round(found.errors / found.requests, 6) if found.requests else None,
            "p99_s": None if p99 != p99 else round(p99, 6), "labelled": found.labelled,
            "accuracy": round(found.correct / found.labelled, 6) if found.labelled else None}



