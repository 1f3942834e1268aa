"""A stock V2 client (tritonclient.http, binary tensors on and off) against the real server, with
outputs compared to onnxruntime called directly on the same model file."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as httpclient
import yaml
from tritonclient.utils import InferenceServerException

from tests.conftest import MODEL, MODELS, sample_rows, shipped_config
from tests.integration.server import GatewayProcess


def direct(version: int, rows: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(MODELS / MODEL / str(version) / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    label, probabilities = session.run(["label", "probabilities"], {"input": rows})
    return {"label": label, "probabilities": probabilities}


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """The shipped config after step 1 of the README's rollout walk-through: version 1 serves
    everything, version 2 is deployed at weight 0 (loaded, answering pinned requests)."""
    folder = tmp_path_factory.mktemp("deployed")
    config = shipped_config(folder)
    routing = config.parent / "routing.yaml"
    policy = yaml.safe_load(routing.read_text())
    policy["models"][MODEL]["traffic"].append({"version": 2, "weight": 0})
    routing.write_text(yaml.safe_dump(policy))
    server = GatewayProcess(config, folder)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(deployed: GatewayProcess) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(deployed.url)


def test_health_and_server_metadata(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]


def test_model_metadata_comes_from_the_graph(client: httpclient.InferenceServerClient) -> None:
    meta = client.get_model_metadata(MODEL)
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["versions"] == ["1", "2"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 30]}]
    assert {o["name"]: o["datatype"] for o in meta["outputs"]} == {
        "label": "INT64", "probabilities": "FP32"}
    assert meta["parameters"]["execution_provider"] == "CPUExecutionProvider"
    assert client.get_model_metadata(MODEL, "1")["versions"] == ["1"]
    assert client.is_model_ready(MODEL, "1")
    assert not client.is_model_ready("no-such-model")


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("version", ["1", "2"])
def test_pinned_infer_matches_onnxruntime(client: httpclient.InferenceServerClient,
                                          binary: bool, version: str) -> None:
    rows = sample_rows(7, seed=int(version))
    tensor = httpclient.InferInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary)
               for n in ("label", "probabilities")]
    result = client.infer(MODEL, [tensor], model_version=version, outputs=outputs,
                          request_id="req-7")
    expected = direct(int(version), rows)
    response = result.get_response()
    assert response["model_version"] == version
    assert response["id"] == "req-7"
    np.testing.assert_array_equal(result.as_numpy("label"), expected["label"])
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected["probabilities"],
                               rtol=1e-6, atol=1e-7)


def test_unpinned_defaults_return_every_output_binary(
        client: httpclient.InferenceServerClient) -> None:
    rows = sample_rows(3)
    tensor = httpclient.InferInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    result = client.infer(MODEL, [tensor])  # no outputs named: tritonclient asks for binary
    response = result.get_response()
    assert response["model_version"] == "1"  # the shipped policy gives version 1 all traffic
    assert all("binary_data_size" in o["parameters"] for o in response["outputs"])
    np.testing.assert_allclose(result.as_numpy("probabilities"), direct(1, rows)["probabilities"],
                               rtol=1e-6, atol=1e-7)


def test_concurrent_requests_are_answered_row_for_row(
        client: httpclient.InferenceServerClient, deployed: GatewayProcess) -> None:
    """64 concurrent callers with different row counts, merged into shared batches, each get
    what onnxruntime computes for their own rows alone."""
    pool = httpclient.InferenceServerClient(deployed.url, concurrency=64)
    batches = [sample_rows(n % 40 + 1, seed=n) for n in range(64)]
    pending = []
    for rows in batches:
        tensor = httpclient.InferInput("input", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows)
        pending.append(pool.async_infer(MODEL, [tensor], model_version="1"))
    for rows, request in zip(batches, pending, strict=True):
        result = request.get_result()
        expected = direct(1, rows)
        np.testing.assert_allclose(result.as_numpy("probabilities"), expected["probabilities"],
                                   atol=1e-6)
        np.testing.assert_array_equal(result.as_numpy("label"), expected["label"])
    pool.close()


def test_client_sees_v2_errors(client: httpclient.InferenceServerClient) -> None:
    tensor = httpclient.InferInput("input", [1, 29], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 29), np.float32))
    with pytest.raises(InferenceServerException, match=r"shape \[1, 29\].*\[-1, 30\]"):
        client.infer(MODEL, [tensor])
    with pytest.raises(InferenceServerException, match="unknown model"):
        client.infer("no-such-model", [tensor])


def test_each_listed_output_follows_its_own_binary_data(
        client: httpclient.InferenceServerClient) -> None:
    """tritonclient's shapes of Triton's output rule: listed outputs carry their own binary_data,
    so one output can come back as JSON and the other binary in one answer."""
    rows = sample_rows(2)
    tensor = httpclient.InferInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    outputs = [httpclient.InferRequestedOutput("label", binary_data=False),
               httpclient.InferRequestedOutput("probabilities", binary_data=True)]
    result = client.infer(MODEL, [tensor], outputs=outputs)
    by_name = {o["name"]: o for o in result.get_response()["outputs"]}
    assert "data" in by_name["label"] and "binary_data_size" not in by_name["label"].get(
        "parameters", {})
    assert "binary_data_size" in by_name["probabilities"]["parameters"]
    np.testing.assert_array_equal(result.as_numpy("label"), direct(1, rows)["label"])


def test_repository_index_lists_every_version_with_its_state(
        client: httpclient.InferenceServerClient) -> None:
    """Triton's read-only repository extension: the shipped repository's versions, each READY
    (loaded by the policy) or UNAVAILABLE with the reason."""
    index = client.get_model_repository_index()
    rows = {(row["name"], row["version"]): row for row in index}
    assert rows[(MODEL, "1")] == {"name": MODEL, "version": "1", "state": "READY", "reason": ""}
    assert rows[(MODEL, "2")]["state"] == "READY"
    assert all(set(row) == {"name", "version", "state", "reason"} for row in index)
    assert all(row["state"] in {"READY", "UNAVAILABLE", "LOADING"} for row in index)
    assert all(row["reason"] for row in index if row["state"] != "READY")
