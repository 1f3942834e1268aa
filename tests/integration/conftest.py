from __future__ import annotations

import gzip
import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.conftest import shipped_config
from tests.integration.server import GatewayProcess

Start = Callable[..., GatewayProcess]


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """The gateway as `make serve` starts it: shipped config (as committed, never the working
    tree's, which users edit) and models."""
    server = GatewayProcess(shipped_config(tmp_path_factory.mktemp("shipped")),
                            tmp_path_factory.mktemp("logs"))
    yield server
    server.stop()


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """Start gateways on given config files; all are stopped after the test."""
    started: list[GatewayProcess] = []

    def run(config: Path, **kwargs: object) -> GatewayProcess:
        server = GatewayProcess(config, tmp_path, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield run
    for server in started:
        server.stop()


class OtlpCollector(http.server.ThreadingHTTPServer):
    """A minimal OTLP/HTTP trace receiver: keeps (service name, span) of every export."""

    spans: list[tuple[bytes, Span]]


class _OtlpHandler(http.server.BaseHTTPRequestHandler):
    server: OtlpCollector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            service = next(a.value.string_value for a in resource_spans.resource.attributes
                           if a.key == "service.name")
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.server.spans.append((service.encode(), span))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[OtlpCollector]:
    server = OtlpCollector(("127.0.0.1", 0), _OtlpHandler)
    server.spans = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
