"""The training script rebuilds the shipped repository byte for byte (pinned libraries)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import MODEL, MODELS, ROOT


@pytest.mark.parametrize("hash_seed", ["1", "2"])
def test_rebuild_reproduces_every_committed_file(tmp_path: Path, hash_seed: str) -> None:
    # Two hash seeds: set iteration order once leaked into the ONNX bytes.
    subprocess.run([sys.executable, str(ROOT / "models" / "train.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True, timeout=300,
                   env={**os.environ, "PYTHONHASHSEED": hash_seed})
    for version_dir in sorted((MODELS / MODEL).iterdir()):
        rebuilt = tmp_path / MODEL / version_dir.name
        for name in ("model.onnx", "manifest.yaml", "reference.json", "sample.json"):
            assert (rebuilt / name).read_bytes() == (version_dir / name).read_bytes(), \
                f"{version_dir.name}/{name} differs after a rebuild"


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
