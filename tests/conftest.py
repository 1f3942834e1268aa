"""Shared fixtures: the shipped model repository, scratch copies of it, and config files.

Tests never read the working tree's `config/gateway.yaml` or `config/routing.yaml`: the README
tells users to edit them (capture on, a routing change, ...), and `make test` must pass after
that. A test that needs the shipped configuration gets it from `shipped_config(folder)`: the two
files as committed (`git show HEAD:config/...`), written into a temporary folder beside a link to
the shipped model repository. Committed is what a clone ships, so it cannot drift from it, and a
user's edits are never in it. Where there is no git history (an unpacked archive, no `git`),
the working tree's files are taken as shipped: there is nothing else to read them from.
To test a change of the shipped config itself, commit it first. Every other test writes its
own config with `write_config` (`loadtests.harness.write_gateway_config`: the repository, a
policy, CPU, and only the settings the test sets, the rest being the code's defaults) and its
policy is `DEFAULT_ROUTING` unless it passes one: the tests' own default, not the shipped one.
`tests/test_fresh_clone.py` checks all of this on a clone whose `config/` is edited as the
README's walk-throughs edit it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import yaml

from loadtests.harness import write_gateway_config

ROOT = Path(__file__).resolve().parent.parent

# A user who exported GATEWAY_CONFIG (README "Configuration") points `gateway` at their own,
# edited config: the tests, and the gateways they start, never read it.
os.environ.pop("GATEWAY_CONFIG", None)
MODELS = ROOT / "models"
MODEL = "breast-cancer"

DEFAULT_ROUTING = {"models": {MODEL: {"traffic": [{"version": 1, "weight": 0},
                                                  {"version": 2, "weight": 100}]}}}
"""The tests' default policy (`write_config`): versions 1 and 2 loaded, 2 taking the traffic."""

SHIPPED_CONFIG_FILES = ("gateway.yaml", "routing.yaml")
"""The files of `config/` that users edit, which tests read as committed (see above)."""


def committed_bytes(relative: str) -> bytes | None:
    """The file `relative` (to the repository's root) as committed at HEAD; None when there is
    no git or no history to read it from."""
    if shutil.which("git") is None:
        return None
    done = subprocess.run(["git", "-C", str(ROOT), "show", f"HEAD:./{relative}"],
                          capture_output=True, timeout=30)
    return done.stdout if done.returncode == 0 else None


def shipped_bytes(relative: str) -> bytes:
    """The file as shipped: as committed, else (no git history) as it is in the working tree."""
    committed = committed_bytes(relative)
    return committed if committed is not None else (ROOT / relative).read_bytes()


def shipped_config(folder: Path) -> Path:
    """`folder/config/{gateway,routing}.yaml` as shipped, and `folder/models` a link to the
    shipped model repository, so the shipped relative paths (`../models`) hold; returns the
    path of `gateway.yaml`, e.g. for `gateway serve --config`."""
    config = folder / "config"
    config.mkdir(parents=True, exist_ok=True)
    for name in SHIPPED_CONFIG_FILES:
        (config / name).write_bytes(shipped_bytes(f"config/{name}"))
    if not (folder / "models").exists():
        (folder / "models").symlink_to(MODELS, target_is_directory=True)
    return config / "gateway.yaml"


@pytest.fixture
def model_repo(tmp_path: Path) -> Path:
    """A scratch copy of the shipped repository, safe to tamper with."""
    target = tmp_path / "models"
    shutil.copytree(MODELS, target, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return target


ConfigWriter = Callable[..., Path]


@pytest.fixture
def write_config(tmp_path: Path) -> ConfigWriter:
    """Write gateway.yaml and routing.yaml into tmp_path; keyword arguments override settings."""

    def write(repository: Path = MODELS, routing: Any = None, **settings: Any) -> Path:
        return write_gateway_config(tmp_path / "config", repository,
                                    DEFAULT_ROUTING if routing is None else routing, **settings)

    return write


def sample_rows(rows: int, seed: int = 0) -> np.ndarray:
    """Rows shaped like the breast-cancer features: the training data's scale, float32."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer().data.astype(np.float32)
    picks = np.random.default_rng(seed).integers(0, len(data), rows)
    return np.ascontiguousarray(data[picks])


ECHO_TYPES = ["BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64",
              "FP16", "FP32", "FP64", "BYTES"]


def write_echo_model(repository: Path, name: str = "echo", version: int = 1) -> Path:
    """A real ONNX graph with one Identity per V2 datatype (input `in_<T>` -> output `out_<T>`,
    shape [-1, 2]), written with its manifest into `repository`."""
    import hashlib

    from onnx import TensorProto, helper

    elem = {"BOOL": TensorProto.BOOL, "INT8": TensorProto.INT8, "INT16": TensorProto.INT16,
            "INT32": TensorProto.INT32, "INT64": TensorProto.INT64, "UINT8": TensorProto.UINT8,
            "UINT16": TensorProto.UINT16, "UINT32": TensorProto.UINT32,
            "UINT64": TensorProto.UINT64, "FP16": TensorProto.FLOAT16,
            "FP32": TensorProto.FLOAT, "FP64": TensorProto.DOUBLE, "BYTES": TensorProto.STRING}
    inputs = [helper.make_tensor_value_info(f"in_{t}", elem[t], ["batch", 2]) for t in ECHO_TYPES]
    outputs = [helper.make_tensor_value_info(f"out_{t}", elem[t], ["batch", 2])
               for t in ECHO_TYPES]
    nodes = [helper.make_node("Identity", [f"in_{t}"], [f"out_{t}"]) for t in ECHO_TYPES]
    graph = helper.make_graph(nodes, name, inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    data = model.SerializeToString()
    version_dir = repository / name / str(version)
    version_dir.mkdir(parents=True)
    (version_dir / "model.onnx").write_bytes(data)
    (version_dir / "manifest.yaml").write_text(yaml.safe_dump(
        {"sha256": hashlib.sha256(data).hexdigest(), "created": "2026-11-24",
         "features": [f"in_{t}" for t in ECHO_TYPES]}))
    return version_dir


def echo_values(datatype: str, rows: int = 3) -> np.ndarray:
    """Sample values of a datatype, shaped [rows, 2], including each type's extremes."""
    from gateway.tensors import DATATYPES

    if datatype == "BYTES":
        return np.array([[f"r{i}-ä".encode(), b""] for i in range(rows)], dtype=object)
    dtype = DATATYPES[datatype].dtype.newbyteorder("=")
    if datatype == "BOOL":
        return (np.arange(rows * 2).reshape(rows, 2) % 2).astype(bool)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        base = np.array([info.min, info.max] + [7] * (rows * 2 - 2), dtype=dtype)
        return base.reshape(rows, 2)
    return (np.arange(rows * 2, dtype=dtype) / 4 - 1).reshape(rows, 2)


def add_version(repo: Path, version: int, model_bytes: bytes) -> None:
    """A new version of breast-cancer in `repo`: these model bytes, version 1's manifest."""
    version_dir = repo / MODEL / str(version)
    version_dir.mkdir()
    (version_dir / "model.onnx").write_bytes(model_bytes)
    manifest = yaml.safe_load((repo / MODEL / "1" / "manifest.yaml").read_text())
    manifest.update(version=version, sha256=hashlib.sha256(model_bytes).hexdigest())
    (version_dir / "manifest.yaml").write_text(yaml.safe_dump(manifest))


def one_row_only_model() -> bytes:
    """Same signature as breast-cancer, but onnxruntime raises for more than one row."""
    from onnx import TensorProto, helper

    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [1, 30])
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["input", "shape"], ["flat"]),
         helper.make_node("ReduceSum", ["flat"], ["score"], keepdims=0),
         helper.make_node("Cast", ["score"], ["label"], to=TensorProto.INT64)],
        "one-row", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 30])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, None)], [shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def add_model(repo: Path, name: str, version: int, model_bytes: bytes) -> Path:
    """Model `name` version `version` in `repo`: these bytes and a manifest with their sha256."""
    version_dir = repo / name / str(version)
    version_dir.mkdir(parents=True)
    (version_dir / "model.onnx").write_bytes(model_bytes)
    (version_dir / "manifest.yaml").write_text(yaml.safe_dump(
        {"sha256": hashlib.sha256(model_bytes).hexdigest(), "created": "2026-11-24"}))
    return version_dir


def slow_model(width: int = 64, layers: int = 200, seed: int = 0) -> bytes:
    """A real, deliberately slow ONNX graph (make bench's deep MLP, made wider): input
    [batch, 30], output `probabilities`; a few thousand rows take a fraction of a second, which
    keeps requests in flight long enough to test shutdown and faults."""
    from loadtests.models import deep_mlp

    return deep_mlp(hidden=width, layers=layers, seed=seed)


def binary_body(rows: int) -> tuple[bytes, dict[str, str]]:
    """A binary (tritonclient-style) request of `rows` random rows of 30 features, and its
    headers."""
    data = np.random.default_rng(0).random((rows, 30), dtype=np.float32)
    header = orjson.dumps({"inputs": [{"name": "input", "shape": [rows, 30], "datatype": "FP32",
                                       "parameters": {"binary_data_size": data.nbytes}}]})
    return header + data.tobytes(), {"Inference-Header-Content-Length": str(len(header)),
                                     "Content-Type": "application/octet-stream"}
