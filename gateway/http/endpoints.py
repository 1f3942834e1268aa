"""The Open Inference Protocol endpoints (SPEC section 3): health, metadata and inference.

Each endpoint is a thin shell: find the deployment, decode, validate, hand to its batcher, encode.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import __version__
from gateway.deployments import Deployment, Deployments, parse_version
from gateway.errors import Unavailable
from gateway.http.body import read_body
from gateway.http.responses import JSON, json_response
from gateway.protocol.request import decode_request
from gateway.protocol.response import encode_response
from gateway.protocol.validate import check_request

SERVER_NAME = "gateway"
EXTENSIONS = ["binary_tensor_data"]
PLATFORM = "onnxruntime_onnx"
HEADER_LENGTH = "inference-header-content-length"


class Endpoints:
    def __init__(self, deployments: Deployments) -> None:
        self.deployments = deployments
        self.limits = deployments.settings.limits
        self.default_timeout_us = deployments.settings.batching.default_timeout_us

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
        ]

    def _find(self, request: Request) -> Deployment:
        version = request.path_params.get("version")
        return self.deployments.find(request.path_params["model"],
                                     parse_version(version) if version is not None else None)

    async def live(self, request: Request) -> Response:
        return json_response({"live": True})

    async def ready(self, request: Request) -> Response:
        problems = self.deployments.problems()
        if problems:
            raise Unavailable("not ready: " + "; ".join(problems), retry_after_s=5)
        return json_response({"ready": True})

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
            versions = [str(v) for v, d in self.deployments.versions_of(model).items() if d.ready]
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
        deployment = self._find(request)
        session, batcher = deployment.session, deployment.batcher
        assert session is not None and batcher is not None
        body = await read_body(request, self.limits.max_body_bytes)
        infer_request = decode_request(body, request.headers.get(HEADER_LENGTH),
                                       self.limits.max_tensor_elements)
        check_request(infer_request, session.inputs, session.outputs, self.limits.max_batch_rows)
        first = next(iter(infer_request.inputs.values()))
        rows = first.shape[0] if first.ndim else 1
        results = await batcher.submit(infer_request.inputs, rows,
                                       infer_request.timeout_us or self.default_timeout_us)
        version = str(deployment.entry.version)
        content, header_length = encode_response(
            deployment.entry.model, version, infer_request.id, results, infer_request.outputs,
            infer_request.binary_outputs)
        headers = {"x-model-version": version}
        if header_length is None:
            return Response(content, headers=headers, media_type=JSON)
        headers["inference-header-content-length"] = str(header_length)
        return Response(content, headers=headers, media_type="application/octet-stream")
