"""`inference.GRPCInferenceService` (Triton's and KServe's V2 gRPC API) and `grpc.health.v1.Health`
on the same data plane as HTTP (docs/endpoints.md, gRPC).

Each method is a thin shell, as the HTTP endpoints are. ModelInfer: start the span, hand the
data plane (`gateway.inference`) a call whose decode and encode are this transport's; its errors
become status codes by one table (`gateway.grpc.errors`), with the same messages. Routing keys,
flags and `traceparent` come from the call's metadata as they come from HTTP headers; the request
id and the version that served go back as trailing metadata. Handlers are registered under the
service's own name with the messages of `v2.proto`; the methods the gateway does not implement
answer UNIMPLEMENTED and say what to use instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from gateway import __version__
from gateway.errors import GatewayError, shown
from gateway.grpc import v2_pb2 as pb
from gateway.grpc.codec import decode_infer, encode_infer
from gateway.grpc.errors import status_code
from gateway.http.middleware import RequestIds, access_logger
from gateway.inference import CANCELLED, Answer, InferCall, InferencePipeline
from gateway.observability.tracing import Tracing
from gateway.protocol.request import InferRequest
from gateway.routing.live import LivePolicy
from gateway.runtime.index import repository_index
from gateway.runtime.registry import Deployment, Registry, parse_version
from gateway.settings import LimitSettings

logger = logging.getLogger("gateway.grpc")
SERVICE = "inference.GRPCInferenceService"
HEALTH = "grpc.health.v1.Health"
SERVER_NAME = "gateway"
EXTENSIONS = ("binary_tensor_data",)
PLATFORM = "onnxruntime_onnx"
WATCH_INTERVAL_S = 1.0
"""How often a health Watch stream looks at readiness again."""
_REQUEST_ID = "x-request-id"
_ROUTED_SPAN = "inference.GRPCInferenceService/ModelInfer"
_PINNED_SPAN = "inference.GRPCInferenceService/ModelInfer (pinned)"

UNIMPLEMENTED = {
    "ModelConfig": "ModelMetadata has the inputs and outputs",
    "ModelStatistics": "the gateway's metrics are on GET /metrics of its HTTP port",
    "RepositoryModelLoad": "the routing policy (config/routing.yaml) loads versions",
    "RepositoryModelUnload": "the routing policy (config/routing.yaml) unloads versions",
    "SystemSharedMemoryStatus": "send tensors in the request",
    "SystemSharedMemoryRegister": "send tensors in the request",
    "SystemSharedMemoryUnregister": "send tensors in the request",
    "CudaSharedMemoryStatus": "send tensors in the request",
    "CudaSharedMemoryRegister": "send tensors in the request",
    "CudaSharedMemoryUnregister": "send tensors in the request",
    "TraceSetting": "tracing is set by the OTEL_* environment variables",
    "LogSettings": "logging is set at start-up",
}
"""Triton's methods the gateway does not answer, and what to use instead."""
STREAMING = {"ModelStreamInfer": "call ModelInfer once per request"}


def metadata_of(context: grpc.aio.ServicerContext) -> dict[str, str]:
    """The call's metadata as lower-case names to text values (binary `-bin` ones left out).
    A name sent more than once counts by its first value, as a repeated HTTP header does
    (Starlette's `Headers.get`), so a request routes the same over either transport."""
    metadata: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if isinstance(value, str) and key not in metadata:
            metadata[key] = value
    return metadata


class InferenceService:
    def __init__(self, registry: Registry, limits: LimitSettings, live: LivePolicy,
                 pipeline: InferencePipeline, tracing: Tracing, access_log: bool = False) -> None:
        """`access_log`: one line per ModelInfer call (`server.access_log`), as HTTP writes."""
        self._registry = registry
        self._live = live
        self._pipeline = pipeline
        self._tracing = tracing
        self._max_elements = limits.max_tensor_elements
        self._ids = RequestIds()
        self._stopping = asyncio.Event()
        self._access_log = access_log

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        """The generic handlers of both services, for `server.add_generic_rpc_handlers`."""
        methods: dict[str, grpc.RpcMethodHandler] = {
            "ServerLive": _unary(self.server_live, pb.ServerLiveRequest),
            "ServerReady": _unary(self.server_ready, pb.ServerReadyRequest),
            "ModelReady": _unary(self.model_ready, pb.ModelReadyRequest),
            "ServerMetadata": _unary(self.server_metadata, pb.ServerMetadataRequest),
            "ModelMetadata": _unary(self.model_metadata, pb.ModelMetadataRequest),
            "ModelInfer": _unary(self.model_infer, pb.ModelInferRequest),
            "RepositoryIndex": _unary(self.repository_index, pb.RepositoryIndexRequest),
        }
        for name, instead in UNIMPLEMENTED.items():
            methods[name] = grpc.unary_unary_rpc_method_handler(_unimplemented(name, instead))
        for name, instead in STREAMING.items():
            methods[name] = grpc.stream_stream_rpc_method_handler(
                _unimplemented_stream(name, instead))
        health = {"Check": _unary(self.health_check, health_pb2.HealthCheckRequest),
                  "Watch": grpc.unary_stream_rpc_method_handler(
                      self.health_watch,
                      request_deserializer=health_pb2.HealthCheckRequest.FromString,
                      response_serializer=_serialize)}
        return [grpc.method_handlers_generic_handler(SERVICE, methods),
                grpc.method_handlers_generic_handler(HEALTH, health)]

    async def server_live(self, request: pb.ServerLiveRequest,
                          context: grpc.aio.ServicerContext) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(self, request: pb.ServerReadyRequest,
                           context: grpc.aio.ServicerContext) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=not self._live.out_of_service())

    async def health_check(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Readiness, as GET /v2/health/ready answers it, for Kubernetes' `grpc:` probes."""
        if request.service not in ("", SERVICE):
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"no service {request.service[:80]!r}; ask for '' or {SERVICE}")
        serving = not self._live.out_of_service()
        return health_pb2.HealthCheckResponse(
            status=health_pb2.HealthCheckResponse.SERVING if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING)

    def stopping(self) -> None:
        """The server is shutting down: health Watch streams say NOT_SERVING and end."""
        self._stopping.set()

    async def health_watch(self, request: Any, context: grpc.aio.ServicerContext
                           ) -> AsyncIterator[Any]:
        """Readiness as a stream: the status now, then each change (checked every
        WATCH_INTERVAL_S), NOT_SERVING when the server shuts down. An unknown service is
        SERVICE_UNKNOWN and the stream stays open, as the health protocol says."""
        response = health_pb2.HealthCheckResponse
        known = request.service in ("", SERVICE)
        last = None
        while True:
            if self._stopping.is_set():
                status = response.NOT_SERVING if known else response.SERVICE_UNKNOWN
            elif not known:
                status = response.SERVICE_UNKNOWN
            else:
                status = (response.NOT_SERVING if self._live.out_of_service()
                          else response.SERVING)
            if status != last:
                yield response(status=status)
                last = status
            if self._stopping.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), WATCH_INTERVAL_S)

    async def server_metadata(self, request: pb.ServerMetadataRequest,
                              context: grpc.aio.ServicerContext) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=__version__,
                                         extensions=EXTENSIONS)

    def _find(self, model: str, version: str) -> Deployment:
        if version:
            return self._registry.find(model, parse_version(version))
        self._registry.check_model(model)
        return self._registry.find(model, self._live.version_for_model(model))

    async def model_ready(self, request: pb.ModelReadyRequest,
                          context: grpc.aio.ServicerContext) -> pb.ModelReadyResponse:
        """Ready or not; an unknown model or version is not ready (as tritonclient reads it)."""
        try:
            self._find(request.name, request.version)
        except GatewayError:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    async def model_metadata(self, request: pb.ModelMetadataRequest,
                             context: grpc.aio.ServicerContext) -> pb.ModelMetadataResponse:
        try:
            deployment = self._find(request.name, request.version)
        except GatewayError as exc:
            await context.abort(status_code(exc.status), exc.message)
            raise
        session = deployment.session
        assert session is not None
        if request.version:
            versions = [str(deployment.entry.version)]
        else:
            versions = [str(v) for v, d in self._registry.versions_of(request.name).items()
                        if d.ready]
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=request.name, versions=versions, platform=PLATFORM,
            inputs=[tensor(name=s.name, datatype=s.datatype, shape=s.shape)
                    for s in session.inputs],
            outputs=[tensor(name=s.name, datatype=s.datatype, shape=s.shape)
                     for s in session.outputs])

    async def repository_index(self, request: pb.RepositoryIndexRequest,
                               context: grpc.aio.ServicerContext) -> pb.RepositoryIndexResponse:
        index = pb.RepositoryIndexResponse.ModelIndex
        return pb.RepositoryIndexResponse(models=[
            index(name=row.name, version=row.version, state=row.state, reason=row.reason)
            for row in repository_index(self._registry, request.ready)])

    async def model_infer(self, message: pb.ModelInferRequest,
                          context: grpc.aio.ServicerContext) -> pb.ModelInferResponse:
        """Decode, hand to the data plane, encode; errors become status codes."""
        start = time.perf_counter()
        headers = metadata_of(context)
        request_id = headers.get(_REQUEST_ID, "")[:128] or self._ids.next().decode()
        pinned = message.model_version or None
        traced = self._tracing.request(headers, _PINNED_SPAN if pinned else _ROUTED_SPAN, start)
        max_elements = self._max_elements

        async def decode(input_names: Mapping[str, frozenset[str]] | None
                         ) -> tuple[InferRequest, int]:
            return decode_infer(message, max_elements, input_names), message.ByteSize()

        def encode(answer: Answer) -> pb.ModelInferResponse:
            context.set_trailing_metadata(((_REQUEST_ID, request_id),
                                           ("x-model-version", answer.version_label),
                                           ("x-model-route", answer.route)))
            return encode_infer(answer.model, answer.version_label, answer.request,
                                answer.results)

        status = 500
        try:
            answer = await self._pipeline.infer(InferCall(
                message.model_name, pinned, headers, request_id, traced, start, decode, encode))
            status = 200
            return answer
        except GatewayError as exc:
            status = exc.status
            if exc.status >= 500:
                logger.warning("ModelInfer: %s", exc.message)
            await context.abort(status_code(exc.status), exc.message,
                                trailing_metadata=((_REQUEST_ID, request_id),))
            raise
        except asyncio.CancelledError:
            status = CANCELLED
            raise
        finally:
            if self._access_log:  # HTTP's line (gateway.http.middleware), the call's status
                access_logger.info(
                    '%s "gRPC ModelInfer %s" %d %.2fms request_id=%s trace_id=%s',
                    context.peer(), shown(message.model_name), status,
                    (time.perf_counter() - start) * 1e3, request_id, traced.trace_id or "-")


def _serialize(answer: Any) -> bytes:
    return bytes(answer.SerializeToString())


def _unary(method: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]],
           message: Any) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(
        method, request_deserializer=message.FromString, response_serializer=_serialize)


def _unimplemented(name: str, instead: str) -> Callable[[bytes, grpc.aio.ServicerContext],
                                                          Awaitable[bytes]]:
    async def refuse(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED,
                            f"{name} is not implemented by this gateway: {instead}")
        raise AssertionError("abort raises")
    return refuse


def _unimplemented_stream(name: str, instead: str) -> Callable[[Any, Any], Any]:
    async def refuse(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED,
                            f"{name} is not implemented by this gateway: {instead}")
        yield b""  # a generator, as a streaming handler is; never reached
    return refuse

