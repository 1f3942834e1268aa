"""Live accuracy, MAE and label drift from feedback, against plain NumPy on the same data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from gateway.observability.drift.stats import DriftRule, drift_statistics
from gateway.observability.feedback import FeedbackService
from gateway.protocol.feedback import parse_feedback
from gateway.runtime.repository import scan_repository
from tests.conftest import MODEL, MODELS

REFERENCE_LABELS = json.loads((MODELS / MODEL / "3" / "reference.json").read_text())["labels"]


def service(window_rows: int = 5000, repository: Path = MODELS) -> FeedbackService:
    feedback = FeedbackService(window_rows)
    feedback.sync(scan_repository(repository))
    return feedback


def send(feedback: FeedbackService, items: list[dict[str, object]]) -> None:
    model = feedback.model(MODEL)
    assert model is not None
    model.fold(parse_feedback(orjson.dumps({"feedback": items}), model.space,
                              frozenset({1, 2, 3}), 100_000))


def test_live_accuracy_is_exactly_what_the_labels_imply_per_version() -> None:
    rng = np.random.default_rng(1)
    feedback = service()
    labels = rng.integers(0, 2, 1000)
    predictions = np.where(rng.random(1000) < 0.8, labels, 1 - labels)
    versions = rng.choice([1, 2], 1000)
    items = [{"label": int(label), "version": int(version), "prediction": int(prediction)}
             for label, version, prediction in zip(labels, versions, predictions, strict=True)]
    send(feedback, items[:400])
    send(feedback, items[400:])
    model = feedback.model(MODEL)
    assert model is not None
    for version in (1, 2):
        mine = versions == version
        expected = float(np.mean(labels[mine] == predictions[mine]))
        performance = model.performance(version)
        assert performance["labelled_rows"] == int(mine.sum())
        assert performance["accuracy"] == round(expected, 6)
        assert performance["reference"] == pytest.approx(
            {1: 0.982456, 2: 0.938596}[version])
    assert model.performance(3) == {"labelled_rows": 0, "accuracy": None,
                                    "reference": pytest.approx(0.947368)}


def plain_psi_js(reference: np.ndarray, live: np.ndarray) -> tuple[float, float]:
    e = reference / reference.sum() + 1e-4
    a = live / live.sum() + 1e-4
    psi = float(np.sum((a - e) * np.log(a / e)))
    p, q = reference / reference.sum(), live / live.sum()
    m = (p + q) / 2
    kl = lambda x: np.sum(np.where(x > 0, x * np.log2(np.where(x > 0, x, 1) / m), 0))  # noqa: E731
    return psi, float(np.sqrt((kl(p) + kl(q)) / 2))


def test_label_drift_equals_plain_numpy_and_flags_a_prior_shift_only() -> None:
    rng = np.random.default_rng(2)
    feedback = service()
    reference = np.asarray(REFERENCE_LABELS["counts"], dtype=np.float64)
    same_mix = rng.choice([0, 1], 3000, p=reference / reference.sum())
    send(feedback, [{"label": int(x)} for x in same_mix])
    model = feedback.model(MODEL)
    assert model is not None
    report = model.labels_report(DriftRule())
    live = np.bincount(same_mix, minlength=2).astype(np.float64)
    psi, js = plain_psi_js(reference, live)
    assert report["psi"] == pytest.approx(psi, abs=1e-6)  # reports round to 6 places
    assert report["js"] == pytest.approx(js, abs=1e-6)
    counts = model.labels.total()  # the statistics themselves, unrounded
    stats = drift_statistics(model.labels.binner.reference, counts.bins,
                             model.labels.binner.offsets)
    assert abs(stats["psi"][0] - psi) < 1e-9 and abs(stats["js"][0] - js) < 1e-9
    assert report["window_rows"] == 3000 and not report["drifted"]
    send(feedback, [{"label": 1}] * 5000)  # every label one class: a prior shift
    shifted = model.labels_report(DriftRule())
    assert shifted["drifted"] and shifted["psi"] > 0.2
    psi, _ = plain_psi_js(reference, np.array([0.0, 5000.0]))
    assert shifted["psi"] == pytest.approx(psi, abs=1e-6)


def test_unseen_labels_are_counted_apart() -> None:
    feedback = service()
    # A label outside the classes is counted apart; the prediction is a class (a prediction
    # that is not one is refused: tests/protocol/test_feedback.py).
    send(feedback, [{"label": 0}, {"label": 5}, {"label": 5, "version": 1, "prediction": 1},
                    {"label": 1}])
    model = feedback.model(MODEL)
    assert model is not None
    assert model.labels_report(DriftRule())["unseen"] == 2
    np.testing.assert_array_equal(model.label_counts, [1, 1, 2])
    registry = CollectorRegistry()
    registry.register(feedback.collector(lambda model: DriftRule()))
    text = generate_latest(registry).decode()
    assert f'gateway_label_rows_total{{label="_unseen",model="{MODEL}"}} 2.0' in text
    assert f'gateway_feedback_rows_total{{model="{MODEL}",version="none"}} 3.0' in text
    assert f'gateway_feedback_correct_rows_total{{model="{MODEL}",version="1"}} 0.0' in text


def test_a_label_older_than_the_window_no_longer_counts() -> None:
    feedback = service(window_rows=10)
    send(feedback, [{"label": 0, "version": 1, "prediction": 1}] * 7)  # wrong
    send(feedback, [{"label": 1, "version": 1, "prediction": 1}] * 6)  # right
    model = feedback.model(MODEL)
    assert model is not None
    assert model.performance(1)["labelled_rows"] == 10
    assert model.performance(1)["accuracy"] == 0.6  # the last 10: 4 wrong, 6 right
    assert model.versions[1].rows == 13 and model.versions[1].correct == 6  # counters: all
    assert model.labels_report(DriftRule())["window_rows"] == 10


def test_a_regressor_gets_mae(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    version_dir = repository / "price" / "1"
    version_dir.mkdir(parents=True)
    shutil.copy(MODELS / MODEL / "1" / "model.onnx", version_dir)
    (version_dir / "manifest.yaml").write_text(
        (MODELS / MODEL / "1" / "manifest.yaml").read_text().replace(
            "accuracy: 0.982456", "mae: 1.25"))
    (version_dir / "reference.json").write_text(json.dumps({"rows": 10, "features": [],
        "labels": {"name": "label", "kind": "numeric", "edges": [1.0, 2.0, 3.0],
                   "counts": [2, 3, 3, 2]}}))
    feedback = FeedbackService(5000)
    feedback.sync(scan_repository(repository))
    model = feedback.model("price")
    assert model is not None and not model.space.classifier
    labels = np.array([1.0, 2.5, 4.0, 0.5])
    predictions = np.array([1.5, 2.0, 2.0, 0.5])
    model.fold(parse_feedback(orjson.dumps({"feedback": [
        {"label": float(y), "version": 1, "prediction": float(p)}
        for y, p in zip(labels, predictions, strict=True)]}), model.space, frozenset({1}), 10))
    performance = model.performance(1)
    assert performance == {"labelled_rows": 4, "mae": float(np.mean(np.abs(labels - predictions))),
                           "reference": 1.25}
    registry = CollectorRegistry()
    registry.register(feedback.collector(lambda model: DriftRule()))
    text = generate_latest(registry).decode()
    assert 'gateway_live_mae{model="price",version="1"} 0.75' in text
    assert 'gateway_reference_mae{model="price",version="1"} 1.25' in text
    assert "gateway_live_accuracy{" not in text
