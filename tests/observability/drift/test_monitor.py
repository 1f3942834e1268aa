from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.datasets import load_breast_cancer

from gateway.observability.drift import DriftMonitor
from gateway.observability.drift.stats import DriftRule
from tests.conftest import MODEL, MODELS

REFERENCE = MODELS / MODEL / "1" / "reference.json"


def outputs(rows: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(MODELS / MODEL / "1" / "model.onnx"))
    label, probabilities = session.run(None, {"input": rows.astype(np.float32)})
    return {"label": label, "probabilities": probabilities}


def test_training_like_data_does_not_drift_and_shifted_data_does() -> None:
    data = load_breast_cancer().data
    calm = DriftMonitor.from_reference_file(REFERENCE)
    calm.ingest(data, outputs(data))
    report = calm.report()
    assert report["window_rows"] == 569 and report["reference_rows"] == 455
    assert not any(f["drifted"] for f in report["features"])
    assert {o["name"] for o in report["outputs"]} == {"label", "probabilities[1]"}
    shifted = DriftMonitor.from_reference_file(REFERENCE)
    moved = data.copy()
    moved[:, 0] *= 1.6  # only "mean radius" moves
    shifted.ingest(moved, outputs(data))
    features = {f["name"]: f for f in shifted.report()["features"]}
    assert features["mean radius"]["drifted"] and features["mean radius"]["psi"] > 0.2
    assert not features["mean texture"]["drifted"]
    assert 0 < features["mean radius"]["js"] <= 1 and 0 < features["mean radius"]["ks"] <= 1


def test_a_stream_from_the_training_distribution_raises_almost_no_false_alarms() -> None:
    """Windows of 5,000 rows resampled from the training rows: with ten bins, PSI's sampling
    noise is about (bins - 1) / window = 0.002, a hundred times below the 0.2 threshold."""
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer().data.astype(np.float32)
    train, _ = train_test_split(data, test_size=0.2, random_state=0,
                                stratify=load_breast_cancer().target)
    rng = np.random.default_rng(7)
    alarms = 0
    for _ in range(20):
        monitor = DriftMonitor.from_reference_file(REFERENCE)
        monitor.ingest(train[rng.integers(0, len(train), 5000)])
        alarms += sum(f["drifted"] for f in monitor.report()["features"])
    assert alarms == 0  # of 600 feature checks


def test_the_rule_decides_drifted_by_the_test_and_the_psi_floor() -> None:
    data = load_breast_cancer().data
    moved = data.copy()
    moved[:, 0] *= 1.3
    monitor = DriftMonitor.from_reference_file(REFERENCE)
    monitor.ingest(moved)
    first = monitor.report()["features"][0]
    assert first["drifted"] and first["p_value"] is not None and first["p_value"] < 1e-6
    psi = first["psi"]
    assert monitor.report(DriftRule(psi_floor=psi - 1e-6))["features"][0]["drifted"]
    assert not monitor.report(DriftRule(psi_floor=psi + 1e-3))["features"][0]["drifted"]
    assert not monitor.report(DriftRule(false_alarm_rate=1e-300))["features"][0]["drifted"]


def test_benjamini_hochberg_flags_what_bonferroni_would_and_more_when_many_move() -> None:
    rule = DriftRule(false_alarm_rate=0.05)
    psi = np.zeros(5)
    # Bonferroni's bar is 0.01; BH lets the fourth smallest (0.035 <= 4 * 0.05 / 5) pull in
    # every p-value up to it, and a NaN (no rows) is neither flagged nor counted.
    p = np.array([0.001, 0.03, 0.035, 0.02, 0.9])
    assert rule.flags(psi, p).tolist() == [True, True, True, True, False]
    assert rule.flags(psi, np.array([0.03, np.nan, 0.5])).tolist() == [False, False, False]
    assert rule.flags(psi, np.array([0.03, np.nan])).tolist() == [True, False]  # m is 1


def test_an_empty_window_reports_nulls_and_a_wrong_width_is_refused() -> None:
    monitor = DriftMonitor.from_reference_file(REFERENCE)
    report = monitor.report()
    assert report["window_rows"] == 0 and report["features"][0]["psi"] is None
    with pytest.raises(ValueError, match="30 features"):
        monitor.ingest(np.zeros((2, 29)))


def test_rows_fed_one_by_one_report_as_one_batch() -> None:
    data = load_breast_cancer().data[:1500 % 569 + 300]
    one_by_one = DriftMonitor.from_reference_file(REFERENCE, window_rows=400)
    for row in data:
        one_by_one.ingest(row[None, :])
    at_once = DriftMonitor.from_reference_file(REFERENCE, window_rows=400)
    at_once.ingest(data)
    assert one_by_one.report() == at_once.report()
    assert one_by_one.report()["window_rows"] == 400


def test_non_numeric_features_are_refused_at_ingest() -> None:
    monitor = DriftMonitor.from_reference_file(REFERENCE)
    with pytest.raises(ValueError, match="must be numbers"):
        monitor.ingest(np.full((2, 30), "x", dtype=object))
