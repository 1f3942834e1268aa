"""The rollout controller's own metrics (docs/routing.md), served with `gateway rollout --port`."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

VERDICTS = {"pass": 1, "wait": 0, "fail": -1}


class RolloutMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.canary_weight = Gauge("gateway_rollout_canary_weight",
                                   "The canary's weight after the controller's last decision.",
                                   ["model"], registry=self.registry)
        self.decisions = Counter("gateway_rollout_decisions_total",
                                 "Decisions by kind: start, promote, hold, rollback, done, "
                                 "manual.", ["model", "decision"], registry=self.registry)
        self.gate = Gauge("gateway_rollout_gate", "Each gate's last verdict: 1 pass, 0 wait, "
                          "-1 fail.", ["model", "gate"], registry=self.registry)

    def record(self, line: dict[str, Any]) -> None:
        """Count one decision line (as the controller logs it)."""
        model = str(line["model"])
        self.canary_weight.labels(model).set(float(line["weight"]))
        self.decisions.labels(model, str(line["decision"])).inc()
        for gate in line["gates"]:
            self.gate.labels(model, str(gate["gate"])).set(VERDICTS.get(gate["verdict"], 0))
