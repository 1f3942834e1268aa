"""The gRPC server: `grpc.aio` on the HTTP server's event loop, started and stopped with the app.

Its messages are bounded as HTTP bodies are: `grpc.max_receive_message_length` is
`limits.max_body_bytes`, so a larger message is refused (RESOURCE_EXHAUSTED) before it is
decoded (by gRPC itself, before the gateway sees the call: it is not counted in
gateway_requests_total, as HTTP's 413 is). On shutdown (SIGTERM) it stops taking calls at the
moment HTTP does, and lets those in flight finish within `server.shutdown_grace_s`, in the same
grace as HTTP's drain, before the data plane stops; health Watch streams end with NOT_SERVING.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
from types import FrameType
from typing import Any

import grpc

from gateway.errors import PortTaken
from gateway.grpc.service import InferenceService
from gateway.settings import Settings

logger = logging.getLogger("gateway.grpc")


def ensure_port_free(host: str, port: int) -> None:
    """Refuse at once, before any model loads, when something listens on the gRPC port: a
    plain bind (no SO_REUSEPORT, which grpcio sets and would share the port) must succeed."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no owner
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise PortTaken(f"cannot listen for gRPC on {host}:{port}: the port is taken "
                            f"({exc.strerror}); pick another with --grpc-port (0 turns gRPC "
                            "off)") from None


class GrpcServer:
    def __init__(self, service: InferenceService, settings: Settings, host: str,
                 port: int, reuse_port: bool = False) -> None:
        """`reuse_port`: share the port with the other workers of a group (`server.workers`);
        off, a second gateway on the port fails, as HTTP does."""
        self._service = service
        self._settings = settings
        self._address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._server: grpc.aio.Server | None = None
        self._stopping: asyncio.Task[None] | None = None
        self._reuse_port = reuse_port

    async def start(self) -> None:
        limits = self._settings.limits
        server = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", limits.max_body_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 1 if self._reuse_port else 0),
        ])
        server.add_generic_rpc_handlers(self._service.handlers())
        try:  # grpcio raises on a taken port (older versions returned 0)
            bound = server.add_insecure_port(self._address)
        except RuntimeError:
            bound = 0
        if not bound:
            raise OSError(f"cannot listen for gRPC on {self._address}: the port is taken; pick "
                          "another with --grpc-port (0 turns gRPC off)")
        await server.start()
        self._server = server
        logger.info("serving gRPC (inference.GRPCInferenceService) on %s", self._address)

    def drain_on_signals(self) -> None:
        """Start draining as soon as SIGTERM or SIGINT arrives, beside uvicorn's own handlers
        (installed before the app starts, restored after it stops): gRPC stops taking calls
        when HTTP does, and both drain within one grace, not one after the other."""
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)

            def handle(number: int, frame: FrameType | None, previous: Any = previous) -> None:
                loop.call_soon_threadsafe(self.begin_stop)
                if callable(previous):
                    previous(number, frame)
            signal.signal(sig, handle)

    def begin_stop(self) -> None:
        """Refuse new calls now; the calls in flight go on (idempotent)."""
        if self._stopping is None and self._server is not None:
            self._service.stopping()
            self._stopping = asyncio.ensure_future(
                self._server.stop(self._settings.server.shutdown_grace_s))

    async def stop(self) -> None:
        """Refuse new calls, let those in flight finish within the shutdown grace."""
        self.begin_stop()
        if self._stopping is not None:
            await self._stopping
        self._server = None
