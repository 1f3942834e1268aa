"""`gateway rollout` under real operations: real gateways (one restarted on its port), the real
controller process, routing files as editors and ConfigMaps write them, and people editing the
file while it runs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
import yaml

from tests.conftest import MODEL, ConfigWriter, sample_rows
from tests.integration.conftest import Start
from tests.integration.server import GatewayProcess, free_port
from tests.integration.test_rollout import label, wait_for_metric

PLAN = """\
    rollout:
      baseline: 1
      canary: {canary}
      steps: [5, 50, 100]
      step_s: 1
      max_step_s: 600
      gates: {{accuracy_margin: 0.02}}
"""


def routing(canary_weight: int = 0, canary: int = 2) -> str:
    return f"""\
# Kept by the controller: comments, order, style.
models:
  {MODEL}:
    traffic:
      - {{version: 1, weight: {100 - canary_weight}}}
      - {{version: {canary}, weight: {canary_weight}}}
    sticky_key: x-user-id
{PLAN.format(canary=canary)}"""


class Running:
    """A `gateway rollout` process checking every 0.3 s, its JSON lines in a log file."""

    def __init__(self, config: Path, urls: list[str], log: Path, *flags: str) -> None:
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "rollout", "--config", str(config), "--metrics",
             *urls, "--check-s", "0.3", "--log", str(log), *flags],
            stderr=subprocess.PIPE, text=True)

    def lines(self) -> list[dict[str, object]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def stop(self) -> str:
        self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=30)
        assert self.process.returncode == 0, err
        return err


@pytest.fixture
def running() -> Iterator[Callable[..., Running]]:
    made: list[Running] = []

    def make(*args: object) -> Running:
        made.append(Running(*args))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for one in made:
        if one.process.poll() is None:
            one.process.kill()
            one.process.wait()


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def status_of(path: Path) -> dict[str, object]:
    found = yaml.safe_load(path.read_text())["models"][MODEL].get("rollout_status")
    return dict(found or {})


def weights_of(path: Path) -> dict[int, int]:
    entry = yaml.safe_load(path.read_text())["models"][MODEL]
    return {t["version"]: t["weight"] for t in entry["traffic"]}


class Labels:
    """Ground truth for both versions, 98% right, arriving in the background."""

    def __init__(self, servers: Callable[[], list[GatewayProcess]],
                 versions: tuple[int, ...] = (1, 2)) -> None:
        self.servers, self.versions = servers, versions
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            for server in self.servers():
                for version in self.versions:
                    # A replica restarting is missed; the next round reaches it.
                    with contextlib.suppress(OSError, AssertionError):
                        label(server, version, 500, 0.98)
            self.stopping.wait(0.2)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()


def test_a_replica_restart_is_read_as_a_restart_not_as_evidence(
        write_config: ConfigWriter, start: Start, tmp_path: Path,
        running: Callable[..., Running]) -> None:
    """Item 2: the canary's rows from before the step sit on replica A (half right); replica B
    holds many and restarts on its port mid-step. Read from the fleet's sums, A's old rows came
    back as new evidence and an equal canary was rolled back; read per replica, they never do."""
    config = write_config(routing=routing(5))
    path = config.parent / "routing.yaml"
    a, b = start(config), start(config)
    label(a, 2, 4000, 0.5)
    label(a, 1, 4000, 0.98)
    label(b, 2, 10000, 0.98)
    label(b, 1, 10000, 0.98)
    replicas = [a, b]
    ctl = running(config, [f"http://{r.url}/metrics" for r in replicas], tmp_path / "r.log")
    wait_until(lambda: len(ctl.lines()) >= 2, "the controller never evaluated")
    port = b.port
    b.stop()
    replicas[1] = start(config, port=port)  # the same replica, restarted: counters from zero
    labels = Labels(lambda: replicas)
    try:
        wait_until(lambda: status_of(path).get("state") == "promoted",
                   f"never promoted: {ctl.lines()[-1:]}", timeout_s=120)
    finally:
        labels.stop()
    decisions = [line["decision"] for line in ctl.lines()]
    assert "rollback" not in decisions, ctl.lines()
    assert weights_of(path) == {1: 0, 2: 100}


def test_a_persons_rollback_stands_and_naming_the_next_canary_starts_it(
        write_config: ConfigWriter, start: Start, tmp_path: Path,
        running: Callable[..., Running]) -> None:
    """Items 8 and 9, as README step 5 says: mid-rollout a person sets the weights back to
    100/0; the running controller records a rollback by hand and never writes 95/5 again. The
    person then names version 3 in the block (nothing else): the next release begins."""
    config = write_config(routing=routing(0))
    path = config.parent / "routing.yaml"
    server = start(config)
    ctl = running(config, [f"http://{server.url}/metrics"], tmp_path / "r.log")
    labels = Labels(lambda: [server], (1, 2, 3))
    try:
        wait_until(lambda: weights_of(path) == {1: 95, 2: 5}, "never started")
        path.write_text(path.read_text().replace("weight: 95}", "weight: 100}")
                        .replace("weight: 5}", "weight: 0}"))
        wait_until(lambda: status_of(path).get("state") == "rolled_back", "not recorded")
        assert "by hand" in str(status_of(path)["reason"])
        time.sleep(3)  # ten checks: nothing is undone
        assert weights_of(path) == {1: 100, 2: 0}
        wait_for_metric(server, f'gateway_route_weight{{model="{MODEL}",version="2"}}', 0.0)
        path.write_text(path.read_text().replace("- {version: 2, weight: 0}",
                                                 "- {version: 3, weight: 0}")
                        .replace("canary: 2\n", "canary: 3\n"))
        wait_until(lambda: weights_of(path) == {1: 95, 3: 5}, "the next release never began")
        status = status_of(path)
        assert (status["state"], status["canary"]) == ("progressing", 3)
    finally:
        labels.stop()
    assert "by_hand" in [line["decision"] for line in ctl.lines()]


BOM = b"\xef\xbb\xbf"


def edited(original: bytes) -> bytes:
    """The file's bytes with only the canary rolled back (weights 100/0) and no status line."""
    return original.replace(b"weight: 95}", b"weight: 100}").replace(b"weight: 5}", b"weight: 0}")


def without_status(text: bytes, final_newline: bool) -> bytes:
    kept = b"".join(line for line in text.splitlines(keepends=True)
                    if b"rollout_status" not in line)
    return kept if final_newline else kept.rstrip(b"\r\n")


@pytest.mark.parametrize("style", ["crlf", "no final newline", "document end", "bom",
                                   "mode 0640", "symlink", "crlf without final newline"])
def test_the_file_keeps_every_byte_editors_wrote(
        write_config: ConfigWriter, start: Start, style: str) -> None:
    """Items 13 and 15: the decision changes the weights and adds `rollout_status`, and nothing
    else: line endings, a final newline or its absence, `...`, a BOM, the mode and a symlink
    stay; the gateway takes the file the controller wrote."""
    config = write_config(routing=routing(5))
    path = config.parent / "routing.yaml"
    text = path.read_bytes()
    if "crlf" in style:
        text = text.replace(b"\n", b"\r\n")
    if "no final newline" in style:
        text = text.rstrip(b"\r\n")
    if style == "document end":
        text += b"...\n"
    if style == "bom":
        text = BOM + text
    target = path
    if style == "symlink":
        target = config.parent / "releases" / "routing-v7.yaml"
        target.parent.mkdir()
        path.unlink()
        path.symlink_to(Path("releases") / "routing-v7.yaml")
    target.write_bytes(text)
    if style == "mode 0640":
        os.chmod(target, 0o640)
    mode = stat.S_IMODE(os.stat(target).st_mode)
    server = start(config)
    label(server, 1, 2000, 0.98)
    label(server, 2, 2000, 0.80)
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "rollout", "--config", str(config), "--metrics",
         f"http://{server.url}/metrics", "--once"], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["decision"] == "rollback"
    after = target.read_bytes()
    assert b"rollout_status" in after
    assert without_status(after, text.endswith(b"\n")) == edited(text)
    assert after.endswith(b"\n") == text.endswith(b"\n")
    if "crlf" in style:
        assert after.count(b"\n") == after.count(b"\r\n")
    assert after.startswith(BOM) == (style == "bom")
    assert stat.S_IMODE(os.stat(target).st_mode) == mode
    if style == "symlink":
        assert path.is_symlink() and path.resolve() == target.resolve()
        assert sorted(p.name for p in target.parent.iterdir()) == ["routing-v7.yaml"]
    assert yaml.safe_load(after.decode("utf-8-sig"))["models"][MODEL]["rollout_status"][
        "state"] == "rolled_back"
    wait_for_metric(server, f'gateway_route_weight{{model="{MODEL}",version="2"}}', 0.0)
    assert server.metric('gateway_config_reloads_total{result="error"}') == 0


def test_with_nothing_to_roll_out_it_idles_serves_its_metrics_and_stops_on_sigterm(
        write_config: ConfigWriter, start: Start, tmp_path: Path,
        running: Callable[..., Running]) -> None:
    """Item 16: as shipped on Kubernetes (no model has a rollout block) it must not exit: a
    Deployment would crash-loop."""
    config = write_config()
    server = start(config)
    port = free_port()
    ctl = running(config, [f"http://{server.url}/metrics"], tmp_path / "r.log", "--port",
                  str(port))
    time.sleep(3)
    assert ctl.process.poll() is None
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        assert reply.status == 200
    err = ctl.stop()
    assert err.count("rollout block") == 1, err


def test_once_dry_run_before_the_first_step_shows_every_gate_and_each_version(
        write_config: ConfigWriter, start: Start) -> None:
    """Item 17: the README's `gateway rollout --once --dry-run`, typed as printed (no
    --metrics: the gateway of the config on this machine), before the first step."""
    port = free_port()
    config = write_config(routing=routing(0).replace(
        "gates: {accuracy_margin: 0.02}",
        "gates: {max_error_rate_increase: 0.01, max_p99_ratio: 1.5, min_requests: 200, "
        "accuracy_margin: 0.02}"), server={"port": port})
    server = start(config, port=port)
    body = orjson.dumps({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32",
                                     "data": sample_rows(1).ravel().tolist()}]})
    for user in range(30):
        assert server.request("POST", f"/v2/models/{MODEL}/infer", body,
                              {"x-user-id": f"u{user}"}).status == 200
    label(server, 1, 100, 0.98)
    before = (config.parent / "routing.yaml").read_bytes()
    shown = subprocess.run([sys.executable, "-m", "gateway", "rollout", "--config", str(config),
                            "--once", "--dry-run"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    for gate in ("errors", "latency", "accuracy"):
        assert f"  {gate} " in out, out
    assert "5xx share" in out and "p99 ms" in out and "accuracy" in out
    version_rows = [line.split() for line in out.splitlines() if line.startswith("  1 ")]
    assert version_rows and version_rows[0][1] == "30", out  # baseline: its 30 requests
    assert (config.parent / "routing.yaml").read_bytes() == before


def test_on_kubernetes_the_replicas_are_found_behind_the_service(
        write_config: ConfigWriter, start: Start, tmp_path: Path) -> None:
    """Item 16, the plain variant (no Prometheus Operator): `--kubernetes-service` reads every
    ready pod's /metrics through the Service's EndpointSlices; a pod not ready is not read."""
    import http.server

    from tests.integration.test_rollout import ROUTING, FakeApiServer, _ApiHandler

    config = write_config(routing=ROUTING)
    replicas = [start(config), start(config)]
    for server in replicas:
        label(server, 1, 1000, 0.98)
        label(server, 2, 1000, 0.80)
    slices = {"items": [{
        "addressType": "IPv4", "ports": [{"name": "http", "port": r.port}],
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}]}
        for r in replicas] + [{
            "addressType": "IPv4", "ports": [{"name": "http", "port": free_port()}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": False}}]}]}

    class Handler(_ApiHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/apis/discovery.k8s.io/v1/namespaces/ml/endpointslices?"):
                assert "kubernetes.io%2Fservice-name%3Dgateway" in self.path
                self._answer(200, slices)
            else:
                super().do_GET()

    api = FakeApiServer(ROUTING, "token")
    api.RequestHandlerClass = Handler  # type: ignore[assignment]
    assert isinstance(api, http.server.ThreadingHTTPServer)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    (tmp_path / "token").write_text("token")
    env = {**os.environ, "GATEWAY_KUBERNETES_API": f"http://127.0.0.1:{api.server_address[1]}",
           "GATEWAY_KUBERNETES_TOKEN": str(tmp_path / "token")}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "gateway", "rollout", "--config", str(config),
             "--kubernetes-service", "ml/gateway", "--configmap", "ml/gateway-routing",
             "--once"], capture_output=True, text=True, timeout=60, env=env)
    finally:
        api.shutdown()
    assert done.returncode == 0, done.stderr
    decision = json.loads(done.stdout.strip().splitlines()[-1])
    assert decision["decision"] == "rollback"
    gate = decision["gates"][0]
    assert gate["n_baseline"] == gate["n_canary"] == 2000  # both ready replicas, added up
    assert 'state: "rolled_back"' in api.text


def test_pinned_rows_in_the_canarys_drift_window_are_no_evidence(
        write_config: ConfigWriter, start: Start) -> None:
    """Review finding 4: a QA load pinned to the canary (uniform noise, as the locustfile
    sends) filled its drift window, and the drift gate rolled it back with no routed request
    at all. The window's pinned rows are counted; the gate waits while it holds any."""
    import numpy as np

    config = write_config(routing=routing(5).replace(
        "gates: {accuracy_margin: 0.02}", "gates: {max_prediction_psi: 0.2}"),
        drift={"window_rows": 200, "report_interval_s": 0.05})
    server = start(config)
    noise = np.random.default_rng(0).uniform(0, 3000, (400, 30)).astype(np.float32)
    for row in noise:
        body = orjson.dumps({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32",
                                         "data": row.tolist()}]})
        assert server.request("POST", f"/v2/models/{MODEL}/versions/2/infer", body).status == 200
    wait_for_metric(server, f'gateway_drift_window_pinned_rows{{model="{MODEL}",version="2"}}',
                    200.0)
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "rollout", "--config", str(config), "--metrics",
         f"http://{server.url}/metrics", "--once"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    decision = json.loads(done.stdout.strip().splitlines()[-1])
    assert decision["decision"] == "hold", decision
    assert decision["gates"][0]["gate"] == "prediction_drift"
    assert decision["gates"][0]["verdict"] == "wait"
    # Routed rows push the pinned ones out of the window: then it is evidence again.
    rows = sample_rows(10, seed=5)
    body = orjson.dumps({"inputs": [{"name": "input", "shape": [10, 30], "datatype": "FP32",
                                     "data": rows.ravel().tolist()}]})
    canary_rows = 0
    for user in range(20_000):
        reply = server.request("POST", f"/v2/models/{MODEL}/infer", body,
                               {"x-user-id": f"u{user}"})
        canary_rows += 10 if reply.headers.get("x-model-version") == "2" else 0
        if canary_rows >= 300:
            break
    wait_for_metric(server, f'gateway_drift_window_pinned_rows{{model="{MODEL}",version="2"}}',
                    0.0)
