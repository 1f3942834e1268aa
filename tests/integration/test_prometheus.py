"""config/prometheus and config/grafana against the real thing: Debian's `prometheus` scrapes a
running gateway through a canary with a shadow and drifted traffic; every expression of the
dashboard and the rules is accepted by its query API and the main panels return data;
`promtool` checks the config and the rules and runs their unit tests."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
import yaml
from sklearn.datasets import load_breast_cancer
from tritonclient.utils import InferenceServerException

from tests.conftest import MODEL, ROOT, ConfigWriter, add_version, one_row_only_model
from tests.integration.conftest import Start
from tests.integration.server import free_port

PROMETHEUS_DIR = ROOT / "config" / "prometheus"
DASHBOARD = ROOT / "config" / "grafana" / "gateway.json"
INSTALL = "apt-get install prometheus (Debian's package brings prometheus and promtool)"
needs_prometheus = pytest.mark.skipif(
    not (shutil.which("prometheus") and shutil.which("promtool")),
    reason=f"prometheus/promtool not installed: {INSTALL}")
# Grafana's variables, as a dashboard with every model selected would send them.
VARIABLES = {"$model": ".+", "$__rate_interval": "30s", "$__range": "5m"}
MAIN_PANELS = {"Traffic share by version", "Route weights (policy)", "Versions ready",
               "Latency p99 by version and route", "Rejected requests (4xx) by code",
               "Queue wait p99", "Mean batch size (rows)", "Shadow agreement",
               "Feature drift PSI (now)", "Drifted features (PSI at or above threshold)",
               "Prediction drift PSI", "Config reloads", "Live vs reference accuracy",
               "Fleet accuracy (from counters)", "Label mix", "Label drift PSI",
               "Fleet drift PSI (all replicas' windows)"}


def dashboard_queries() -> dict[str, list[str]]:
    """Panel title -> its PromQL, with Grafana's variables filled in."""
    queries: dict[str, list[str]] = {}
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name, value in VARIABLES.items():
                expr = expr.replace(name, value)
            queries.setdefault(panel["title"], []).append(expr)
    return queries


def rule_queries() -> dict[str, str]:
    rules = yaml.safe_load((PROMETHEUS_DIR / "rules.yml").read_text())
    return {rule.get("alert") or rule["record"]: rule["expr"]
            for group in rules["groups"] for rule in group["rules"]}


def promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> str:
    done = subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@needs_prometheus
def test_promtool_accepts_the_config_and_the_rules_and_their_unit_tests_pass() -> None:
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml")
    assert "SUCCESS" in promtool("check", "rules", "rules.yml")
    assert "SUCCESS" in promtool("test", "rules", "rules.test.yml")
    # As the README types it, from the repository root (rule_files are read beside the test).
    assert "SUCCESS" in promtool("test", "rules", "config/prometheus/rules.test.yml",
                                 cwd=PROMETHEUS_DIR.parent.parent)


@needs_prometheus
def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """The rule tests are not vacuous: with the drifted flag of the feature that should alert
    turned off, the drift alert's test must fail."""
    shutil.copy(PROMETHEUS_DIR / "rules.yml", tmp_path)
    text = (PROMETHEUS_DIR / "rules.test.yml").read_text()
    flag = """'gateway_drift_drifted{model="m", version="2", feature="mean radius"}'
        values: '1x60'"""
    assert text.count(flag) == 1  # the drift alert's test
    (tmp_path / "rules.test.yml").write_text(text.replace(flag, flag.replace("'1x60'",
                                                                             "'0x60'")))
    done = subprocess.run(["promtool", "test", "rules", "rules.test.yml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "GatewayFeatureDrift" in done.stdout + done.stderr


class Prometheus:
    """Debian's prometheus with config/prometheus/rules.yml, scraping `targets` every second."""

    def __init__(self, targets: list[str], work: Path) -> None:
        self.port = free_port()
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "rule_files": [str(PROMETHEUS_DIR / "rules.yml")],
                  "scrape_configs": [{"job_name": "gateway",
                                      "static_configs": [{"targets": targets}]}]}
        (work / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = (work / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            ["prometheus", f"--config.file={work / 'prometheus.yml'}",
             f"--storage.tsdb.path={work / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1):
                    return
            except OSError:
                assert self.process.poll() is None, "prometheus exited"
                assert time.monotonic() < deadline, "prometheus did not start"
                time.sleep(0.2)

    def query(self, expr: str) -> dict[str, Any]:
        url = (f"http://127.0.0.1:{self.port}/api/v1/query?"
               + urllib.parse.urlencode({"query": expr}))
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:
                return dict(json.load(reply))
        except urllib.error.HTTPError as exc:  # 400/422: the expression is refused
            return dict(json.load(exc))

    def value(self, expr: str) -> float | None:
        """The single value an instant query returns, or None when it returns nothing."""
        result = self.query(expr)["data"]["result"]
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Any]:
    started: list[Prometheus] = []

    def start(target: str) -> Prometheus:
        started.append(Prometheus([target], tmp_path))
        return started[-1]

    yield start
    for prometheus in started:
        prometheus.stop()


@needs_prometheus
def test_a_real_prometheus_reads_a_canary_from_every_panel_and_rule(
        model_repo: Path, write_config: ConfigWriter, start: Start, prometheus_for: Any) -> None:
    # Versions 1 and 2 share the traffic; version 4, a canary that fails every request of more
    # than one row, takes a fifth of it; version 3 shadows all of it.
    add_version(model_repo, 4, one_row_only_model())
    routing = {"models": {MODEL: {"traffic": [{"version": 1, "weight": 40},
                                              {"version": 2, "weight": 40},
                                              {"version": 4, "weight": 20}],
                                  "shadow": [{"version": 3, "percent": 100}]}}}
    server = start(write_config(model_repo, routing=routing,
                                drift={"report_interval_s": 0.5}))
    prometheus = prometheus_for(server.url)
    data = load_breast_cancer().data.astype(np.float32)
    shifted = data.copy()
    shifted[:, 0] *= 1.6  # "mean radius" moves, nothing else
    stop = threading.Event()

    def traffic() -> None:
        client = httpclient.InferenceServerClient(server.url)  # a client per thread (gevent)
        rows = np.tile(shifted, (3, 1))
        while not stop.is_set():
            for begin in range(0, len(rows), 64):
                part = rows[begin:begin + 64]
                tensor = httpclient.InferInput("input", list(part.shape), "FP32")
                tensor.set_data_from_numpy(part)
                with contextlib.suppress(InferenceServerException):  # the canary's 500s
                    client.infer(MODEL, [tensor])
                server.request("POST", f"/v2/models/{MODEL}/infer", b"{not json")
                if stop.is_set():
                    return

    # Ground truth comes back: true labels for version 1's and 2's answers, then a prior shift.
    labels = load_breast_cancer().target
    client = httpclient.InferenceServerClient(server.url)
    for version in ("1", "2"):
        tensor = httpclient.InferInput("input", list(data.shape), "FP32")
        tensor.set_data_from_numpy(data)
        predicted = client.infer(MODEL, [tensor], model_version=version).as_numpy("label")
        reply = server.request("POST", f"/v2/models/{MODEL}/feedback", json.dumps(
            {"feedback": [{"label": int(y), "version": version, "prediction": int(p)}
                          for y, p in zip(labels, predicted, strict=True)]}).encode())
        assert reply.status == 200
    assert server.request("POST", f"/v2/models/{MODEL}/feedback", json.dumps(
        {"feedback": [{"label": 0}] * 5000}).encode()).status == 200
    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while True:  # enough scrapes for rate() and a window past the alert's 500 rows
            share = prometheus.query(
                f'gateway:traffic_share:ratio_rate5m{{model="{MODEL}"}}')["data"]["result"]
            drifted = prometheus.query(
                'gateway_drift_psi and on (model, version, feature) gateway_drift_drifted == 1 '
                'and ignoring (feature) gateway_drift_window_rows >= 500')["data"]["result"]
            if len(share) == 3 and len(drifted) == 3:
                break
            assert time.monotonic() < deadline, (
                [s["metric"].get("version") for s in share],
                [(s["metric"]["version"], s["metric"]["feature"]) for s in drifted])
            time.sleep(1)
    finally:
        stop.set()
        thread.join()
    # The canary's share, read as a dashboard reads it.
    shares = {s["metric"]["version"]: float(s["value"][1]) for s in share}
    assert 0.25 < shares["1"] < 0.55 and 0.25 < shares["2"] < 0.55 and 0.05 < shares["4"] < 0.4
    # Its errors: the error-budget alert's expression names the canary and nothing else.
    burning = prometheus.query(rule_queries()["GatewayErrorBudgetBurn"])["data"]["result"]
    assert [s["metric"]["version"] for s in burning] == ["4"]
    errors = prometheus.query(dashboard_queries()["Error rate (5xx) by version and route"][0])
    assert {s["metric"]["version"]: float(s["value"][1]) for s in errors["data"]["result"]
            if float(s["value"][1]) > 0} == {"4": 1.0}
    # The alert's expression names the drifted feature, on both versions and on the shadow
    # (its drift window sees the mirrored rows), and nothing else.
    assert {(s["metric"]["version"], s["metric"]["feature"]) for s in drifted} == \
        {("1", "mean radius"), ("2", "mean radius"), ("3", "mean radius")}
    refused, empty = [], []
    assert set(MAIN_PANELS) <= set(dashboard_queries())
    for title, exprs in dashboard_queries().items():
        for expr in exprs:
            answer = prometheus.query(expr)
            if answer["status"] != "success":
                refused.append((title, expr, answer.get("error")))
            elif title in MAIN_PANELS and not answer["data"]["result"]:
                empty.append((title, expr))
    for name, expr in rule_queries().items():
        answer = prometheus.query(expr)
        if answer["status"] != "success":
            refused.append((name, expr, answer.get("error")))
    assert not refused
    assert not empty
    shadow = prometheus.query(dashboard_queries()["Shadow agreement"][0])["data"]["result"]
    assert [s["metric"]["version"] for s in shadow] == ["3"]
    latency = prometheus.query(dashboard_queries()["Latency p99 by version and route"][0])
    assert {s["metric"]["version"] for s in latency["data"]["result"]} == {"1", "2"}  # 4: none
    rules = prometheus.query("count(ALERTS)")  # the rule file loaded: ALERTS exists or is empty
    assert rules["status"] == "success"
    loaded = json.load(urllib.request.urlopen(
        f"http://127.0.0.1:{prometheus.port}/api/v1/rules", timeout=10))
    names = {rule["name"] for group in loaded["data"]["groups"] for rule in group["rules"]}
    assert set(rule_queries()) <= names
    pending = {rule["name"]: rule["state"] for group in loaded["data"]["groups"]
               for rule in group["rules"] if rule.get("type") == "alerting"}
    health = {rule["name"]: rule.get("health") for group in loaded["data"]["groups"]
              for rule in group["rules"]}
    assert all(state == "ok" for state in health.values()), health
    # The drift page waits for 30 minutes of a flag up while a window of new rows arrives
    # (README "Drift monitor"): here, the flag and the rows it counts are what it reads.
    assert prometheus.query("gateway_drift_drifted == 1")["data"]["result"]
    assert prometheus.query("gateway_drift_rows_total > 0")["data"]["result"]
    assert pending["GatewayModelNotReady"] == "inactive"
    assert pending["GatewayLabelDrift"] in ("pending", "firing")
    assert pending["GatewayLiveAccuracyBelowReference"] == "inactive"
    accuracy = prometheus.query("gateway:feedback_accuracy:ratio_rate1h")["data"]["result"]
    assert {s["metric"]["version"] for s in accuracy} == {"1", "2"}
