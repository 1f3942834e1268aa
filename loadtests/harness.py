"""What every benchmark stands on: servers on loopback ports, their configs, the loads sent to
them, alternating measurement, and the tables the benchmarks return."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import orjson
import yaml

ROOT = Path(__file__).resolve().parent.parent
MODEL = "breast-cancer"
MODEL_FILE = ROOT / "models" / MODEL / "2" / "model.onnx"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A server subprocess on a loopback port, its output in a log file; CPU time and RSS read
    from /proc. Shared by the benchmarks and the integration tests (GatewayProcess)."""

    def __init__(self, name: str, command: list[str], port: int, log_dir: Path,
                 env: dict[str, str] | None = None, start_timeout_s: float = 60.0) -> None:
        self.name, self.port = name, port
        self.log_path = log_dir / f"{name}.log"
        self.log_file = self.log_path.open("wb")
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=self.log_file,
                                        stderr=subprocess.STDOUT,
                                        env={**os.environ, **(env or {})})
        deadline = time.monotonic() + start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log_file.flush()
                raise RuntimeError(f"{name} exited with {self.process.returncode}:\n"
                                   f"{self.log_path.read_text(errors='replace')[-4000:]}")
            if self.listening():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{name} did not start in {start_timeout_s:g} s")

    def listening(self) -> bool:
        """Whether the server takes connections (a subclass may ask for more)."""
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def rss_mib(self) -> float:
        pages = int(Path(f"/proc/{self.process.pid}/statm").read_text().split()[1])
        return pages * PAGE_BYTES / 2**20

    def stop(self) -> int:
        """SIGTERM (the gateway drains), SIGKILL past 30 s; the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()
        return self.process.returncode


@dataclass(frozen=True)
class Load:
    name: str
    body: bytes
    headers: dict[str, str]
    rows: int
    fresh_key: str | None = None
    """A header given a new random value on every request (a sticky key of many users)."""


def make_loads(rows_1: np.ndarray, rows_32: np.ndarray) -> list[Load]:
    def json_body(rows: np.ndarray) -> bytes:
        return orjson.dumps({"inputs": [{"name": "input", "shape": list(rows.shape),
                                         "datatype": "FP32", "data": rows.ravel().tolist()}]})

    header = orjson.dumps({"inputs": [{"name": "input", "shape": list(rows_32.shape),
                                       "datatype": "FP32",
                                       "parameters": {"binary_data_size": rows_32.nbytes}}]})
    return [
        Load("1-row JSON", json_body(rows_1), {"Content-Type": "application/json"}, 1),
        Load("32-row JSON", json_body(rows_32), {"Content-Type": "application/json"}, 32),
        Load("32-row binary", header + rows_32.tobytes(),
             {"Content-Type": "application/octet-stream",
              "Inference-Header-Content-Length": str(len(header))}, 32),
    ]


def write_gateway_config(config_dir: Path, repository: Path, routing: Any = None,
                         **settings: Any) -> Path:
    """`gateway.yaml` and `routing.yaml` in `config_dir` (made if missing): the repository,
    the routing policy (a mapping, or YAML text as given), execution on the CPU, and any other
    settings by key. The one writer of gateway configs, for the benchmarks and the tests."""
    config_dir.mkdir(parents=True, exist_ok=True)
    routing = {"models": {}} if routing is None else routing
    (config_dir / "routing.yaml").write_text(
        routing if isinstance(routing, str) else yaml.safe_dump(routing))
    doc = {"model_repository": str(repository), "routing": "routing.yaml",
           "execution_provider": "cpu", **settings}
    (config_dir / "gateway.yaml").write_text(yaml.safe_dump(doc))
    return config_dir / "gateway.yaml"


SERVING_VERSION_2 = {"models": {MODEL: {"traffic": [{"version": 2, "weight": 100}]}}}
"""What the tables measure: version 2 (the model the reference app and onnxruntime's own table
run) at 100%, never the user's config/ (the README's walk-throughs edit it)."""


def bench_config(work_dir: Path, name: str, **settings: Any) -> Path:
    """A gateway config of the tables: the shipped repository, version 2 at 100%."""
    return write_gateway_config(work_dir / name, ROOT / "models", SERVING_VERSION_2, **settings)


def start_gateway(name: str, config: Path, work_dir: Path,
                  env: dict[str, str] | None = None, grpc_port: int = 0) -> Server:
    """A gateway on a free port; gRPC only on `grpc_port` when given (8001 is everyone's)."""
    port = free_port()
    return Server(name, [sys.executable, "-m", "gateway", "serve", "--config", str(config),
                         "--host", "127.0.0.1", "--port", str(port),
                         "--grpc-port", str(grpc_port)], port, work_dir, env)


def alternate(servers: list[tuple[str, Server]], measure: Callable[[Server], T],
              rounds: int = 3) -> list[list[T]]:
    """Measure A, B, A, B, ...: both servers see the machine in the same states, so a drift
    in the machine's load over the run does not pass for a difference between them."""
    results: list[list[T]] = [[] for _ in servers]
    for _ in range(rounds):
        for i, (_, server) in enumerate(servers):
            results[i].append(measure(server))
    return results


@dataclass
class Table:
    """One table of `make bench`: what it printed before, now data a caller can read."""

    title: str
    header: list[str]
    rows: list[list[str]]

    def print(self) -> None:
        widths = [max(len(h), *(len(r[i]) for r in self.rows))
                  for i, h in enumerate(self.header)]
        print(f"\n{self.title}")
        print("  ".join(h.ljust(w) for h, w in zip(self.header, widths, strict=True)))
        print("  ".join("-" * w for w in widths))
        for row in self.rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        sys.stdout.flush()


@dataclass
class Context:
    """What the tables share within one run."""

    args: argparse.Namespace
    loads: list[Load]
    rows_1: np.ndarray
    rows_32: np.ndarray
    work_dir: Path
    floor_us: dict[tuple[int, int], float] = field(default_factory=dict)
    """(rows, intra-op threads) -> onnxruntime's own median µs per call, measured once."""

    def floor(self, rows: int, intra_op: int = 1) -> float:
        from loadtests.models import onnxruntime_call_us

        key = (rows, intra_op)
        if key not in self.floor_us:
            data = self.rows_1 if rows == 1 else self.rows_32
            self.floor_us[key] = onnxruntime_call_us(str(MODEL_FILE), data, intra_op)
        return self.floor_us[key]
