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


def test_folders_that_are_not_models_or_versions_are_named_not_served(tmp_path: Path) -> None:
    for folder in ("good/1", "good/01", "good/latest", "good/0", "good/²", "good/٣", ".hidden/1",
                   "breast cancer copy/1", "ünïcødé (v2)/3", "100%/1", "tab\there/1",
                   "x" * 129 + "/1"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "model.onnx").write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "train.py").write_text("# files beside the models are no models\n")
    skipped: list[str] = []
    repository = scan_repository(tmp_path, skipped)
    # SPEC 1: names are served as given, spaces and all; versions are ASCII digits only.
    assert list(repository) == ["breast cancer copy", "good", "ünïcødé (v2)"]
    assert list(repository["good"]) == [1]
    assert list(repository["ünïcødé (v2)"]) == [3]
    text = "\n".join(skipped)
    for named in ("'good'/'01'", "'good'/'latest'", "'good'/'0'", "'good'/'²'", "'good'/'٣'",
                  "'.hidden'", "'100%'", "'tab\\there'", "'empty'", "x" * 129):
        assert named in text, named
    assert "train.py" not in text
    assert len(skipped) == 10


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
