"""The drift monitor behind a real server: shifted traffic is flagged per feature, reports and
gauges agree, and a version without a reference profile is served but not monitored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tritonclient.http as httpclient
from sklearn.datasets import load_breast_cancer

from tests.conftest import MODEL, ConfigWriter
from tests.integration.conftest import Start


def send(url: str, rows: np.ndarray, version: str) -> None:
    client = httpclient.InferenceServerClient(url)
    step = 16 if len(rows) < 1000 else 256
    for start in range(0, len(rows), step):
        part = rows[start:start + step].astype(np.float32)
        tensor = httpclient.InferInput("input", list(part.shape), "FP32")
        tensor.set_data_from_numpy(part)
        client.infer(MODEL, [tensor], model_version=version)


def test_shifted_traffic_is_flagged_in_the_report_and_the_gauges(
        write_config: ConfigWriter, start: Start) -> None:
    server = start(write_config(drift={"report_interval_s": 0.2,
                                       "models": {MODEL: {"psi_threshold": 0.25}}}))
    data = load_breast_cancer().data
    shifted = data.copy()
    shifted[:, 0] *= 1.6  # "mean radius" moves, nothing else
    send(server.url, data, "1")
    send(server.url, shifted, "2")
    # No waiting: a report folds the rows still gathering first, and the gauges follow it.
    calm = server.request("GET", f"/v2/models/{MODEL}/versions/1/drift").json()
    moved = server.request("GET", f"/v2/models/{MODEL}/versions/2/drift").json()
    assert calm["window_rows"] == moved["window_rows"] == len(data)
    assert calm["reference_rows"] == 455 and calm["dropped_rows"] == 0
    assert not any(f["drifted"] for f in calm["features"])
    drifted = [f["name"] for f in moved["features"] if f["drifted"]]
    assert drifted == ["mean radius"]
    assert {o["name"] for o in moved["outputs"]} == {"label", "probabilities[1]"}
    both = server.request("GET", f"/v2/models/{MODEL}/drift").json()
    assert [r["version"] for r in both["versions"]] == ["1", "2"]
    metrics = server.request("GET", "/metrics").body.decode()
    gauge = next(line for line in metrics.splitlines() if line.startswith(
        f'gateway_drift_psi{{feature="mean radius",model="{MODEL}",version="2"}}'))
    assert float(gauge.rsplit(" ", 1)[1]) > 0.25
    assert f'gateway_drift_window_rows{{model="{MODEL}",version="1"}} 569.0' in metrics
    assert 'gateway_prediction_drift_psi{model="breast-cancer",output="label"' in metrics


def test_a_version_without_a_profile_is_served_but_not_monitored(
        model_repo: Path, write_config: ConfigWriter, start: Start) -> None:
    (model_repo / MODEL / "1" / "reference.json").unlink()
    server = start(write_config(model_repo))
    send(server.url, load_breast_cancer().data[:8], "1")
    reply = server.request("GET", f"/v2/models/{MODEL}/versions/1/drift")
    assert reply.status == 404 and "not monitored" in reply.json()["error"]
    assert "no drift monitoring" in server.log()


def test_as_a_new_user_would_training_rows_then_one_feature_scaled(
        write_config: ConfigWriter, start: Start) -> None:
    """The shipped model: its training-like rows raise nothing; once the window holds the same
    rows with one feature scaled by 1.5, that feature and only that one is drifted."""
    server = start(write_config(drift={"report_interval_s": 0.2}))
    data = load_breast_cancer().data
    report_path = f"/v2/models/{MODEL}/versions/2/drift"
    send(server.url, data, "2")
    assert not any(f["drifted"] for f in server.request("GET", report_path).json()["features"])
    scaled = data.copy()
    scaled[:, 3] *= 1.5  # "mean area"
    send(server.url, np.tile(scaled, (9, 1)), "2")  # 5,121 rows: the window is all shifted
    report = server.request("GET", report_path).json()
    assert report["window_rows"] == 5000
    assert [f["name"] for f in report["features"] if f["drifted"]] == ["mean area"]
    metrics = server.request("GET", "/metrics").body.decode()
    psi = {line.split('feature="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
           for line in metrics.splitlines()
           if line.startswith("gateway_drift_psi{") and 'version="2"' in line}
    assert [name for name, value in psi.items() if value >= 0.2] == ["mean area"]


def test_a_shadows_own_outputs_fill_its_drift_window_and_new_gauges_are_exported(
        write_config: ConfigWriter, start: Start) -> None:
    """A shadow is evaluated exactly while it serves nobody: its drift window must see the
    mirrored rows and its own outputs (it read window_rows 0), and the flag, NaN and unseen
    ratios are gauges per feature."""
    import time

    server = start(write_config(routing={"models": {MODEL: {
        "traffic": [{"version": 1, "weight": 100}], "shadow": [{"version": 3, "percent": 100}]}}},
        drift={"report_interval_s": 0.2}))
    data = load_breast_cancer().data
    send(server.url, data, "")
    deadline = time.monotonic() + 10
    while True:  # the shadow's thread answers within a tick or two of the last request
        shadow = server.request("GET", f"/v2/models/{MODEL}/versions/3/drift").json()
        if shadow["window_rows"] == len(data):
            break
        assert time.monotonic() < deadline, shadow["window_rows"]
        time.sleep(0.1)
    outputs = {o["name"]: o for o in shadow["outputs"]}
    assert set(outputs) == {"label", "probabilities[1]"}
    assert outputs["label"]["psi"] is not None and outputs["label"]["p_value"] is not None
    assert not any(f["drifted"] for f in shadow["features"])
    metrics = server.request("GET", "/metrics").body.decode()
    labels = f'feature="mean radius",model="{MODEL}",version="3"'
    for gauge in ("gateway_drift_drifted", "gateway_drift_nan_ratio",
                  "gateway_drift_unseen_ratio"):
        assert f"{gauge}{{{labels}}} 0.0" in metrics, gauge
    assert f'gateway_prediction_drift_drifted{{model="{MODEL}",output="label",version="3"}} 0.0' \
        in metrics
