"""The Open Inference Protocol endpoints (docs/endpoints.md): health, metadata, inference, metrics.

Each endpoint is a thin shell. Inference: start the request's span, then the data plane
(`gateway.inference`) looks the model up, has the body read and decoded here, decides, serves,
has the answer encoded here, captures, counts and traces.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import __version__
from gateway.capture.service import Capture
from gateway.errors import BadRequest, NotFound, Unavailable
from gateway.http.body import read_body
from gateway.http.paths import parse_version
from gateway.http.responses import JSON, json_response
from gateway.inference import Answer, InferCall, InferencePipeline
from gateway.observability.drift.service import DriftService
from gateway.observability.feedback import FeedbackService
from gateway.observability.metrics import GatewayMetrics
from gateway.observability.reports import DriftReport
from gateway.observability.tracing import Tracing
from gateway.protocol.feedback import parse_feedback
from gateway.protocol.request import InferRequest, decode_request
from gateway.protocol.response import encode_response
from gateway.routing.live import LivePolicy
from gateway.runtime.index import repository_index
from gateway.runtime.registry import Deployment, Registry
from gateway.settings import LimitSettings

logger = logging.getLogger("gateway.http")
SERVER_NAME = "gateway"
EXTENSIONS = ["binary_tensor_data"]
PLATFORM = "onnxruntime_onnx"
HEADER_LENGTH = "inference-header-content-length"


class Endpoints:
    def __init__(self, registry: Registry, limits: LimitSettings, live: LivePolicy,
                 pipeline: InferencePipeline,
                 metrics: GatewayMetrics, drift: DriftService, tracing: Tracing,
                 feedback: FeedbackService, capture: Capture) -> None:
        self.registry = registry
        self.pipeline = pipeline
        self.feedback = feedback
        self.tracing = tracing
        self.drift = drift
        self.live_policy = live
        self.metrics = metrics
        self.limits = limits
        self.capture = capture

    def routes(self) -> list[Route]:
        return [
            Route("/v2/health/live", self.live, methods=["GET"]),
            Route("/v2/health/ready", self.ready, methods=["GET"]),
            Route("/v2", self.server_metadata, methods=["GET"]),
            Route("/v2/", self.server_metadata, methods=["GET"]),
            Route("/v2/models/{model}", self.model_metadata, methods=["GET"]),
            Route("/v2/models/{model}/versions/{version}", self.model_metadata, methods=["GET"]),
            Route("/v2/models/{model}/ready", self.model_ready, methods=["GET"]),
            Route("/v2/models/{model}/versions/{version}/ready", self.model_ready,
                  methods=["GET"]),
            Route("/v2/models/{model}/infer", self.infer, methods=["POST"]),
            Route("/v2/models/{model}/versions/{version}/infer", self.infer, methods=["POST"]),
            Route("/v2/models/{model}/drift", self.model_drift, methods=["GET"]),
            Route("/v2/models/{model}/versions/{version}/drift", self.version_drift,
                  methods=["GET"]),
            Route("/v2/models/{model}/feedback", self.post_feedback, methods=["POST"]),
            Route("/v2/repository/index", self.repository_index, methods=["POST"]),
            Route("/metrics", self.metrics_text, methods=["GET"]),
        ]

    def _find(self, request: Request) -> Deployment:
        model = request.path_params["model"]
        version = request.path_params.get("version")
        if version is not None:
            return self.registry.find(model, parse_version(version))
        self.registry.check_model(model)
        return self.registry.find(model, self.live_policy.version_for_model(model))

    async def version_drift(self, request: Request) -> Response:
        deployment = self._find(request)
        model, version = deployment.entry.model, deployment.entry.version
        report = await self.drift.report(model, version)
        if report is None:
            raise NotFound(f"{deployment.name} is not monitored for drift: it has no usable "
                           "reference.json, or drift.enabled is false")
        return json_response(self._with_performance(report, model, version))

    def _with_performance(self, report: DriftReport, model: str, version: int) -> DriftReport:
        feedback = self.feedback.model(model)
        if feedback is not None:
            report["performance"] = feedback.performance(version)
        return report

    async def model_drift(self, request: Request) -> Response:
        """Every loaded version's report, and the model's label drift."""
        model = request.path_params["model"]
        self.registry.check_model(model)
        reports = [await self.drift.report(model, version)
                   for version, d in sorted(self.registry.versions_of(model).items())
                   if d.ready]
        doc: dict[str, Any] = {"model": model, "versions": [
            self._with_performance(r, model, int(r["version"])) for r in reports if r]}
        feedback = self.feedback.model(model)
        if feedback is not None:
            doc["labels"] = feedback.labels_report(self.drift.rule(model))
        return json_response(doc)

    async def post_feedback(self, request: Request) -> Response:
        """Ground-truth labels, each with the version and prediction it was served
        (docs/endpoints.md)."""
        model = request.path_params["model"]
        self.registry.check_model(model)
        body = await read_body(request, self.limits.max_body_bytes)
        feedback = self.feedback.model(model)
        if feedback is None:
            raise BadRequest(f"model '{model}' takes no feedback: "
                             f"{self.feedback.why_not(model)}")
        batch = parse_feedback(body, feedback.space,
                               frozenset(self.registry.repository[model]),
                               self.limits.max_feedback_items)
        feedback.fold(batch)
        state = request.scope["state"]
        self.capture.feedback(model, body, state.get("request_id"), state.get("trace_id"))
        if batch.ids:
            logger.debug("feedback for model '%s': %d rows, ids %s", model, batch.rows,
                         ", ".join(batch.ids[:20]))
        return json_response({"accepted": batch.rows})

    async def repository_index(self, request: Request) -> Response:
        """Every version of the repository and its state; `{"ready": true}` keeps the READY
        ones (Triton's repository extension, docs/endpoints.md)."""
        body = await read_body(request, self.limits.max_body_bytes)
        ready_only = False
        if body.strip():
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise BadRequest(f"request body is not valid JSON: {exc}") from None
            if not isinstance(doc, dict) or not isinstance(doc.get("ready", False), bool):
                raise BadRequest('the body is optional; when sent it is {"ready": true} or '
                                 '{"ready": false}')
            ready_only = doc.get("ready", False)
        return json_response([row.to_json()
                              for row in repository_index(self.registry, ready_only)])

    async def metrics_text(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry),
                        media_type=CONTENT_TYPE_LATEST)

    async def live(self, request: Request) -> Response:
        return json_response({"live": True})

    async def ready(self, request: Request) -> Response:
        """503 while a routed model has no ready version with traffic (docs/endpoints.md); other
        versions
        that are not serving are named in the body either way."""
        problems = self.registry.problems()
        out = self.live_policy.out_of_service()
        if out:
            raise Unavailable("not ready: " + "; ".join(out + problems), retry_after_s=5)
        return json_response({"ready": True, "not_serving": problems})

    async def server_metadata(self, request: Request) -> Response:
        return json_response({"name": SERVER_NAME, "version": __version__,
                              "extensions": EXTENSIONS})

    async def model_metadata(self, request: Request) -> Response:
        deployment = self._find(request)
        session = deployment.session
        assert session is not None
        model = deployment.entry.model
        if "version" in request.path_params:
            versions = [str(deployment.entry.version)]
        else:
            versions = [str(v) for v, d in self.registry.versions_of(model).items() if d.ready]
        doc: dict[str, Any] = {
            "name": model,
            "versions": versions,
            "platform": PLATFORM,
            "inputs": [spec.to_json() for spec in session.inputs],
            "outputs": [spec.to_json() for spec in session.outputs],
            "parameters": {
                "version": str(deployment.entry.version),
                "execution_provider": session.provider,
                "execution": deployment.execution,
                "sha256": deployment.entry.sha256,
                "created": str(deployment.entry.manifest.get("created", "")),
                "features": deployment.entry.manifest.get("features", []),
            },
        }
        return json_response(doc)

    async def model_ready(self, request: Request) -> Response:
        deployment = self._find(request)
        return json_response({"name": deployment.entry.model,
                              "version": str(deployment.entry.version), "ready": True})

    async def infer(self, request: Request) -> Response:
        """Read and decode, hand to the data plane (`gateway.inference`), encode."""
        start = time.perf_counter()
        params = request.path_params
        pinned = params.get("version")
        headers = request.headers
        traced = self.tracing.request(
            headers, _PINNED_SPAN if pinned is not None else _ROUTED_SPAN, start)
        state = request.scope["state"]
        if traced.trace_id is not None:
            state["trace_id"] = traced.trace_id

        async def decode(input_names: Mapping[str, frozenset[str]] | None
                         ) -> tuple[InferRequest, int]:
            body = await read_body(request, self.limits.max_body_bytes)
            return decode_request(body, headers.get(HEADER_LENGTH),
                                  self.limits.max_tensor_elements, input_names), len(body)

        return await self.pipeline.infer(InferCall(
            params["model"], pinned, headers, state.get("request_id"), traced, start, decode,
            _infer_response))


_ROUTED_SPAN = "POST /v2/models/{model}/infer"
_PINNED_SPAN = "POST /v2/models/{model}/versions/{version}/infer"


class _Answer(Response):
    """A 200 whose header list is made here in one go (Response's own init builds it from a
    dict, key by key, which cost as much as encoding a 1-row answer)."""

    def __init__(self, body: bytes, raw_headers: list[tuple[bytes, bytes]]) -> None:
        self.status_code = 200
        self.background = None
        self.body = body
        self.raw_headers = raw_headers


_JSON_TYPE = (b"content-type", JSON.encode())
_BINARY_TYPE = (b"content-type", b"application/octet-stream")


def _infer_response(answer: Answer) -> Response:
    request = answer.request
    version = answer.version_label
    content, header_length = encode_response(answer.model, version, request.id,
                                             answer.results, request.outputs,
                                             request.binary_outputs)
    headers = [(b"x-model-version", version.encode("latin-1")),
               (b"x-model-route", answer.route.encode("latin-1"))]
    if header_length is None:
        headers += ((b"content-length", b"%d" % len(content)), _JSON_TYPE)
    else:
        headers += ((HEADER_LENGTH.encode(), b"%d" % header_length),
                    (b"content-length", b"%d" % len(content)), _BINARY_TYPE)
    return _Answer(content, headers)
