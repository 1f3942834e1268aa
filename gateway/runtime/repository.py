"""Scan a model repository: `<root>/<model>/<version>/{model.onnx, manifest.yaml, reference.json}`.

Names come from the filesystem and are checked against a strict pattern; requests only look names
up in the resulting table, so nothing a client sends ever becomes a path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class VersionEntry:
    """One version folder; `problem` says why it cannot be loaded, if it cannot."""

    model: str
    version: int
    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None

    @property
    def model_file(self) -> Path:
        return self.path / "model.onnx"

    @property
    def reference_file(self) -> Path:
        return self.path / "reference.json"

    @property
    def sha256(self) -> str:
        return str(self.manifest.get("sha256", ""))


Repository = dict[str, dict[int, VersionEntry]]
"""Model name -> version number -> entry."""


def read_manifest(path: Path) -> tuple[dict[str, Any], str | None]:
    """The manifest and None, or what is wrong with it."""
    try:
        manifest = yaml.safe_load(path.read_text())
    except OSError as exc:
        return {}, f"cannot read {path.name}: {exc.strerror}"
    except yaml.YAMLError as exc:
        return {}, f"{path.name} is not valid YAML: {exc}"
    if not isinstance(manifest, dict):
        return {}, f"{path.name} must be a mapping"
    sha = manifest.get("sha256")
    if not isinstance(sha, str) or not _SHA256_PATTERN.match(sha):
        return manifest, f"{path.name} needs 'sha256': the 64 lower-case hex digits of model.onnx"
    features = manifest.get("features")
    if features is not None and (not isinstance(features, list)
                                 or not all(isinstance(f, str) for f in features)):
        return manifest, f"{path.name}: 'features' must be a list of column names"
    return manifest, None


def scan_version(model: str, version: int, path: Path) -> VersionEntry:
    if not (path / "model.onnx").is_file():
        return VersionEntry(model, version, path, problem="model.onnx is missing")
    manifest, problem = read_manifest(path / "manifest.yaml")
    return VersionEntry(model, version, path, manifest, problem)


def _version_number(name: str) -> int | None:
    """A positive integer written canonically ("1", never "01" or "+1"), else None."""
    if not name.isdigit() or name.startswith("0"):
        return None
    return int(name)


def scan_repository(root: Path) -> Repository:
    """Every model and version folder under `root`; folders that do not fit are skipped."""
    repository: Repository = {}
    if not root.is_dir():
        return repository
    for model_dir in sorted(root.iterdir()):
        if not model_dir.is_dir() or not MODEL_NAME_PATTERN.match(model_dir.name):
            continue
        versions: dict[int, VersionEntry] = {}
        for version_dir in model_dir.iterdir():
            number = _version_number(version_dir.name)
            if number is not None and version_dir.is_dir():
                versions[number] = scan_version(model_dir.name, number, version_dir)
        if versions:
            repository[model_dir.name] = dict(sorted(versions.items()))
    return repository
