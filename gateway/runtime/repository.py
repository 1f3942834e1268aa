"""Scan a model repository: `<root>/<model>/<version>/{model.onnx, manifest.yaml, reference.json,
sample.json}`.

Names come from the filesystem and are served as given when README "Model repository" allows them
(at most 128
characters, no leading `.`, no `/`, `%` or control character; clients URL-quote the rest). A
version is a folder named by ASCII digits without a leading zero. Requests only look names up in
the resulting table, so nothing a client sends ever becomes a path. A folder that is neither a
model nor a version is never skipped silently: the scan says which and why, and the gateway logs
it and `gateway check` prints it.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MAX_MODEL_NAME = 128
MAX_VERSION_DIGITS = 18
"""Versions are at most this many digits, so every one fits an int64 (as Triton's do)."""
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
    def sample_file(self) -> Path:
        return self.path / "sample.json"

    @property
    def sha256(self) -> str:
        return str(self.manifest.get("sha256", ""))


def label_output_of(manifest: dict[str, Any], output_names: list[str]) -> str | None:
    """The output holding the predicted label (classifiers): the manifest's `outputs.label`,
    else an output named `label`."""
    outputs = manifest.get("outputs")
    if isinstance(outputs, dict) and isinstance(outputs.get("label"), str):
        return str(outputs["label"])
    return "label" if "label" in output_names else None


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


def model_name_problem(name: str) -> str | None:
    """Why `name` cannot be a model name (README "Model repository"), or None when it can."""
    if len(name) > MAX_MODEL_NAME:
        return f"a model name has at most {MAX_MODEL_NAME} characters"
    if name.startswith("."):
        return "a name beginning with '.' is hidden, never a model"
    if "%" in name:
        return "a model name may not hold '%' (clients URL-quote names)"
    if any(unicodedata.category(c) == "Cc" for c in name):
        return "a model name may not hold a control character"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "the folder name is not UTF-8"
    return None


def version_number(name: str) -> int | None:
    """A version from its folder or URL text: ASCII digits without a leading zero, else None.

    str.isdigit() alone also holds for '²' (which int() refuses) and '٣' (which int() reads as 3,
    an alias of version 3)."""
    if (not name.isascii() or not name.isdigit() or name.startswith("0")
            or len(name) > MAX_VERSION_DIGITS):
        return None
    return int(name)


def scan_repository(root: Path, skipped: list[str] | None = None) -> Repository:
    """Every model and version folder under `root`. Folders that are neither are left out and,
    when `skipped` is given, one line each saying why is appended to it."""
    repository: Repository = {}
    if not root.is_dir():
        return repository
    notes: list[str] = []
    for model_dir in sorted(root.iterdir()):
        if not model_dir.is_dir():
            continue  # files beside the models (a README, the training script) are no models
        problem = model_name_problem(model_dir.name)
        if problem is not None:
            notes.append(f"{model_dir.name!r}: not a model: {problem}")
            continue
        versions: dict[int, VersionEntry] = {}
        for version_dir in sorted(model_dir.iterdir()):
            if not version_dir.is_dir():
                continue
            number = version_number(version_dir.name)
            if number is None:
                notes.append(f"{model_dir.name!r}/{version_dir.name!r}: not a version: a version "
                             f"folder is named by ASCII digits without a leading zero (at most "
                             f"{MAX_VERSION_DIGITS})")
                continue
            versions[number] = scan_version(model_dir.name, number, version_dir)
        if versions:
            repository[model_dir.name] = dict(sorted(versions.items()))
        else:
            notes.append(f"{model_dir.name!r}: not a model: it has no version folder (e.g. "
                         f"{model_dir.name}/1/model.onnx)")
    if skipped is not None:
        skipped.extend(notes)
    return repository


Fingerprint = tuple[tuple[str, int, int], ...]


def repository_fingerprint(root: Path) -> Fingerprint:
    """Name, size and modification time of every folder and file two levels below `root` (the
    model and version folders and their files): changes when a version arrives, or when a sync
    finishes writing one. A few hundred stat calls for a large repository."""
    entries: list[tuple[str, int, int]] = []
    stack = [(str(root), 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            with os.scandir(folder) as listing:
                for item in listing:
                    try:
                        info = item.stat()
                    except OSError:
                        continue  # deleted while listed
                    entries.append((item.path, info.st_size, info.st_mtime_ns))
                    if depth < 2 and item.is_dir():
                        stack.append((item.path, depth + 1))
        except OSError:
            continue
    return tuple(sorted(entries))
