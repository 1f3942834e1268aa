"""The rollout controller's own metrics (docs/routing.md), served with `gateway rollout --port`."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

VERDICTS = {"pass": 1, "wait": 0, "fail": -1}
DECISIONS = ("start", "promote", "hold", "rollback", "by_hand", "done", "manual")


class RolloutMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.canary_weight = Gauge("gateway_rollout_canary_weight",
                                   "The canary's weight after the controller's last decision.",
                                   ["model"], registry=self.registry)
        self.decisions = Counter("gateway_rollout_decisions_total",
                                 "Decisions by kind: start, promote, hold, rollback, by_hand, "
                                 "done, manual.", ["model", "decision"], registry=self.registry)
        self.gate = Gauge("gateway_rollout_gate", "Each gate's last verdict: 1 pass, 0 wait, "
                          "-1 fail.", ["model", "gate"], registry=self.registry)

        self._models: set[str] = set()

    def record(self, line: dict[str, Any]) -> None:
        """Count one decision line (as the controller logs it; a hold for a file that could not
        be read has no weight). Every decision's series of a model exists from the model's first
        line, at 0, so that `increase()` sees the first rollback (a series born at 1 has none)."""
        model = str(line["model"])
        if model not in self._models:
            self._models.add(model)
            for decision in DECISIONS:
                self.decisions.labels(model, decision)
        if line.get("weight") is not None:
            self.canary_weight.labels(model).set(float(line["weight"]))
        self.decisions.labels(model, str(line["decision"])).inc()
        if line["decision"] == "done":
            return  # a finished rollout keeps showing the verdicts that finished it
        for gate in line.get("gates") or []:
            self.gate.labels(model, str(gate["gate"])).set(VERDICTS.get(gate["verdict"], 0))
