"""The gRPC server: `grpc.aio` on the HTTP server's event loop, started and stopped with the app.

Its messages are bounded as HTTP bodies are: `grpc.max_receive_message_length` is
`limits.max_body_bytes`, so a larger message is refused (RESOURCE_EXHAUSTED) before it is
decoded. On shutdown (SIGTERM) it stops taking calls and lets those in flight finish within
`server.shutdown_grace_s`, before the data plane stops.
"""

from __future__ import annotations

import logging

import grpc

from gateway.grpc.service import InferenceService
from gateway.settings import Settings

logger = logging.getLogger("gateway.grpc")


class GrpcServer:
    def __init__(self, service: InferenceService, settings: Settings, host: str,
                 port: int) -> None:
        self._service = service
        self._settings = settings
        self._address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        limits = self._settings.limits
        server = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", limits.max_body_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),  # a second gateway on the port fails, as HTTP does
        ])
        server.add_generic_rpc_handlers(self._service.handlers())
        bound = server.add_insecure_port(self._address)
        if not bound:
            raise OSError(f"cannot listen for gRPC on {self._address}: the port is taken; pick "
                          "another with --grpc-port (0 turns gRPC off)")
        await server.start()
        self._server = server
        logger.info("serving gRPC (inference.GRPCInferenceService) on %s", self._address)

    async def stop(self) -> None:
        """Refuse new calls, let those in flight finish within the shutdown grace."""
        if self._server is not None:
            await self._server.stop(self._settings.server.shutdown_grace_s)
            self._server = None
