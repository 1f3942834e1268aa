"""The inference pipeline, free of HTTP: decide a request's version, serve it, observe it.

Two steps, so that a caller can name the version a request was routed to even when serving it
then fails (a 400 from validation counts under the version that refused it):

- `decide` reads the routing policy once (an immutable snapshot) and picks the version: the one
  pinned, the highest when the policy does not name the model, else flags and the split.
- `serve` finds that version's deployment and holds it (an unloading version waits for it),
  validates the request against its signature, hands it to its batcher, then feeds the drift
  monitor and mirrors it to the policy's shadows.

Nothing awaits between `decide` returning and `serve` holding the deployment, so the policy read,
the decision and the lookup see one policy, and a version being unloaded is either found and
held or gone. The HTTP endpoint (`gateway.http.endpoints`) decodes, calls these, encodes and
counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.observability.drift.service import DriftService
from gateway.observability.metrics import NO_VERSION
from gateway.observability.shadow import ShadowRunner
from gateway.observability.tracing import RequestTrace
from gateway.protocol.request import InferRequest
from gateway.protocol.validate import check_request
from gateway.routing.decide import PINNED, SPLIT, choose_version
from gateway.routing.live import LivePolicy
from gateway.routing.policy import ModelPolicy, default_version
from gateway.routing.shadow import choose_shadows
from gateway.runtime.registry import Registry
from gateway.settings import Settings
from gateway.tensors import Tensors


@dataclass(frozen=True)
class Decision:
    model: str
    version: int
    route: str
    """split, flag or pinned (docs/metrics.md)."""
    known: bool
    """The repository has this version (a pinned caller may name any number)."""
    policy: ModelPolicy | None
    """The model's policy the decision was made on; its shadows are mirrored after serving."""

    @property
    def version_label(self) -> str:
        """The version as a metric label: only versions of the repository (docs/metrics.md)."""
        return str(self.version) if self.known else NO_VERSION


@dataclass(frozen=True)
class Served:
    version: int
    route: str
    results: Tensors


class InferencePipeline:
    def __init__(self, registry: Registry, settings: Settings, live: LivePolicy,
                 drift: DriftService,
                 shadow: ShadowRunner) -> None:
        self._registry = registry
        self._live = live
        self._drift = drift
        self._shadow = shadow
        self._max_batch_rows = settings.limits.max_batch_rows
        self._default_timeout_us = settings.batching.default_timeout_us

    def input_names(self, model: str) -> frozenset[str] | None:
        """Every input name the model's loaded versions take (None: none is loaded)."""
        return self._registry.input_names(model)

    def decide(self, model: str, pinned: int | None, headers: Mapping[str, str],
               parameters: Mapping[str, Any]) -> Decision:
        """The version a request goes to; NotFound when the model is not (or no longer) there."""
        versions = self._registry.check_model(model)
        model_policy = self._live.policy.models.get(model)
        if pinned is not None:
            version, route = pinned, PINNED
        elif model_policy is None:
            version, route = default_version(None, versions), SPLIT
        else:
            choice = choose_version(model_policy, headers, parameters,
                                    self._registry.ready_versions(model))
            version, route = choice.version, choice.route
        return Decision(model, version, route, version in versions, model_policy)

    async def serve(self, decision: Decision, request: InferRequest,
                    trace: RequestTrace) -> Served:
        """Run the request on the decided version; then drift and shadows see it."""
        model, version = decision.model, decision.version
        deployment = self._registry.find(model, version)
        session, batcher = deployment.session, deployment.batcher
        assert session is not None and batcher is not None
        deployment.inflight += 1
        try:
            check_request(request, session.inputs, session.outputs, self._max_batch_rows)
            first = next(iter(request.inputs.values()))
            rows = first.shape[0] if first.ndim else 1
            results = await batcher.submit(request.inputs, rows,
                                           request.timeout_us or self._default_timeout_us,
                                           trace.timing)
        finally:
            deployment.inflight -= 1
            trace.batch_spans(model, decision.version_label)
        self._drift.observe(model, version, request.inputs, results)
        if decision.route != PINNED and decision.policy is not None and decision.policy.shadow:
            shadows = [v for v in choose_shadows(decision.policy) if v != version]
            if shadows:
                self._shadow.mirror(model, shadows, request.inputs, results, rows,
                                    trace.span_context)
        return Served(version, decision.route, results)
