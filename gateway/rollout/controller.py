"""`gateway rollout`: read the routing file and the fleet's metrics, decide, write (SPEC 9).

One evaluation reads the routing file (its text is what a write must still find), the replicas'
/metrics (all of them, or no decision: a partial sum would undercount the evidence), and for
every model with an unfinished rollout block judges the gates on what the counters gained since
the controller first saw the current step (a controller that restarts begins the step's
evidence afresh; the step itself is read back from the weights). With `once`, there is no
earlier reading: the evidence is the counters' totals, the A/B comparison of the two versions.

Each decision is one JSON line. A decision that moves weights or finishes the rollout is
written into the file unless `dry_run`; the write happens only while the file still reads what
the decision was made on, so a person's edit in between wins and the next evaluation reads it.

Decided here, where SPEC 9 is silent:
- The step's clock starts when this controller first sees the step; after a restart it begins
  again, so a restart can only delay a promotion, never hurry one.
- A replica that cannot be read makes every decision of that round a hold.
- The baseline gets the rest: 100 minus the canary and any other version's weight.
- Steps are numbered as SPEC 9 counts them in the log and in `rollout_status.step`: 0 is before
  the first weight (the shadow step), 1 the first weight of `steps`, and so on.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from gateway.rollout.decide import HOLD, PROGRESSING, SHADOW_STEP, Decision, decide, stand
from gateway.rollout.evidence import Reading, gained
from gateway.rollout.gates import Evidence, judge
from gateway.rollout.metrics import RolloutMetrics
from gateway.rollout.store import FileStore, PolicyStore
from gateway.rollout.writer import with_decision
from gateway.routing.policy import ModelPolicy, parse_policy
from gateway.runtime.repository import (
    Fingerprint,
    Repository,
    repository_fingerprint,
    scan_repository,
)
from gateway.settings import Settings


def fetch_metrics(urls: list[str], timeout_s: float = 5.0) -> list[str]:
    """Every replica's /metrics text; OSError when one cannot be read."""
    texts = []
    for url in urls:
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:
            texts.append(reply.read().decode())
    return texts


@dataclass
class _StepStart:
    key: tuple[int | None, float]
    started: float
    baseline: Evidence
    canary: Evidence


@dataclass
class Controller:
    settings: Settings
    read: Callable[[], Reading]
    """The fleet's totals now (OSError: a replica or Prometheus is out of reach)."""
    once: bool = False
    dry_run: bool = False
    out: TextIO | None = None
    clock: Callable[[], float] = time.time
    store: PolicyStore | None = None
    """Where the policy is read and written (default: the routing file of `settings`)."""
    metrics: RolloutMetrics | None = None
    """The controller's own gauges and counters (served with --port)."""
    decisions: list[dict[str, Any]] = field(default_factory=list)
    """Every decision of the last evaluation, as logged."""
    _steps: dict[str, _StepStart] = field(default_factory=dict)
    _repository: tuple[Fingerprint, Repository] | None = None

    def repository(self) -> Repository:
        """The model repository, scanned again only when its fingerprint changes (parsing every
        manifest each evaluation was most of an evaluation's time)."""
        root = self.settings.model_repository
        fingerprint = repository_fingerprint(root)
        if self._repository is None or self._repository[0] != fingerprint:
            self._repository = (fingerprint, scan_repository(root))
        return self._repository[1]

    def evaluate(self) -> list[dict[str, Any]]:
        store = self.store or FileStore(self.settings.routing)
        text, version = store.read()
        policy = parse_policy(text, self.repository())
        try:
            reading: Reading | None = self.read()
        except OSError as exc:
            reading, unreachable = None, str(exc)
        self.decisions = []
        for model, entry in policy.models.items():
            if entry.rollout is None:
                continue
            if reading is None:
                line = self._line(model, entry, Decision(
                    HOLD, 0, int(_weight(entry, entry.rollout.canary)), PROGRESSING,
                    f"metrics unreadable ({unreachable}): no evidence, no move"))
            else:
                decision = self._decide(model, entry, reading)
                line = self._line(model, entry, decision)
                if decision.writes and not self.dry_run:
                    written = self._write(store, version, text, model, entry, decision, line)
                    if written is not None:
                        text, version = store.read()
            self.decisions.append(line)
            if self.metrics is not None:
                self.metrics.record(line)
            if self.out is not None:
                self.out.write(json.dumps(line) + "\n")
                self.out.flush()
        return self.decisions

    def _decide(self, model: str, entry: ModelPolicy, reading: Reading) -> Decision:
        plan = entry.rollout
        assert plan is not None
        weight = _weight(entry, plan.canary)
        shadowed = plan.canary in {s.version for s in entry.shadow}
        where = stand(plan, weight, shadowed)
        now_b = reading.get((model, plan.baseline), Evidence())
        now_c = reading.get((model, plan.canary), Evidence())
        key = (where.step, weight)
        start = self._steps.get(model)
        if start is None or start.key != key:
            start = self._steps[model] = _StepStart(key, self.clock(), now_b, now_c)
        if self.once:
            baseline, canary, elapsed = now_b, now_c, self._since_status(entry)
        else:
            baseline, canary = gained(now_b, start.baseline), gained(now_c, start.canary)
            elapsed = self.clock() - start.started
        results = judge(plan.gates, plan.alpha, baseline, canary,
                        shadow_step=where.step == SHADOW_STEP,
                        full_window_rows=self.settings.drift.window_rows)
        return decide(plan, entry.rollout_status, weight, shadowed, results, elapsed)

    def _since_status(self, entry: ModelPolicy) -> float:
        """With `once`: the step's age as the last status wrote it (0 when unknown)."""
        status = entry.rollout_status
        if status is None or status.since is None:
            return 0.0
        try:
            since = datetime.fromisoformat(status.since.replace("Z", "+00:00"))
        except ValueError:
            return 0.0
        return max(0.0, self.clock() - since.timestamp())

    def _line(self, model: str, entry: ModelPolicy, decision: Decision) -> dict[str, Any]:
        plan = entry.rollout
        assert plan is not None
        return {"time": _stamp(self.clock()), "model": model, "baseline": plan.baseline,
                "canary": plan.canary, "step": decision.step + 1, "weight": decision.weight,
                "decision": decision.decision, "reason": decision.reason,
                "gates": [g.as_json() for g in decision.gates]}

    def _write(self, store: PolicyStore, version: str, text: str, model: str,
               entry: ModelPolicy, decision: Decision, line: dict[str, Any]) -> str | None:
        """The new text when it was stored; None when the policy changed since it was read."""
        plan = entry.rollout
        assert plan is not None
        others = sum(t.weight for t in entry.traffic
                     if t.version not in (plan.baseline, plan.canary))
        weights = {plan.canary: decision.weight,
                   plan.baseline: int(max(0, 100 - decision.weight - others))}
        status = {"state": decision.state, "step": decision.step + 1,
                  "since": line["time"], "reason": decision.reason}
        new = with_decision(text, model, weights, status)
        if store.write(version, new):
            self._steps.pop(model, None)  # the next step's evidence starts now
            return new
        line["decision"] = HOLD
        line["reason"] = (f"the policy changed while deciding ({decision.decision} not "
                          "written): a person's edit wins; reading it again next time")
        return None

    def run(self, check_s: float, stop: Callable[[], bool] = lambda: False) -> None:
        while not stop():
            self.evaluate()
            if self.once:
                return
            time.sleep(check_s)


def _weight(entry: ModelPolicy, version: int) -> float:
    return next((t.weight for t in entry.traffic if t.version == version), 0.0)


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
