"""Two replicas behind a real load balancer (Debian's haproxy) with one shared routing file and
model repository, and one real Prometheus scraping both: replicas agree on sticky keys and apply
the same edit, counters and drift add up across them in Prometheus, and killing one replica
mid-traffic loses no request the balancer can retry. Each on a fleet of its own."""

from __future__ import annotations

import http.client
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import yaml
from sklearn.datasets import load_breast_cancer

from gateway.observability.drift import DriftMonitor
from tests.conftest import MODEL, MODELS, ConfigWriter
from tests.integration.conftest import Start
from tests.integration.server import GatewayProcess, free_port
from tests.integration.test_prometheus import Prometheus, needs_prometheus

pytestmark = [needs_prometheus, pytest.mark.skipif(
    shutil.which("haproxy") is None,
    reason="haproxy is not installed: apt-get install haproxy (.ci/run installs it)")]

INFER = f"/v2/models/{MODEL}/infer"


def policy(v1: int, v2: int) -> dict[str, Any]:
    return {"models": {MODEL: {"sticky_key": "x-user-id",
                               "traffic": [{"version": 1, "weight": v1},
                                           {"version": 2, "weight": v2}]}}}


class Balancer:
    """haproxy in front of the replicas: round robin, health checks on /v2/health/ready, and
    retries (with redispatch to the other replica) of requests that failed for retryable
    reasons: a refused or reset connection, an empty answer."""

    def __init__(self, ports: list[int], work: Path) -> None:
        self.port = free_port()
        servers = "\n".join(f"  server r{i} 127.0.0.1:{port} check inter 200ms fall 1 rise 2"
                            for i, port in enumerate(ports))
        config = work / "haproxy.cfg"
        config.write_text(f"""global
  maxconn 512
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  retries 3
  option redispatch 1
  retry-on conn-failure empty-response response-timeout
  option http-buffer-request
frontend gateway
  bind 127.0.0.1:{self.port}
  default_backend replicas
backend replicas
  balance roundrobin
  option httpchk GET /v2/health/ready
{servers}
""")
        self.log = (work / "haproxy.log").open("wb")
        self.process = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdout=self.log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                if request(self.port, "GET", "/v2/health/ready")[0] == 200:
                    return
            except OSError:
                pass
            assert self.process.poll() is None, (work / "haproxy.log").read_text()
            assert time.monotonic() < deadline, "haproxy did not start"
            time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self.log.close()


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        conn.close()


def body(rows: np.ndarray) -> bytes:
    return orjson.dumps({"inputs": [{"name": "input", "shape": list(rows.shape),
                                     "datatype": "FP32", "data": rows.ravel().tolist()}]})


@pytest.fixture
def fleet(write_config: ConfigWriter, start: Start,
          tmp_path: Path) -> Iterator[tuple[list[GatewayProcess], Balancer, Path]]:
    config = write_config(MODELS, routing=policy(50, 50), drift={"report_interval_s": 0.2})
    replicas = [start(config), start(config)]  # one config: one routing file, one repository
    balancer = Balancer([r.port for r in replicas], tmp_path)
    yield replicas, balancer, config.parent / "routing.yaml"
    balancer.stop()


Fleet = tuple[list[GatewayProcess], Balancer, Path]
ROW = body(load_breast_cancer().data[:1].astype(np.float32))


def test_a_sticky_key_gets_one_version_on_every_replica(fleet: Fleet) -> None:
    replicas, balancer, _ = fleet
    for key in (f"user-{i}" for i in range(40)):
        headers = {"x-user-id": key}
        seen = {replica.request("POST", INFER, ROW, headers).headers["x-model-version"]
                for replica in replicas}
        seen |= {request(balancer.port, "POST", INFER, ROW, headers)[1]["x-model-version"]
                 for _ in range(4)}
        assert len(seen) == 1, (key, seen)


def test_one_edit_of_the_shared_file_reaches_every_replica_within_2_s(fleet: Fleet) -> None:
    replicas, _, routing = fleet
    tmp = routing.with_name(".routing.tmp")
    tmp.write_text(yaml.safe_dump(policy(0, 100)))
    tmp.replace(routing)
    edited = time.monotonic()
    pending = set(range(len(replicas)))
    while pending:
        for i in list(pending):
            metrics = replicas[i].request("GET", "/metrics").body.decode()
            if f'gateway_route_weight{{model="{MODEL}",version="2"}} 100.0' in metrics:
                pending.discard(i)
        assert time.monotonic() - edited < 2.0, f"replicas {pending} not applied in 2 s"
        time.sleep(0.02)


def test_counters_and_drift_add_up_across_replicas_in_prometheus(fleet: Fleet,
                                                                 tmp_path: Path) -> None:
    replicas, balancer, _ = fleet
    prometheus = Prometheus(targets=[r.url for r in replicas], work=tmp_path)
    try:
        data = load_breast_cancer().data.astype(np.float32)
        shifted = data.copy()
        shifted[:, 0] *= 1.6  # "mean radius"
        sent = 0
        for begin in range(0, len(shifted), 16):  # round robin: half to each replica
            status, _, _ = request(balancer.port, "POST",
                                   f"/v2/models/{MODEL}/versions/2/infer",
                                   body(shifted[begin:begin + 16]))
            assert status == 200
            sent += 1
        answered = {r.url: metric(r, f'gateway_requests_total{{code="200",model="{MODEL}",'
                                     'route="pinned",version="2"}') for r in replicas}
        assert all(count > 0 for count in answered.values()), answered  # both answered
        expected_psi = union_psi(shifted)
        deadline = time.monotonic() + 30
        while True:  # until Prometheus has scraped both after their drift reports
            total = prometheus.value(f'sum(gateway_requests_total{{model="{MODEL}",'
                                     'route="pinned",version="2"})')
            fleet_psi = prometheus.value(f'gateway:fleet_drift_psi{{model="{MODEL}",'
                                         'version="2",feature="mean radius"}')
            if total == sent and fleet_psi is not None and \
                    abs(fleet_psi - expected_psi) < 1e-6:
                break
            assert time.monotonic() < deadline, (total, sent, fleet_psi, expected_psi)
            time.sleep(0.2)
        calm = prometheus.value(f'gateway:fleet_drift_psi{{model="{MODEL}",version="2",'
                                'feature="mean texture"}')
        assert calm is not None and abs(calm - union_psi(shifted, "mean texture")) < 1e-6
        assert calm < expected_psi and expected_psi >= 0.2
    finally:
        prometheus.stop()


def test_killing_a_replica_mid_traffic_loses_no_request(fleet: Fleet) -> None:
    replicas, balancer, _ = fleet
    results: list[int] = []
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            try:
                results.append(request(balancer.port, "POST", INFER, ROW)[0])
            except OSError:  # a connection the balancer did not save is a lost request
                results.append(-1)

    threads = [threading.Thread(target=traffic) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(results) >= 40)  # traffic flows through both
        replicas[0].process.send_signal(signal.SIGKILL)
        killed_at = len(results)
        wait_until(lambda: replicas[0].process.poll() is not None)
        wait_until(lambda: len(results) >= killed_at + 100)  # and goes on after the kill
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert set(results) == {200}, {code: results.count(code) for code in set(results)}


def wait_until(condition: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.02)


def metric(replica: GatewayProcess, line_start: str) -> float:
    for line in replica.request("GET", "/metrics").body.decode().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def union_psi(rows: np.ndarray, feature: str = "mean radius") -> float:
    """A feature's PSI over every row, as one monitor holding all of them would say."""
    monitor = DriftMonitor.from_reference_file(MODELS / MODEL / "2" / "reference.json")
    monitor.ingest(rows)
    report = monitor.report()
    return float(next(f["psi"] for f in report["features"] if f["name"] == feature))
