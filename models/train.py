"""Train, export and describe the shipped models: breast-cancer versions 1, 2 and 3.

Run `make models` (or `python models/train.py`) to rebuild `models/breast-cancer/<version>/`.
With the library versions pinned in `constraints.txt` the rebuild writes byte-identical files on
any x86-64 or arm64 CPU, so each `model.onnx` keeps the `sha256` its manifest records;
`tests/models/test_train.py` checks it, once with this machine's BLAS kernels and once with
OpenBLAS's generic ones.

Why the bytes do not depend on the CPU (BLAS kernels sum in different orders, so a float32
fit differed in the 7th significant digit from one CPU to another):
- every model is fitted in float64 on the float32 feature values (widened exactly), which brings
  the CPU-to-CPU differences of the fitted parameters down to at most about 5e-14 of their size
  (measured between OpenBLAS's generic, Haswell and SkylakeX kernels);
- then every parameter that comes out of float arithmetic (the scaler's means and scales, the
  logistic regression's coefficients and intercept, the boosted trees' leaf values) is rounded
  to `SIGNIFICANT_DIGITS` significant digits, a grid ten million times coarser than those
  differences, before export. `tests/models/test_train.py` checks that every such parameter
  lies at least `MIN_BOUNDARY_MARGIN` (relative) from a rounding boundary, so no CPU's last
  bits can move it to the other side, and that the rounding changes no predicted label.
- What is not rounded is exact arithmetic on exact inputs: tree thresholds are midpoints of two
  float32 feature values, the random forest's leaves are fractions of integer bootstrap counts.
  Reference profiles are quantiles of the float32 features (exact) and of predicted
  probabilities, whose edges are rounded as the parameters are.
- What could still differ, in principle: a boosting split chosen between two candidates whose
  gains tie to the last bit, if a CPU's `exp` differed in its last bit (the logistic loss's
  gradients); the OpenBLAS kernels do not touch the trees, and no such tie shows in the tests.

Data: scikit-learn's bundled Wisconsin breast-cancer set (569 rows, 30 numeric features), split
80/20 with a fixed seed: 455 training rows, 114 held out. Every version sees the same split, so
their held-out metrics compare. The `created` date of a version is part of its definition below
(the day it was released), not the time of the rebuild, so a rebuild reproduces manifests too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import skl2onnx
import sklearn
import yaml
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from gateway.observability.drift import profile

MODEL_NAME = "breast-cancer"
SPLIT_SEED = 0
TEST_FRACTION = 0.2
SAMPLE_ROWS = 2
"""Held-out rows in each version's sample.json (its warm-up request)."""
BINS = 10
SIGNIFICANT_DIGITS = 6
"""Fitted float parameters and probability edges are rounded to this many significant digits."""
MIN_BOUNDARY_MARGIN = 1e-11
"""Every rounded parameter lies at least this far (relative to its size) from a rounding
boundary: over 200 times the largest CPU-to-CPU difference of a float64 fit measured (4.5e-14).
The shipped fits have 2e-8 (logistic regression) and 1.2e-10 (boosted trees)."""
# Pinned opsets: the exported graph must not change when a newer converter raises its default.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}


@dataclass(frozen=True)
class VersionSpec:
    version: int
    created: str
    description: str
    estimator: str
    params: dict[str, Any]


VERSIONS = (
    VersionSpec(1, "2026-11-24", "standardised logistic regression (baseline)",
                "logistic_regression", {"C": 1.0, "max_iter": 1000}),
    VersionSpec(2, "2026-11-24", "gradient-boosted trees", "gradient_boosting",
                {"n_estimators": 150, "max_depth": 3, "learning_rate": 0.1, "subsample": 0.9,
                 "random_state": 0}),
    VersionSpec(3, "2026-11-24", "random forest (shadow candidate)", "random_forest",
                {"n_estimators": 60, "max_depth": 6, "random_state": 0}),
)


def build_estimator(spec: VersionSpec) -> Any:
    if spec.estimator == "logistic_regression":
        return Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(**spec.params))])
    if spec.estimator == "gradient_boosting":
        return GradientBoostingClassifier(**spec.params)
    if spec.estimator == "random_forest":
        return RandomForestClassifier(**spec.params)
    raise ValueError(f"unknown estimator {spec.estimator!r}")


@dataclass(frozen=True)
class Split:
    """The bundled data and its fixed 80/20 split; features are float32, as the graph sees them."""

    x: np.ndarray
    y: np.ndarray
    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    features: list[str]


def load_split() -> Split:
    data = load_breast_cancer()
    x = data.data.astype(np.float32)  # train on what the ONNX graph sees: float32 values
    y = data.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=y)
    return Split(x, y, x_train, x_test, y_train, y_test, [str(f) for f in data.feature_names])


def fit(spec: VersionSpec, split: Split) -> Any:
    """The version's estimator fitted in float64 on the float32 values (exact widening): a
    float32 fit differs from one CPU's BLAS kernels to another's in the 7th digit."""
    return build_estimator(spec).fit(split.x_train.astype(np.float64), split.y_train)


def significant(values: np.ndarray) -> np.ndarray:
    """`values` rounded to SIGNIFICANT_DIGITS significant digits (Python's correctly rounded
    decimal formatting: the same result on every CPU for the same input)."""
    flat = [float(f"{v:.{SIGNIFICANT_DIGITS - 1}e}") for v in np.asarray(values).ravel()]
    return np.array(flat, dtype=np.float64).reshape(np.shape(values))


def rounded_parameters(estimator: Any) -> list[tuple[Any, str, np.ndarray]]:
    """(owner, attribute, values) of every fitted parameter that float sums produce, the ones
    `round_parameters` rounds: tree thresholds and random-forest leaves are exact already."""
    if isinstance(estimator, Pipeline):
        return [p for _, step in estimator.steps for p in rounded_parameters(step)]
    if isinstance(estimator, StandardScaler):
        return [(estimator, "mean_", estimator.mean_), (estimator, "scale_", estimator.scale_)]
    if isinstance(estimator, LogisticRegression):
        return [(estimator, "coef_", estimator.coef_),
                (estimator, "intercept_", estimator.intercept_)]
    if isinstance(estimator, GradientBoostingClassifier):
        return [(tree.tree_, "value", tree.tree_.value) for tree in estimator.estimators_.ravel()]
    return []


def round_parameters(estimator: Any) -> Any:
    """Round, in place, what `rounded_parameters` names; returns the estimator."""
    for owner, name, values in rounded_parameters(estimator):
        if name == "value":  # a tree's values are a view of its nodes: write into it
            values[...] = significant(values)
        else:
            setattr(owner, name, significant(values))
    return estimator


def boundary_margin(values: np.ndarray) -> float:
    """The smallest distance, relative to the value, from any of `values` to a boundary of
    the SIGNIFICANT_DIGITS rounding grid (the point halfway between two rounded values)."""
    finite = np.abs(np.asarray(values, dtype=np.float64).ravel())
    finite = finite[finite > 0]
    if finite.size == 0:
        return float("inf")
    step = 10.0 ** (np.floor(np.log10(finite)) - (SIGNIFICANT_DIGITS - 1))
    fraction = finite / step - np.floor(finite / step)
    return float((np.abs(fraction - 0.5) * step / finite).min())


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def numeric_profile(name: str, values: np.ndarray, rounded: bool = False) -> dict[str, Any]:
    """The library's profile (gateway.observability.drift.profile, README "Drift monitor"):
    ten bins at the reference deciles, a value holding a tenth of the rows a bin of its own,
    NaN counted apart. `rounded`: the values come out of a model's float arithmetic, so their
    edges are rounded as parameters are (the features' edges are quantiles of exact float32
    data and need no rounding)."""
    return profile.numeric_profile(name, values,
                                   edge_digits=SIGNIFICANT_DIGITS if rounded else None)


def categorical_profile(name: str, values: np.ndarray, categories: list[int]) -> dict[str, Any]:
    return profile.categorical_profile(name, values, categories)


def export_onnx(estimator: Any, n_features: int) -> bytes:
    model = convert_sklearn(
        estimator,
        name=MODEL_NAME,
        initial_types=[("input", FloatTensorType([None, n_features]))],
        options={id(estimator): {"zipmap": False}},  # plain label and probability tensors
        target_opset=TARGET_OPSET,
    )
    model.producer_version = skl2onnx.__version__
    # skl2onnx collects opset imports in a set, whose order follows PYTHONHASHSEED: sort them so
    # the serialised bytes (and the sha256) do not change from one run to the next.
    opsets = sorted((o.domain, o.version) for o in model.opset_import)
    del model.opset_import[:]
    model.opset_import.extend(onnx.helper.make_opsetid(d, v) for d, v in opsets)
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString(deterministic=True))


def build_version(spec: VersionSpec, out_dir: Path, script_hash: str) -> None:
    split = load_split()
    x, y, features = split.x, split.y, split.features
    x_train, x_test, y_train, y_test = split.x_train, split.x_test, split.y_train, split.y_test
    classes = [int(c) for c in np.unique(y)]

    estimator = round_parameters(fit(spec, split))
    proba_test = estimator.predict_proba(x_test.astype(np.float64))
    proba_train = estimator.predict_proba(x_train.astype(np.float64))
    label_train = estimator.predict(x_train.astype(np.float64))

    onnx_bytes = export_onnx(estimator, x.shape[1])
    version_dir = out_dir / MODEL_NAME / str(spec.version)
    version_dir.mkdir(parents=True, exist_ok=True)
    (version_dir / "model.onnx").write_bytes(onnx_bytes)

    manifest = {
        "name": MODEL_NAME,
        "version": spec.version,
        "description": spec.description,
        "sha256": sha256_bytes(onnx_bytes),
        "created": spec.created,
        "task": "classification",
        "features": features,
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, len(features)]}],
        "outputs": {"label": "label", "probabilities": "probabilities", "classes": classes},
        "lineage": {
            "code": {"path": "models/train.py", "sha256": script_hash},
            "data": {
                "source": "sklearn.datasets.load_breast_cancer",
                "sha256": sha256_bytes(x.tobytes() + y.tobytes()),
                "rows": int(x.shape[0]),
                "split": {"test_fraction": TEST_FRACTION, "random_state": SPLIT_SEED,
                          "stratify": True, "train_rows": int(x_train.shape[0]),
                          "test_rows": int(x_test.shape[0])},
            },
            "estimator": spec.estimator,
            "params": spec.params,
            "opset": TARGET_OPSET,
            "libraries": {"scikit-learn": sklearn.__version__, "skl2onnx": skl2onnx.__version__,
                          "onnx": onnx.__version__, "numpy": np.__version__},
        },
        "metrics": {
            "accuracy": round(float(accuracy_score(y_test, proba_test.argmax(axis=1))), 6),
            "roc_auc": round(float(roc_auc_score(y_test, proba_test[:, 1])), 6),
            "log_loss": round(float(log_loss(y_test, proba_test)), 6),
            "held_out_rows": int(x_test.shape[0]),
        },
    }
    (version_dir / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))

    reference = {
        "rows": int(x_train.shape[0]),
        "features": [numeric_profile(f, x_train[:, i].astype(np.float64))
                     for i, f in enumerate(features)],
        "outputs": [
            categorical_profile("label", label_train, classes),
            numeric_profile("probabilities[1]", proba_train[:, 1], rounded=True),
        ],
        "labels": categorical_profile("label", y_train, classes),
    }
    (version_dir / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")

    # README "Model repository": the gateway warms the version up with this request before it
    # takes traffic (a failure there fails the version); two held-out rows, as a V2 request body.
    rows = x_test[:SAMPLE_ROWS]
    sample = {"id": f"{MODEL_NAME}-{spec.version}-sample",
              "inputs": [{"name": "input", "shape": list(rows.shape), "datatype": "FP32",
                          "data": [[float(v) for v in row] for row in rows]}]}
    (version_dir / "sample.json").write_text(json.dumps(sample, indent=1) + "\n")
    print(f"{MODEL_NAME}/{spec.version}: {spec.description}, held-out accuracy "
          f"{manifest['metrics']['accuracy']:.4f}, sha256 {manifest['sha256'][:12]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="model repository to write into (default: this folder)")
    args = parser.parse_args()
    script_hash = sha256_bytes(Path(__file__).read_bytes())
    for spec in VERSIONS:
        build_version(spec, args.out, script_hash)


if __name__ == "__main__":
    main()
