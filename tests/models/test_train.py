"""The training script rebuilds the shipped repository byte for byte on any CPU (pinned
libraries): the fitted parameters are rounded to a grid far coarser than what differs from one
CPU's BLAS kernels to another's, and the rounding changes no prediction."""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import onnxruntime as ort
import pytest
import yaml

from tests.conftest import MODEL, MODELS, ROOT

GENERIC_BLAS_CORE = {"x86_64": "Prescott", "AMD64": "Prescott", "aarch64": "ARMV8",
                     "arm64": "ARMV8"}.get(platform.machine())
"""OpenBLAS's baseline kernels for this architecture (every CPU of it runs them): a rebuild
forced onto them must write what a rebuild on this CPU's own kernels writes."""


@pytest.fixture(scope="module")
def train() -> ModuleType:
    """models/train.py as a module (models/ is a repository, not a package)."""
    spec = importlib.util.spec_from_file_location("train", ROOT / "models" / "train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["train"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("hash_seed", "blas_core"), [("1", None), ("2", None),
                                                      ("1", GENERIC_BLAS_CORE)])
def test_rebuild_reproduces_every_committed_file(tmp_path: Path, hash_seed: str,
                                                 blas_core: str | None) -> None:
    # Two hash seeds: set iteration order once leaked into the ONNX bytes. The generic BLAS
    # kernels: a float32 fit once differed in the 7th digit between two CPUs' kernels.
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    if blas_core is not None:
        env["OPENBLAS_CORETYPE"] = blas_core
    subprocess.run([sys.executable, str(ROOT / "models" / "train.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True, timeout=300, env=env)
    for version_dir in sorted((MODELS / MODEL).iterdir()):
        rebuilt = tmp_path / MODEL / version_dir.name
        for name in ("model.onnx", "manifest.yaml", "reference.json", "sample.json"):
            assert (rebuilt / name).read_bytes() == (version_dir / name).read_bytes(), \
                f"{version_dir.name}/{name} differs after a rebuild (OPENBLAS_CORETYPE={blas_core})"


def test_every_rounded_parameter_is_far_from_a_rounding_boundary(train: ModuleType) -> None:
    # What makes the rebuild independent of the CPU: a parameter that differs in its 14th digit
    # from one CPU to another still rounds to the same 6 digits, because none sits within
    # MIN_BOUNDARY_MARGIN of the point halfway between two rounded values.
    split = train.load_split()
    for spec in train.VERSIONS:
        for owner, name, values in train.rounded_parameters(train.fit(spec, split)):
            margin = train.boundary_margin(values)
            assert margin >= train.MIN_BOUNDARY_MARGIN, \
                f"version {spec.version}: {type(owner).__name__}.{name} is {margin:.1e} from a " \
                "rounding boundary"


def test_rounding_changes_no_prediction(train: ModuleType) -> None:
    split = train.load_split()
    rows = split.x.astype(np.float64)  # training and held-out rows
    for spec in train.VERSIONS:
        fitted = train.fit(spec, split)
        rounded = train.round_parameters(copy.deepcopy(fitted))
        if spec.estimator != "random_forest":  # the forest has nothing to round
            assert any(not np.array_equal(a, b) for (_, _, a), (_, _, b) in
                       zip(train.rounded_parameters(fitted), train.rounded_parameters(rounded),
                           strict=True)), f"version {spec.version}: nothing was rounded"
        assert np.array_equal(fitted.predict(rows), rounded.predict(rows)), spec.version
        np.testing.assert_allclose(rounded.predict_proba(rows), fitted.predict_proba(rows),
                                   atol=1e-4)


def test_rounding_lands_on_the_grid_and_is_idempotent(train: ModuleType) -> None:
    values = np.array([0.123456789, -98765.4321, 3.0, 1e-12 * np.pi, 0.0])
    rounded = train.significant(values)
    assert rounded.tolist() == [0.123457, -98765.4, 3.0, 3.14159e-12, 0.0]
    assert np.array_equal(train.significant(rounded), rounded)
    # The margin is the distance to the halfway point, relative to the value.
    assert train.boundary_margin(np.array([1.000005])) < 1e-9
    assert train.boundary_margin(np.array([1.0, 0.25])) > 1e-7


def test_the_shipped_onnx_graphs_answer_as_the_rounded_models(train: ModuleType) -> None:
    # Labels compare exactly on every CPU: no row's probability is within 0.016 of 0.5, and
    # float32 (onnxruntime) and float64 (scikit-learn) differ by about 1e-6.
    split = train.load_split()
    for spec in train.VERSIONS:
        rounded = train.round_parameters(train.fit(spec, split))
        session = ort.InferenceSession(str(MODELS / MODEL / str(spec.version) / "model.onnx"),
                                       providers=["CPUExecutionProvider"])
        label, probabilities = session.run(["label", "probabilities"], {"input": split.x})
        assert np.array_equal(label, rounded.predict(split.x.astype(np.float64))), spec.version
        np.testing.assert_allclose(probabilities,
                                   rounded.predict_proba(split.x.astype(np.float64)), atol=1e-5)


def test_manifests_describe_their_models() -> None:
    script_hash = hashlib.sha256((ROOT / "models" / "train.py").read_bytes()).hexdigest()
    for version_dir in sorted((MODELS / MODEL).iterdir()):
        manifest = yaml.safe_load((version_dir / "manifest.yaml").read_text())
        assert manifest["sha256"] == hashlib.sha256(
            (version_dir / "model.onnx").read_bytes()).hexdigest()
        assert manifest["lineage"]["code"]["sha256"] == script_hash
        assert manifest["lineage"]["data"]["split"]["train_rows"] == 455
        assert set(manifest["lineage"]["libraries"]) >= {"scikit-learn", "skl2onnx", "onnx"}
        assert 0.9 < manifest["metrics"]["accuracy"] <= 1.0
        assert len(manifest["features"]) == 30 and manifest["created"]


def test_reference_profiles_follow_the_spec() -> None:
    reference = json.loads((MODELS / MODEL / "1" / "reference.json").read_text())
    assert reference["rows"] == 455
    manifest = yaml.safe_load((MODELS / MODEL / "1" / "manifest.yaml").read_text())
    assert [f["name"] for f in reference["features"]] == manifest["features"]
    for feature in reference["features"]:
        assert feature["kind"] == "numeric"
        assert len(feature["edges"]) == 9 and len(feature["counts"]) == 10
        assert sum(feature["counts"]) + feature["nan"] == 455
        assert feature["edges"] == sorted(feature["edges"])
    outputs = {o["name"]: o for o in reference["outputs"]}
    assert sum(outputs["probabilities[1]"]["counts"]) == 455
    assert outputs["label"]["categories"] == [0, 1]
    assert reference["labels"]["kind"] == "categorical"
    assert sum(reference["labels"]["counts"]) == 455
