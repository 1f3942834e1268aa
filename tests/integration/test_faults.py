"""Fault isolation against the real server (issue: a fault stays where it happened): a version
whose inference raises, and a routing file emptied, replaced by garbage or by a folder. Each
harms nothing else and shows in readiness, metrics and the log. (Tampered and unloadable
versions: test_errors.py; failing and slow shadows: test_routing.py; a failing drift fold:
tests/observability/drift/test_service.py.)"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import orjson
import pytest
import yaml

from tests.conftest import (
    MODEL,
    ConfigWriter,
    add_version,
    binary_body,
    one_row_only_model,
    sample_rows,
)
from tests.integration.conftest import Start
from tests.integration.server import GatewayProcess

INFER = f"/v2/models/{MODEL}/infer"
TWO_ROWS = orjson.dumps({"inputs": [{"name": "input", "shape": [2, 30], "datatype": "FP32",
                                     "data": sample_rows(2).ravel().tolist()}]})


def metric(server: GatewayProcess, line_start: str) -> float:
    for line in server.request("GET", "/metrics").body.decode().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_version_whose_inference_raises_fails_only_its_own_requests(
        model_repo: Path, write_config: ConfigWriter, start: Start) -> None:
    add_version(model_repo, 4, one_row_only_model())
    routing = {"models": {MODEL: {"traffic": [{"version": 1, "weight": 50},
                                              {"version": 4, "weight": 50}],
                                  "sticky_key": "x-user-id"}}}
    server = start(write_config(model_repo, routing=routing))
    answers: dict[str, set[int]] = {"1": set(), "4": set()}
    for i in range(40):
        reply = server.request("POST", INFER, TWO_ROWS, {"x-user-id": f"user-{i}"})
        version = reply.headers.get("x-model-version") or (
            "4" if reply.status == 500 else "?")
        answers[version].add(reply.status)
        if reply.status == 500:
            assert "inference failed" in reply.json()["error"]
    assert answers == {"1": {200}, "4": {500}}
    # One-row requests, which version 4 can run, still succeed on it.
    one_row = orjson.dumps({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32",
                                        "data": sample_rows(1).ravel().tolist()}]})
    assert server.request("POST", f"/v2/models/{MODEL}/versions/4/infer", one_row).status == 200
    assert server.request("GET", "/v2/health/ready").status == 200
    failed = metric(server, f'gateway_requests_total{{code="500",model="{MODEL}",route="split",'
                            'version="4"}')
    assert failed > 0
    assert metric(server, f'gateway_requests_total{{code="500",model="{MODEL}",route="split",'
                          'version="1"}') == 0
    assert "inference failed" in server.log()


def replace_with(routing: Path, how: str) -> None:
    if how == "emptied":
        routing.write_text("")
    elif how == "garbage":
        routing.write_bytes(os.urandom(512) + b"\xff\xfe")
    elif how == "folder":  # unreadable as a file; root reads any file whatever its mode
        routing.unlink()
        routing.mkdir()
    elif how == "deleted":
        routing.unlink()
    else:
        routing.write_text("models: [unterminated")


@pytest.mark.parametrize("how", ["emptied", "garbage", "folder", "deleted", "broken yaml"])
def test_a_broken_routing_file_keeps_the_last_policy_serving(
        write_config: ConfigWriter, start: Start, how: str) -> None:
    routing_doc = {"models": {MODEL: {"traffic": [{"version": 1, "weight": 30},
                                                  {"version": 2, "weight": 70}]}}}
    config = write_config(routing=routing_doc)
    server = start(config)
    routing = config.parent / "routing.yaml"
    replace_with(routing, how)
    deadline = time.monotonic() + 5
    while metric(server, "gateway_config_last_reload_success") != 0:
        assert time.monotonic() < deadline, "the broken file was not noticed"
        time.sleep(0.05)
    time.sleep(2.5)  # two polls and the events of the edit: a broken file is said once
    assert metric(server, 'gateway_config_reloads_total{result="error"}') == 1
    assert server.log().count("routing policy rejected") == 1
    seen = set()
    for i in range(30):
        reply = server.request("POST", INFER, TWO_ROWS, {"x-user-id": f"u{i}"})
        assert reply.status == 200
        seen.add(reply.headers["x-model-version"])
    assert seen == {"1", "2"}
    assert server.request("GET", "/v2/health/ready").status == 200
    assert metric(server, f'gateway_route_weight{{model="{MODEL}",version="2"}}') == 70
    assert "routing policy rejected, the previous one keeps serving" in server.log()
    # Fixing the file applies it.
    if routing.is_dir():
        routing.rmdir()
    routing.write_text(yaml.safe_dump({"models": {MODEL: {"traffic": [
        {"version": 1, "weight": 0}, {"version": 2, "weight": 100}]}}}))
    deadline = time.monotonic() + 5
    while metric(server, f'gateway_route_weight{{model="{MODEL}",version="2"}}') != 100:
        assert time.monotonic() < deadline, "the fixed file was not applied"
        time.sleep(0.05)
    assert metric(server, "gateway_config_last_reload_success") == 1


def test_mirrors_of_a_shadow_taken_out_of_the_policy_are_dropped_not_errors(
        model_repo: Path, write_config: ConfigWriter, start: Start) -> None:
    """The README's rollout step tells SREs to watch that `error` stays 0; taking a slow shadow
    out of the policy while its mirrors wait is no error of it."""
    from loadtests.models import deep_mlp

    add_version(model_repo, 5, deep_mlp(hidden=64, layers=3000))  # ~3 s per 8,192 rows
    shadowed = {"models": {MODEL: {"traffic": [{"version": 1, "weight": 100}],
                                   "shadow": [{"version": 5, "percent": 100}]}}}
    config = write_config(model_repo, routing=shadowed)
    server = start(config)
    body, headers = binary_body(8192)
    for _ in range(10):  # the first keeps the shadow busy for seconds; the rest wait
        assert server.request("POST", INFER, body, headers).status == 200
    routing = config.parent / "routing.yaml"
    routing.write_text(yaml.safe_dump({"models": {MODEL: {"traffic": [{"version": 1,
                                                                        "weight": 100}]}}}))
    deadline = time.monotonic() + 3
    while server.metric('gateway_config_reloads_total{result="success"}') < 1:
        assert time.monotonic() < deadline, "the edit was not applied"
        time.sleep(0.05)
    shadow = f'gateway_shadow_requests_total{{model="{MODEL}",result="%s",version="5"}}'

    def counted() -> float:
        return sum(server.metric(shadow % r) for r in ("agree", "disagree", "dropped", "error"))
    deadline = time.monotonic() + 30
    while counted() < 10:  # the mirrors that waited, taken against the unloaded version
        assert time.monotonic() < deadline, "the mirrors were never counted"
        time.sleep(0.1)
    assert server.metric(shadow % "error") == 0
    assert counted() == 10
    assert server.metric(shadow % "dropped") > 0


def test_a_feature_that_turns_nan_drifts_and_its_nan_ratio_is_a_gauge(
        write_config: ConfigWriter, start: Start) -> None:
    """A broken upstream sends NaN for a feature: NaN is a bin of its own for PSI and JS, so the
    feature drifts (it read PSI null and `drifted: false`), and its NaN share is exported."""
    import tritonclient.http as httpclient
    from sklearn.datasets import load_breast_cancer

    server = start(write_config(drift={"report_interval_s": 0.2, "window_rows": 500}))
    rows = load_breast_cancer().data[:500].astype(np.float32)
    rows[:, 0] = np.nan  # "mean radius": all missing
    rows[::2, 1] = np.nan  # "mean texture": half missing
    client = httpclient.InferenceServerClient(server.url)
    for part in np.array_split(rows, 10):
        tensor = httpclient.InferInput("input", list(part.shape), "FP32")
        tensor.set_data_from_numpy(part)  # binary: JSON cannot carry NaN
        client.infer(MODEL, [tensor], model_version="2")
    report = server.request("GET", f"/v2/models/{MODEL}/versions/2/drift").json()
    features = {f["name"]: f for f in report["features"]}
    for name, share in (("mean radius", 1.0), ("mean texture", 0.5)):
        assert features[name]["psi"] is not None and features[name]["psi"] > 1, features[name]
        assert features[name]["drifted"] and features[name]["nan_ratio"] == share
    assert features["mean radius"]["ks"] is None  # no finite value to compare
    assert not features["mean area"]["drifted"]
    gauge = f'gateway_drift_nan_ratio{{feature="mean radius",model="{MODEL}",version="2"}}'
    assert server.metric(gauge) == 1.0
    psi = f'gateway_drift_psi{{feature="mean radius",model="{MODEL}",version="2"}}'
    assert server.metric(psi) > 1
