"""`gateway rollout` as an SRE runs it: a real gateway, the controller as a subprocess reading the
gateway's /metrics, ground truth posted through the feedback endpoint by the test (the test
decides the labels, so it can make a canary look less accurate), and the routing file the
decisions are written into."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import time
from pathlib import Path

import orjson

from tests.conftest import MODEL, ConfigWriter
from tests.integration.conftest import Start
from tests.integration.server import GatewayProcess
from tests.integration.test_prometheus import Prometheus, needs_prometheus

ROUTING = f"""\
# The SRE's routing file: the controller must keep this comment.
models:
  {MODEL}:
    traffic:
      - {{version: 1, weight: 95}}   # the baseline
      - {{version: 2, weight: 5}}
    rollout:
      baseline: 1
      canary: 2
      steps: [5, 50, 100]
      gates: {{accuracy_margin: 0.02}}
"""


def controller(config: Path, server: GatewayProcess,
               *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "rollout", "--config", str(config), "--metrics",
         f"http://{server.url}/metrics", *flags], capture_output=True, text=True, timeout=60)


def wait_for_metric(server: GatewayProcess, sample: str, value: float) -> None:
    deadline = time.monotonic() + 10
    while server.metric(sample) != value:
        assert time.monotonic() < deadline, f"{sample} never read {value}"
        time.sleep(0.1)


def label(server: GatewayProcess, version: int, rows: int, accuracy: float) -> None:
    """Ground truth for `rows` answers of `version`, `accuracy` of them right."""
    right = round(rows * accuracy)
    items = [{"label": 1, "version": version, "prediction": 1 if i < right else 0}
             for i in range(rows)]
    reply = server.request("POST", f"/v2/models/{MODEL}/feedback",
                           orjson.dumps({"feedback": items}))
    assert reply.status == 200, reply.body


def test_a_canary_the_labels_call_worse_is_rolled_back_with_its_evidence(
        write_config: ConfigWriter, start: Start) -> None:
    config = write_config(routing=ROUTING)
    routing = config.parent / "routing.yaml"
    server = start(config)
    label(server, 1, 2000, 0.98)
    label(server, 2, 2000, 0.80)
    before = routing.read_text()

    shown = controller(config, server, "--once", "--dry-run")
    assert shown.returncode == 0, shown.stderr
    assert "rollback" in shown.stdout and "accuracy" in shown.stdout
    assert "n baseline" in shown.stdout and "2000" in shown.stdout
    assert routing.read_text() == before  # a dry run writes nothing

    done = controller(config, server, "--once")
    assert done.returncode == 0, done.stderr
    decision = json.loads(done.stdout.strip().splitlines()[-1])
    assert decision["decision"] == "rollback" and decision["weight"] == 0
    gate = decision["gates"][0]
    assert gate["gate"] == "accuracy" and gate["verdict"] == "fail"
    assert gate["n_baseline"] == gate["n_canary"] == 2000 and gate["high"] < -0.02
    after = routing.read_text()
    assert after.startswith("# The SRE's routing file: the controller must keep this comment.")
    assert "- {version: 1, weight: 100}   # the baseline" in after
    assert "- {version: 2, weight: 0}" in after
    assert 'rollout_status: {state: "rolled_back", canary: 2, step: 1' in after  # first weight
    # The gateway took the edit: the canary gets no traffic now.
    wait_for_metric(server, f'gateway_route_weight{{model="{MODEL}",version="2"}}', 0.0)
    # A finished rollout is left alone.
    again = json.loads(controller(config, server, "--once").stdout.strip().splitlines()[-1])
    assert again["decision"] == "done" and routing.read_text() == after


def test_an_equal_canary_is_promoted_and_no_labels_never_promote(
        write_config: ConfigWriter, start: Start) -> None:
    config = write_config(routing=ROUTING)
    routing = config.parent / "routing.yaml"
    server = start(config)
    waited = json.loads(controller(config, server, "--once").stdout.strip().splitlines()[-1])
    assert waited["decision"] == "hold" and "waiting for accuracy" in waited["reason"]
    assert "weight: 5}" in routing.read_text()  # no labels: no promotion
    label(server, 1, 3000, 0.98)
    label(server, 2, 3000, 0.98)
    # With --once the step's age is what the last status says (none yet: it just began).
    held = json.loads(controller(config, server, "--once").stdout.strip().splitlines()[-1])
    assert held["decision"] == "hold" and held["gates"][0]["verdict"] == "pass"
    routing.write_text(routing.read_text() + '    rollout_status: {state: progressing, step: 1, '
                       'since: "2026-01-01T00:00:00Z"}\n')
    wait_for_metric(server, 'gateway_config_reloads_total{result="success"}', 1.0)
    promoted = json.loads(controller(config, server, "--once").stdout.strip().splitlines()[-1])
    assert (promoted["decision"], promoted["weight"], promoted["step"]) == ("promote", 50, 2)
    text = routing.read_text()
    assert "- {version: 1, weight: 50}   # the baseline" in text
    assert "- {version: 2, weight: 50}" in text


def test_a_file_without_a_rollout_block_is_nothing_to_do(write_config: ConfigWriter,
                                                         start: Start) -> None:
    config = write_config()
    server = start(config)
    idle = controller(config, server, "--once")
    assert idle.returncode == 0 and "has a rollout block; nothing to do" in idle.stderr
    assert idle.stdout == ""


def test_a_running_controller_promotes_an_equal_canary_step_by_step_and_resumes_after_a_kill(
        write_config: ConfigWriter, start: Start, tmp_path: Path) -> None:
    """Sticky traffic all along, labels arriving (98% right for both versions), step_s 1: the
    controller moves 5 -> 50 -> 100 and finishes; killed at 50, a new one continues from the
    step the weights show. No request fails; the controller's own /metrics follow."""
    import threading
    import urllib.request

    from tests.conftest import sample_rows
    from tests.integration.server import free_port

    config = write_config(routing=ROUTING.replace("steps: [5, 50, 100]",
                                                  "steps: [5, 50, 100]\n      step_s: 1\n"
                                                  "      max_step_s: 8")
                          .replace("    traffic:", "    sticky_key: x-user-id\n    traffic:"))
    routing = config.parent / "routing.yaml"
    server = start(config)
    stop = threading.Event()
    failures: list[int] = []
    body = orjson.dumps({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32",
                                     "data": sample_rows(1).ravel().tolist()}]})

    def traffic() -> None:
        user = 0
        while not stop.is_set():
            user += 1
            reply = server.request("POST", f"/v2/models/{MODEL}/infer", body,
                                   {"x-user-id": f"user-{user % 500}"})
            if reply.status != 200:
                failures.append(reply.status)
            if user % 50 == 0:  # ground truth keeps arriving for both versions
                label(server, 1, 100, 0.98)
                label(server, 2, 100, 0.98)

    port = free_port()
    log = tmp_path / "rollout.log"

    def run_controller() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway", "rollout", "--config", str(config), "--metrics",
             f"http://{server.url}/metrics", "--check-s", "0.3", "--log", str(log),
             "--port", str(port)])

    def wait_for(text: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in routing.read_text():
            assert time.monotonic() < deadline, routing.read_text()
            time.sleep(0.1)

    sender = threading.Thread(target=traffic)
    sender.start()
    first = run_controller()
    try:
        wait_for("- {version: 2, weight: 50}")
        first.kill()  # mid-rollout, no goodbye
        first.wait()
        second = run_controller()
        try:
            wait_for('state: "promoted"')
            deadline = time.monotonic() + 10
            while True:  # the controller's own gauges follow its decisions
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                                timeout=5) as reply:
                        own = reply.read().decode()
                    if f'gateway_rollout_canary_weight{{model="{MODEL}"}} 100.0' in own:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert f'gateway_rollout_gate{{gate="accuracy",model="{MODEL}"}} 1.0' in own
            promoted = routing.read_text()
            time.sleep(9)  # past max_step_s: the step of 100 is never judged, nothing moves
            assert routing.read_text() == promoted
        finally:
            second.kill()
            second.wait()
    finally:
        stop.set()
        sender.join()
    assert not failures
    text = routing.read_text()
    assert "- {version: 1, weight: 0}   # the baseline" in text
    assert "- {version: 2, weight: 100}" in text
    decisions = [json.loads(line) for line in log.read_text().splitlines()]
    weights = [d["weight"] for d in decisions if d["decision"] == "promote"]
    assert weights == [50, 100]
    assert "rollback" not in {d["decision"] for d in decisions}
    assert decisions[-1]["decision"] == "done"


def test_a_slow_canary_is_rolled_back_on_latency(model_repo: Path, write_config: ConfigWriter,
                                                 start: Start) -> None:
    """A canary whose every answer takes milliseconds against a baseline of microseconds: with
    min_requests each, its p99 over the baseline's is past max_p99_ratio."""
    from tests.conftest import add_version, sample_rows, slow_model

    add_version(model_repo, 5, slow_model(layers=1500))
    config = write_config(model_repo, routing=ROUTING.replace("version: 2, weight: 5",
                                                              "version: 5, weight: 50")
                          .replace("version: 1, weight: 95", "version: 1, weight: 50")
                          .replace("canary: 2", "canary: 5").replace("[5, 50, 100]", "[50, 100]")
                          .replace("gates: {accuracy_margin: 0.02}",
                                   "gates: {max_p99_ratio: 1.5, min_requests: 100}"))
    server = start(config)
    body = orjson.dumps({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32",
                                     "data": sample_rows(1).ravel().tolist()}]})
    served = {"1": 0, "5": 0}
    while min(served.values()) < 250:  # routed, as the canary's real traffic is
        reply = server.request("POST", f"/v2/models/{MODEL}/infer", body)
        assert reply.status == 200
        served[reply.headers["x-model-version"]] += 1
    for _ in range(300):  # pinned requests to the canary are no evidence, fast or slow
        assert server.request("POST", f"/v2/models/{MODEL}/versions/1/infer", body).status == 200
    done = controller(config, server, "--once")
    decision = json.loads(done.stdout.strip().splitlines()[-1])
    assert decision["decision"] == "rollback", (decision["gates"], decision["versions"])
    gate = decision["gates"][0]
    assert gate["gate"] == "latency" and gate["verdict"] == "fail"
    assert (gate["n_baseline"], gate["n_canary"]) == (served["1"], served["5"])
    assert "latency" in (config.parent / "routing.yaml").read_text()


@needs_prometheus
def test_with_prometheus_two_replicas_add_up_and_the_worse_canary_is_rolled_back(
        write_config: ConfigWriter, start: Start, tmp_path: Path) -> None:
    """`--prometheus` asks a real Prometheus (Debian's) the sums over two gateway replicas:
    half the labels reached each replica, the evidence is all of them."""
    config = write_config(routing=ROUTING)
    replicas = [start(config), start(config)]
    prometheus = Prometheus([r.url for r in replicas], tmp_path)
    try:
        for server in replicas:
            label(server, 1, 1000, 0.98)
            label(server, 2, 1000, 0.80)
        deadline = time.monotonic() + 30
        while prometheus.value("sum(gateway_feedback_rows_total)") != 4000:
            assert time.monotonic() < deadline, "prometheus never scraped both replicas"
            time.sleep(0.5)
        done = subprocess.run(
            [sys.executable, "-m", "gateway", "rollout", "--config", str(config),
             "--prometheus", f"http://127.0.0.1:{prometheus.port}", "--once"],
            capture_output=True, text=True, timeout=60)
    finally:
        prometheus.stop()
    assert done.returncode == 0, done.stderr
    decision = json.loads(done.stdout.strip().splitlines()[-1])
    assert decision["decision"] == "rollback"
    gate = decision["gates"][0]
    assert gate["gate"] == "accuracy" and gate["n_baseline"] == gate["n_canary"] == 2000
    assert 'state: "rolled_back"' in (config.parent / "routing.yaml").read_text()


class FakeApiServer(http.server.ThreadingHTTPServer):
    """Kubernetes' API for one ConfigMap, as strict as the real one on what the controller
    sends: the path, the bearer token, the merge-patch content type, and the resourceVersion
    (409 when it is not the current one)."""

    def __init__(self, text: str, token: str) -> None:
        super().__init__(("127.0.0.1", 0), _ApiHandler)
        self.text, self.token, self.version = text, token, 1
        self.patches: list[dict[str, object]] = []
        self.bump_before_patch = False
        """Simulate a person's kubectl edit between the controller's read and its patch."""


class _ApiHandler(http.server.BaseHTTPRequestHandler):
    server: FakeApiServer
    PATH = "/api/v1/namespaces/ml/configmaps/gateway-routing"

    def _refuse(self) -> bool:
        if self.path != self.PATH:
            self._answer(404, {"kind": "Status", "message": "not found"})
            return True
        if self.headers.get("Authorization") != f"Bearer {self.server.token}":
            self._answer(401, {"kind": "Status", "message": "Unauthorized"})
            return True
        return False

    def do_GET(self) -> None:
        if not self._refuse():
            self._answer(200, self._configmap())

    def do_PATCH(self) -> None:
        if self._refuse():
            return
        if self.headers.get("Content-Type") != "application/merge-patch+json":
            self._answer(415, {"kind": "Status", "message": "unsupported media type"})
            return
        patch = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.patches.append(patch)
        if self.server.bump_before_patch:
            self.server.version += 1
        if patch["metadata"]["resourceVersion"] != str(self.server.version):
            self._answer(409, {"kind": "Status", "reason": "Conflict"})
            return
        self.server.text = patch["data"]["routing.yaml"]
        self.server.version += 1
        self._answer(200, self._configmap())

    def _configmap(self) -> dict[str, object]:
        return {"kind": "ConfigMap", "metadata": {"name": "gateway-routing", "namespace": "ml",
                                                  "resourceVersion": str(self.server.version)},
                "data": {"routing.yaml": self.server.text}}

    def _answer(self, status: int, doc: dict[str, object]) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_on_kubernetes_the_configmap_is_patched_through_the_api(
        write_config: ConfigWriter, start: Start, tmp_path: Path) -> None:
    import os
    import threading

    config = write_config(routing=ROUTING)
    server = start(config)
    label(server, 1, 2000, 0.98)
    label(server, 2, 2000, 0.80)
    api = FakeApiServer(ROUTING, "service-account-token")
    threading.Thread(target=api.serve_forever, daemon=True).start()
    token_file = tmp_path / "token"
    token_file.write_text("service-account-token\n")
    env = {**os.environ, "GATEWAY_KUBERNETES_API": f"http://127.0.0.1:{api.server_address[1]}",
           "GATEWAY_KUBERNETES_TOKEN": str(token_file)}

    def run() -> dict[str, object]:
        done = subprocess.run(
            [sys.executable, "-m", "gateway", "rollout", "--config", str(config), "--metrics",
             f"http://{server.url}/metrics", "--once", "--configmap", "ml/gateway-routing"],
            capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))

    try:
        api.bump_before_patch = True  # a person edits between the read and the patch
        raced = run()
        assert raced["decision"] == "hold" and "a person's edit wins" in str(raced["reason"])
        assert api.text == ROUTING
        api.bump_before_patch = False
        rolled = run()
    finally:
        api.shutdown()
    assert rolled["decision"] == "rollback"
    assert "- {version: 2, weight: 0}" in api.text and 'state: "rolled_back"' in api.text
    assert api.text.startswith("# The SRE's routing file")
    assert (config.parent / "routing.yaml").read_text() == ROUTING  # only the API was written


def test_the_shadow_step_comes_first_and_promotes_to_the_first_weight(
        model_repo: Path, write_config: ConfigWriter, start: Start) -> None:
    """With min_shadow_agreement set and the canary a shadow at weight 0, step 0 judges the
    mirrored answers row by row; agreement surely above the bar moves the canary to its first
    weight. The canary is the shadow step's own case: the same model re-exported as version 4
    (a new runtime, a quantisation), whose every output agrees on every row."""
    import shutil

    from tests.conftest import sample_rows

    shutil.copytree(model_repo / MODEL / "1", model_repo / MODEL / "4")
    config = write_config(model_repo, routing=f"""\
models:
  {MODEL}:
    traffic:
      - {{version: 1, weight: 100}}
      - {{version: 4, weight: 0}}
    shadow: [{{version: 4, percent: 100}}]
    rollout:
      baseline: 1
      canary: 4
      steps: [5, 100]
      step_s: 1
      gates: {{min_shadow_agreement: 0.95}}
    rollout_status: {{state: progressing, step: 0, since: "2026-01-01T00:00:00Z"}}
""")
    server = start(config)
    for row in sample_rows(400, seed=3):
        body = orjson.dumps({"inputs": [{"name": "input", "shape": [1, 30],
                                         "datatype": "FP32", "data": row.tolist()}]})
        assert server.request("POST", f"/v2/models/{MODEL}/infer", body).status == 200
    shadow = f'gateway_shadow_rows_total{{model="{MODEL}",result="%s",version="4"}}'
    deadline = time.monotonic() + 10
    while sum(server.metric(shadow % r) for r in ("agree", "disagree", "error")) < 400:
        assert time.monotonic() < deadline, "the mirrors were not all compared"
        time.sleep(0.1)
    decision = json.loads(controller(config, server, "--once").stdout.strip().splitlines()[-1])
    moved = (decision["decision"], decision["step"], decision["weight"])
    assert moved == ("promote", 1, 5), (decision["reason"], decision["gates"])
    assert decision["gates"][0]["gate"] == "shadow_agreement"
    assert decision["gates"][0]["verdict"] == "pass" and decision["gates"][0]["n_canary"] == 400
    assert "- {version: 4, weight: 5}" in (config.parent / "routing.yaml").read_text()
