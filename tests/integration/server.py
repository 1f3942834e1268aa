"""Start the real gateway (`python -m gateway serve`) on a free loopback port: the benchmarks'
server process (loadtests.harness.Server), with what the tests ask of it on top."""

from __future__ import annotations

import http.client
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests.harness import Server, free_port

__all__ = ["GatewayProcess", "Reply", "free_port"]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class GatewayProcess(Server):
    """A gateway subprocess; `request` speaks raw HTTP/1.1 to it."""

    def __init__(self, config: Path | None, log_dir: Path,
                 env: dict[str, str] | None = None, wrap: list[str] | None = None,
                 port: int | None = None, grpc: bool = False) -> None:
        """`wrap`: a command the gateway's is appended to (e.g. `unshare ...`); `port`: a
        given port (a replica restarted where it was), else a free one; `grpc`: serve gRPC
        too, on a free port (`grpc_url`), else not at all (the default port 8001 is shared by
        every gateway the tests start)."""
        port = port or free_port()
        self.url = f"127.0.0.1:{port}"
        self.grpc_port = free_port() if grpc else 0
        self.grpc_url = f"127.0.0.1:{self.grpc_port}"
        super().__init__(f"gateway-{port}", [
            *(wrap or []), sys.executable, "-m", "gateway", "serve",
            *(["--config", str(config)] if config else []),
            "--host", "127.0.0.1", "--port", str(port), "--grpc-port", str(self.grpc_port)],
            port, log_dir, env)

    def listening(self) -> bool:
        try:
            return self.request("GET", "/v2/health/live").status == 200
        except OSError:
            return False

    def log(self) -> str:
        if not self.log_file.closed:
            self.log_file.flush()
        return self.log_path.read_text(errors="replace")

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout_s: float = 30.0) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()},
                         response.read())
        finally:
            conn.close()

    def metric(self, sample: str) -> float:
        """The value of one sample of /metrics, named with its labels in Prometheus' order
        (e.g. `gateway_config_reloads_total{result="error"}`); 0 when it is not there."""
        for line in self.request("GET", "/metrics").body.decode().splitlines():
            name, _, value = line.rpartition(" ")
            if name == sample:
                return float(value)
        return 0.0
