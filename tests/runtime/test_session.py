from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import yaml

from gateway.runtime.repository import scan_repository
from gateway.runtime.session import LoadError, ModelSession, load_session, warm_up
from tests.conftest import MODEL, MODELS, sample_rows, write_echo_model


def load(repo: Path, model: str = MODEL, version: int = 1) -> ModelSession:
    return load_session(scan_repository(repo)[model][version], ["CPUExecutionProvider"], 1, 1)


def test_signature_comes_from_the_graph_and_results_match_onnxruntime() -> None:
    session = load(MODELS, version=2)
    assert session.provider == "CPUExecutionProvider"
    assert [s.to_json() for s in session.inputs] == [
        {"name": "input", "datatype": "FP32", "shape": [-1, 30]}]
    assert session.batchable
    rows = sample_rows(4)
    direct = ort.InferenceSession(str(MODELS / MODEL / "2" / "model.onnx"))
    expected = direct.run(None, {"input": rows})
    got = session.run({"input": rows})
    np.testing.assert_array_equal(got["label"], expected[0])
    np.testing.assert_array_equal(got["probabilities"], expected[1])


def test_a_changed_model_file_is_refused(model_repo: Path) -> None:
    path = model_repo / MODEL / "1" / "model.onnx"
    path.write_bytes(path.read_bytes().replace(b"breast", b"BREAST"))
    with pytest.raises(LoadError, match="sha256 .* the manifest says"):
        load(model_repo)


def test_a_file_onnxruntime_cannot_load_is_refused(model_repo: Path) -> None:
    version = model_repo / MODEL / "1"
    (version / "model.onnx").write_bytes(b"\x08\x07garbage")
    manifest = yaml.safe_load((version / "manifest.yaml").read_text())
    manifest["sha256"] = hashlib.sha256(b"\x08\x07garbage").hexdigest()
    (version / "manifest.yaml").write_text(yaml.safe_dump(manifest))
    with pytest.raises(LoadError, match="onnxruntime cannot load"):
        load(model_repo)


def test_manifest_problem_is_the_load_error(model_repo: Path) -> None:
    (model_repo / MODEL / "1" / "manifest.yaml").write_text("created: today")
    with pytest.raises(LoadError, match="needs 'sha256'"):
        load(model_repo)


def test_every_datatype_loads_and_warms_up(tmp_path: Path) -> None:
    write_echo_model(tmp_path)
    session = load(tmp_path, "echo")
    assert warm_up(session, None) is not None
    assert len(session.inputs) == 13
    assert all(s.shape == (-1, 2) for s in session.outputs)


def test_warm_up_with_a_sample_fails_the_version_and_without_one_only_warns(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from tests.conftest import add_model
    from tests.integration.test_repository import simple_string_model

    add_model(tmp_path, "strings", 1, simple_string_model())
    session = load(tmp_path, "strings")
    assert warm_up(session, None) is None  # "" is no number: a warning, not a failure
    assert "warm-up with a request made from its signature failed" in caplog.text
    numbers = np.array([[str(i) for i in range(16)]], dtype=object)
    sample = {"INPUT0": numbers, "INPUT1": numbers}
    assert warm_up(session, sample) is sample
    with pytest.raises(LoadError, match="warm-up with sample.json failed"):
        warm_up(session, {"INPUT0": numbers, "INPUT1": np.array([["x"] * 16], dtype=object)})
