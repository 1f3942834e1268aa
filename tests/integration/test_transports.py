"""One data plane, two transports: the same requests sent over HTTP to one gateway and over gRPC
to another (same config) get the same answers, and leave the same metric counts, drift windows,
capture records and shadow counts. The models are Triton's examples, built with onnx.helper: an
INT32 add/sub model (`simple`) and a string model (`simple_string`), beside the shipped one."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from loadtests.harness import write_gateway_config
from tests.conftest import MODEL, add_model, sample_rows
from tests.integration.conftest import Start
from tests.integration.server import GatewayProcess
from tests.integration.test_capture import capture_lines
from tests.integration.test_repository import STRING_MODEL, simple_string_model, string_sample

SIMPLE = "simple"
STICKY = "x-user-id"
ROUTING = {"models": {
    MODEL: {"traffic": [{"version": 1, "weight": 100}, {"version": 2, "weight": 0}],
            "sticky_key": STICKY,
            "flags": [{"name": "beta", "header": "x-beta", "values": ["1"], "version": 2}],
            "shadow": [{"version": 3, "percent": 100}]},
    SIMPLE: {"traffic": [{"version": 1, "weight": 100}]},
    STRING_MODEL: {"traffic": [{"version": 1, "weight": 100}]}}}


def simple_model() -> bytes:
    """Triton's `simple` example: INPUT0 and INPUT1, INT32 [-1, 16]; OUTPUT0 their sum and
    OUTPUT1 their difference."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
         helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"])], SIMPLE,
        [helper.make_tensor_value_info(n, TensorProto.INT32, ["batch", 16])
         for n in ("INPUT0", "INPUT1")],
        [helper.make_tensor_value_info(n, TensorProto.INT32, ["batch", 16])
         for n in ("OUTPUT0", "OUTPUT1")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


Tensors = dict[str, np.ndarray]
Request = tuple[str, str, Tensors, dict[str, str]]
"""model, pinned version ("" routed), inputs, headers / metadata."""


def requests() -> list[Request]:
    rows = sample_rows(3, seed=5)
    a = np.arange(32, dtype=np.int32).reshape(2, 16)
    b = np.full((2, 16), 3, dtype=np.int32)
    strings = {"INPUT0": np.array([[str(i) for i in range(16)]], dtype=object),
               "INPUT1": np.array([["2"] * 16], dtype=object)}
    return [(MODEL, "", {"input": rows}, {STICKY: "user-1"}),
            (MODEL, "", {"input": rows[:1]}, {STICKY: "user-2", "x-beta": "1"}),
            (MODEL, "2", {"input": rows}, {}),
            (MODEL, "", {"input": rows[:, :29]}, {}),  # a 400
            ("no-such-model", "", {"input": rows}, {}),  # a 404
            (SIMPLE, "", {"INPUT0": a, "INPUT1": b}, {}),
            (SIMPLE, "1", {"INPUT0": a[:1], "INPUT1": b[:1]}, {}),
            (STRING_MODEL, "", strings, {STICKY: "user-3"})]


def datatype(array: np.ndarray) -> str:
    return {"float32": "FP32", "int32": "INT32", "object": "BYTES"}[array.dtype.name]


def send(module: Any, client: Any, request: Request) -> Tensors | str:
    """The answer's outputs, or the error's message."""
    model, version, inputs, headers = request
    tensors = []
    for name, array in inputs.items():
        tensor = module.InferInput(name, list(array.shape), datatype(array))
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    try:
        result = client.infer(model, tensors, model_version=version, headers=dict(headers),
                              request_id="same-id")  # tritonclient.http adds to the headers
    except InferenceServerException as exc:
        return str(exc.message())
    response = result.get_response(as_json=True) if module is grpcclient \
        else result.get_response()
    return {o["name"]: result.as_numpy(o["name"]) for o in response["outputs"]}


def request_counts(server: GatewayProcess, family: str) -> dict[str, float]:
    text = server.request("GET", "/metrics").body.decode()
    return {name: float(value) for name, _, value in
            (line.rpartition(" ") for line in text.splitlines())
            if name.startswith(family + "{")}


def drift_rows(server: GatewayProcess) -> dict[str, int]:
    doc = server.request("GET", f"/v2/models/{MODEL}/drift").json()
    return {v["version"]: v["window_rows"] for v in doc["versions"]}


def records(folder: Path) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "time"} for r in capture_lines(folder)]


def settle(read: Callable[[], Any], done: Callable[[Any], bool], timeout_s: float = 15) -> Any:
    deadline = time.monotonic() + timeout_s
    while not done(value := read()):
        assert time.monotonic() < deadline, f"not settled: {value}"
        time.sleep(0.1)
    return value


def test_both_transports_answer_and_observe_alike(model_repo: Path, tmp_path: Path,
                                                  start: Start) -> None:
    add_model(model_repo, SIMPLE, 1, simple_model())
    add_model(model_repo, STRING_MODEL, 1, simple_string_model())
    (model_repo / STRING_MODEL / "1" / "sample.json").write_bytes(string_sample())
    servers = []
    for name in ("http", "grpc"):
        config = write_gateway_config(
            tmp_path / name, model_repo, ROUTING,
            capture={"enabled": True, "path": str(tmp_path / name / "capture")},
            drift={"report_interval_s": 0.1})
        servers.append(start(config, grpc=name == "grpc"))
    over_http, over_grpc = servers
    http_client = httpclient.InferenceServerClient(over_http.url)
    grpc_client = grpcclient.InferenceServerClient(over_grpc.grpc_url)
    for request in requests():
        by_http = send(httpclient, http_client, request)
        by_grpc = send(grpcclient, grpc_client, request)
        if isinstance(by_http, str):
            assert by_grpc == by_http, request[:2]
            continue
        assert isinstance(by_grpc, dict) and by_grpc.keys() == by_http.keys(), request[:2]
        for name, array in by_http.items():
            np.testing.assert_array_equal(by_grpc[name], array, err_msg=f"{request[:2]} {name}")
    # Counted before the answer: equal at once, both the 400 and the 404 included.
    counts = request_counts(over_http, "gateway_requests_total")
    assert counts == request_counts(over_grpc, "gateway_requests_total")
    assert sum(counts.values()) == len(requests())
    # The two routed requests of the shipped model are mirrored to version 3, off the path.
    shadows = [settle(lambda s=server: request_counts(s, "gateway_shadow_requests_total"),
                      lambda got: sum(got.values()) == 2) for server in servers]
    assert shadows[0] == shadows[1]
    # Version 1 served 3 rows, version 2 the flagged row and the 3 pinned, shadow 3 saw 4.
    windows = {"1": 3, "2": 4, "3": 4}
    for server in servers:
        settle(lambda s=server: drift_rows(s), lambda got: got == windows)
    kept = settle(lambda: records(tmp_path / "http" / "capture"), lambda got: len(got) == 6)
    settle(lambda: records(tmp_path / "grpc" / "capture"), lambda got: got == kept)
    assert {(r["model"], r["route"]) for r in kept} >= {(MODEL, "flag"), (SIMPLE, "pinned"),
                                                        (STRING_MODEL, "split")}


@pytest.mark.parametrize("binary", [True, False])
def test_bytes_tensors_over_grpc(model_repo: Path, write_config: Any, start: Start,
                                 binary: bool) -> None:
    """BYTES as tritonclient sends them: raw (binary) and typed bytes_contents."""
    add_model(model_repo, STRING_MODEL, 1, simple_string_model())
    (model_repo / STRING_MODEL / "1" / "sample.json").write_bytes(string_sample())
    server = start(write_config(model_repo, routing=ROUTING | {"models": {
        STRING_MODEL: ROUTING["models"][STRING_MODEL]}}), grpc=True)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    a = np.array([[str(i) for i in range(16)]] * 2, dtype=object)
    b = np.array([["1"] * 16] * 2, dtype=object)
    if binary:
        tensors = []
        for name, array in (("INPUT0", a), ("INPUT1", b)):
            tensor = grpcclient.InferInput(name, [2, 16], "BYTES")
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        result = client.infer(STRING_MODEL, tensors)
        total, difference = result.as_numpy("OUTPUT0"), result.as_numpy("OUTPUT1")
    else:
        import grpc
        from tritonclient.grpc import service_pb2, service_pb2_grpc

        message = service_pb2.ModelInferRequest(model_name=STRING_MODEL)
        for name, array in (("INPUT0", a), ("INPUT1", b)):
            tensor = message.inputs.add(name=name, datatype="BYTES", shape=[2, 16])
            tensor.contents.bytes_contents.extend(s.encode() for s in array.ravel())
        with grpc.insecure_channel(server.grpc_url) as channel:
            response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(message)
        result = grpcclient.InferResult(response)
        total, difference = result.as_numpy("OUTPUT0"), result.as_numpy("OUTPUT1")
    expected_a = np.arange(16, dtype=np.int32)
    assert total is not None and difference is not None
    np.testing.assert_array_equal(total.astype(np.int32), np.tile(expected_a + 1, (2, 1)))
    np.testing.assert_array_equal(difference.astype(np.int32), np.tile(expected_a - 1, (2, 1)))


CANARY = f"""\
models:
  {MODEL}:
    traffic:
      - {{version: 1, weight: 50}}
      - {{version: 2, weight: 50}}
    sticky_key: {STICKY}
    rollout:
      baseline: 1
      canary: 2
      steps: [50, 100]
      gates: {{max_error_rate_increase: 0.01}}
"""


def test_a_canary_s_rollout_evidence_moves_alike_over_either_transport(
        model_repo: Path, tmp_path: Path, start: Start) -> None:
    """The rollout controller reads the same counters whichever transport a routed request
    came by: the same requests, sticky-keyed, over HTTP to one gateway and over gRPC to
    another, give the controller the same evidence for the baseline and the canary."""
    import json
    import subprocess
    import sys

    servers, configs = [], []
    for name in ("http", "grpc"):
        config = write_gateway_config(tmp_path / name, model_repo, CANARY)
        configs.append(config)
        servers.append(start(config, grpc=name == "grpc"))
    over_http, over_grpc = servers
    http_client = httpclient.InferenceServerClient(over_http.url)
    grpc_client = grpcclient.InferenceServerClient(over_grpc.grpc_url)
    rows = sample_rows(1, seed=5)
    for user in range(60):
        for module, client in ((httpclient, http_client), (grpcclient, grpc_client)):
            tensor = module.InferInput("input", list(rows.shape), "FP32")
            tensor.set_data_from_numpy(rows)
            client.infer(MODEL, [tensor], headers={STICKY: f"user-{user}"})
    seen = []
    for config, server in zip(configs, servers, strict=True):
        shown = subprocess.run(
            [sys.executable, "-m", "gateway", "rollout", "--config", str(config), "--metrics",
             f"http://{server.url}/metrics", "--once"],
            capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0, shown.stderr
        decision = json.loads(shown.stdout.strip().splitlines()[-1])
        gate = next(g for g in decision["gates"] if g["gate"] == "errors")
        seen.append((gate["n_baseline"], gate["n_canary"]))
    assert seen[0] == seen[1] and sum(seen[0]) == 60 and min(seen[0]) > 0, seen
