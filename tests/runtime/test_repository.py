from __future__ import annotations

from pathlib import Path

from gateway.runtime.repository import scan_repository
from tests.conftest import MODEL, MODELS


def test_shipped_repository_is_scanned_with_manifests() -> None:
    repository = scan_repository(MODELS)
    assert list(repository) == [MODEL]
    assert list(repository[MODEL]) == [1, 2, 3]
    entry = repository[MODEL][2]
    assert entry.problem is None
    assert len(entry.sha256) == 64
    assert len(entry.manifest["features"]) == 30


def test_folders_that_are_not_models_or_versions_are_skipped(tmp_path: Path) -> None:
    for folder in ("good/1", "good/01", "good/latest", "good/0", ".hidden/1", "bad name/1"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "model.onnx").write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    repository = scan_repository(tmp_path)
    assert list(repository) == ["good"]
    assert list(repository["good"]) == [1]


def test_manifest_problems_are_recorded_not_raised(tmp_path: Path) -> None:
    cases = {"nomodel": None, "nomanifest": "", "badyaml": "a: [", "nosha": "created: x",
             "shortsha": "sha256: abc", "badfeatures": "sha256: " + "a" * 64 + "\nfeatures: 3"}
    for model, manifest in cases.items():
        version = tmp_path / model / "1"
        version.mkdir(parents=True)
        if model != "nomodel":
            (version / "model.onnx").write_bytes(b"x")
        if manifest:
            (version / "manifest.yaml").write_text(manifest)
    repository = scan_repository(tmp_path)
    problems = {model: repository[model][1].problem for model in cases}
    assert problems["nomodel"] == "model.onnx is missing"
    assert "cannot read manifest.yaml" in str(problems["nomanifest"])
    assert "not valid YAML" in str(problems["badyaml"])
    assert "needs 'sha256'" in str(problems["nosha"])
    assert "needs 'sha256'" in str(problems["shortsha"])
    assert "'features' must be a list" in str(problems["badfeatures"])


def test_missing_root_is_an_empty_repository(tmp_path: Path) -> None:
    assert scan_repository(tmp_path / "nope") == {}
