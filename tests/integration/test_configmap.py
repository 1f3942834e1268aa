"""The gateway on a Kubernetes ConfigMap mount, laid out before it starts, as the kubelet lays it:

    config/..2026_12_03_10_00_00.1/{gateway.yaml, routing.yaml}
    config/..data -> ..2026_12_03_10_00_00.1
    config/gateway.yaml -> ..data/gateway.yaml
    config/routing.yaml -> ..data/routing.yaml

An update writes a new timestamped folder, renames a new `..data` link over the old one and
deletes the old folder (SPEC 4). And the model repository changing under a rejected edit: the
version it named arrives later (SPEC 4), or the edit named a good and a bad version.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from tests.conftest import MODEL, MODELS, add_version, sample_rows
from tests.integration.conftest import Start
from tests.integration.server import GatewayProcess

INFER = f"/v2/models/{MODEL}/infer"
SWAPS = 20
BODY = orjson.dumps({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32",
                                 "data": sample_rows(1).ravel().tolist()}]})


def routing(weights: dict[int, int]) -> dict[str, Any]:
    return {"models": {MODEL: {"traffic": [{"version": v, "weight": w}
                                           for v, w in weights.items()]}}}


class ConfigMap:
    """A ConfigMap volume in `mount`, updated the way the kubelet's atomic writer does it."""

    def __init__(self, mount: Path, files: dict[str, str]) -> None:
        self.mount = mount
        mount.mkdir()
        self._serial = 0
        self._write(files)
        for name in files:
            (mount / name).symlink_to(f"..data/{name}")

    def _write(self, files: dict[str, str]) -> None:
        self._serial += 1
        stamp = self.mount / time.strftime(f"..%Y_%m_%d_%H_%M_%S.{self._serial}")
        stamp.mkdir()
        for name, text in files.items():
            (stamp / name).write_text(text)
        old = os.readlink(self.mount / "..data") if (self.mount / "..data").is_symlink() else None
        link = self.mount / "..data_tmp"
        link.symlink_to(stamp.name)
        os.replace(link, self.mount / "..data")
        if old is not None:
            shutil.rmtree(self.mount / old)

    def update(self, files: dict[str, str]) -> None:
        self._write(files)


def gateway_yaml(repository: str = "../models") -> str:
    return yaml.safe_dump({"model_repository": repository, "routing": "routing.yaml",
                           "execution_provider": "cpu", "drift": {"enabled": False}})


def served_by(server: GatewayProcess) -> str:
    reply = server.request("POST", INFER, _body())
    assert reply.status == 200, reply.body
    return reply.headers["x-model-version"]


def _body() -> bytes:
    return BODY


def wait_until(condition: Any, timeout_s: float) -> float:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout_s, f"not within {timeout_s} s"
        time.sleep(0.02)
    return time.monotonic() - start


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    """A model repository beside the ConfigMap mount, as `../models` from the config."""
    shutil.copytree(MODELS, tmp_path / "models", ignore=shutil.ignore_patterns("*.py",
                                                                              "__pycache__"))
    return tmp_path


@pytest.mark.parametrize("config_on_configmap", [True, False],
                         ids=["gateway.yaml on the ConfigMap", "gateway.yaml beside it"])
def test_every_kubelet_swap_applies_within_2_s(layout: Path, start: Start,
                                               config_on_configmap: bool) -> None:
    files = {"routing.yaml": yaml.safe_dump(routing({1: 100, 2: 0}))}
    if config_on_configmap:
        files["gateway.yaml"] = gateway_yaml()
        config = layout / "config" / "gateway.yaml"
    else:
        config = layout / "gateway.yaml"
        config.write_text(gateway_yaml("models").replace("routing.yaml",
                                                         "config/routing.yaml"))
    volume = ConfigMap(layout / "config", files)
    server = start(config)
    assert served_by(server) == "1"
    took = []
    for swap in range(SWAPS):
        version = 2 if swap % 2 == 0 else 1
        files["routing.yaml"] = yaml.safe_dump(routing({version: 100, 3 - version: 0}))
        volume.update(files)
        took.append(wait_until(lambda v=str(version): served_by(server) == v, timeout_s=2.0))
    assert len(took) == SWAPS
    assert server.metric('gateway_config_reloads_total{result="error"}') == 0
    assert server.metric('gateway_config_reloads_total{result="success"}') == SWAPS
    # The old folders are gone, as the kubelet leaves it: the gateway followed the link.
    assert len([p for p in (layout / "config").iterdir() if p.name.startswith("..2")]) == 1


def test_a_rejected_edit_applies_when_its_version_arrives(layout: Path, start: Start) -> None:
    volume = ConfigMap(layout / "config", {"routing.yaml": yaml.safe_dump(routing({1: 100,
                                                                                   2: 0})),
                                           "gateway.yaml": gateway_yaml()})
    server = start(layout / "config" / "gateway.yaml")
    assert served_by(server) == "1"
    # The ConfigMap lands first: version 4 is not in the repository yet.
    edit = {"routing.yaml": yaml.safe_dump(routing({1: 0, 4: 100})),
            "gateway.yaml": gateway_yaml()}
    volume.update(edit)
    wait_until(lambda: server.metric('gateway_config_reloads_total{result="error"}') == 1, 2.0)
    assert served_by(server) == "1"
    # The model sync lands in two steps, as a copy does: the manifest, then the model.
    model_bytes = (layout / "models" / MODEL / "2" / "model.onnx").read_bytes()
    add_version(layout / "models", 4, model_bytes)
    model_file = layout / "models" / MODEL / "4" / "model.onnx"
    model_file.rename(model_file.with_name("model.onnx.partial"))
    time.sleep(1.5)  # a retry now fails again: model.onnx is missing
    assert served_by(server) == "1"
    model_file.with_name("model.onnx.partial").rename(model_file)
    wait_until(lambda: served_by(server) == "4", timeout_s=3.0)
    routing_doc = server.request("GET", f"/v2/models/{MODEL}/versions/4/ready")
    assert routing_doc.status == 200
    assert "trying the rejected routing file again" in server.log()


def test_a_rejected_edit_leaves_no_trace(layout: Path, start: Start) -> None:
    models = layout / "models"
    good = (models / MODEL / "2" / "model.onnx").read_bytes()
    add_version(models, 4, good)
    add_version(models, 5, good)
    (models / MODEL / "5" / "model.onnx").write_bytes(good + b"\0")  # tampered: sha256 differs
    volume = ConfigMap(layout / "config", {"routing.yaml": yaml.safe_dump(routing({1: 100})),
                                           "gateway.yaml": gateway_yaml()})
    server = start(layout / "config" / "gateway.yaml")
    volume.update({"routing.yaml": yaml.safe_dump(routing({1: 100, 4: 0, 5: 0})),
                   "gateway.yaml": gateway_yaml()})
    wait_until(lambda: server.metric('gateway_config_reloads_total{result="error"}') == 1, 3.0)
    time.sleep(0.3)
    pinned = server.request("POST", f"/v2/models/{MODEL}/versions/4/infer", _body())
    # Not loaded, and says how to load it: not 503 "still loading" forever.
    assert pinned.status == 404, pinned.body
    assert "not loaded" in pinned.json()["error"]
    metrics = server.request("GET", "/metrics").body.decode()
    assert f'gateway_model_ready{{model="{MODEL}",version="4"}}' not in metrics
    ready = server.request("GET", "/v2/health/ready")
    assert ready.status == 200 and ready.json()["not_serving"] == []
    assert served_by(server) == "1"
