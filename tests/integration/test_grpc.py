"""Stock gRPC clients (tritonclient.grpc: sync, async callbacks and grpc.aio) against a real
`gateway serve`: health, metadata, repository index and inference, unpinned and pinned, with a
sticky key in the metadata; errors as status codes with HTTP's messages; hostile messages
refused with bounded memory."""

from __future__ import annotations

import asyncio
import http.client
import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.conftest import (
    MODEL,
    ROOT,
    ConfigWriter,
    add_model,
    sample_rows,
    shipped_config,
    slow_model,
)
from tests.integration.conftest import Start
from tests.integration.server import GatewayProcess
from tests.integration.test_hostile import rss_bytes
from tests.integration.test_shutdown import wait_for_inflight
from tests.integration.test_tritonclient import direct

STICKY = "x-user-id"


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """The shipped config with version 2 loaded at weight 0 and a sticky key, gRPC on."""
    folder = tmp_path_factory.mktemp("grpc")
    config = shipped_config(folder)
    routing = config.parent / "routing.yaml"
    policy = yaml.safe_load(routing.read_text())
    policy["models"][MODEL]["traffic"].append({"version": 2, "weight": 0})
    policy["models"][MODEL]["sticky_key"] = STICKY
    routing.write_text(yaml.safe_dump(policy))
    server = GatewayProcess(config, folder, grpc=True)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(deployed: GatewayProcess) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(deployed.grpc_url)


def rows_input(rows: np.ndarray, module: Any = grpcclient) -> list[Any]:
    tensor = module.InferInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    return [tensor]


def check_answer(result: Any, version: int, rows: np.ndarray) -> None:
    expected = direct(version, rows)
    assert result.get_response().model_version == str(version)
    np.testing.assert_array_equal(result.as_numpy("label"), expected["label"])
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected["probabilities"],
                               rtol=1e-6, atol=1e-7)


def test_health_metadata_and_repository_index(client: grpcclient.InferenceServerClient,
                                              deployed: GatewayProcess) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL) and client.is_model_ready(MODEL, "2")
    assert not client.is_model_ready("no-such-model") and not client.is_model_ready(MODEL, "9")
    assert "binary_tensor_data" in client.get_server_metadata().extensions
    meta = client.get_model_metadata(MODEL, as_json=True)
    assert meta["platform"] == "onnxruntime_onnx" and meta["versions"] == ["1", "2"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "30"]}]
    assert client.get_model_metadata(MODEL, "2", as_json=True)["versions"] == ["2"]
    index = client.get_model_repository_index(as_json=True)["models"]
    http_index = deployed.request("POST", "/v2/repository/index").json()
    assert [(m["name"], m["version"], m.get("state")) for m in index] == [
        (m["name"], m["version"], m["state"]) for m in http_index]
    assert {(m["version"], m["state"]) for m in index} >= {("1", "READY"), ("2", "READY")}
    with grpc.insecure_channel(deployed.grpc_url) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest()).status == \
            health_pb2.HealthCheckResponse.SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(service="no.such.Service"))
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        watch.cancel()
        watch = health.Watch(health_pb2.HealthCheckRequest(service="inference."
                                                            "GRPCInferenceService"))
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()


def test_sync_client_unpinned_pinned_and_sticky(client: grpcclient.InferenceServerClient,
                                                deployed: GatewayProcess) -> None:
    rows = sample_rows(5, seed=3)
    check_answer(client.infer(MODEL, rows_input(rows)), 1, rows)
    check_answer(client.infer(MODEL, rows_input(rows), model_version="2"), 2, rows)
    sticky = client.infer(MODEL, rows_input(rows), headers={STICKY: "user-7"},
                          request_id="req-9")
    check_answer(sticky, 1, rows)
    assert sticky.get_response().id == "req-9"
    # typed contents instead of raw, and one output asked for
    request = service_pb2.ModelInferRequest(model_name=MODEL, model_version="2")
    tensor = request.inputs.add(name="input", datatype="FP32", shape=list(rows.shape))
    tensor.contents.fp32_contents.extend(rows.ravel().tolist())
    request.outputs.add(name="label")
    with grpc.insecure_channel(deployed.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        response, call = stub.ModelInfer.with_call(request, metadata=((STICKY, "u"),
                                                                      ("x-request-id", "r-1")))
    assert [o.name for o in response.outputs] == ["label"]
    label = np.frombuffer(response.raw_output_contents[0], np.int64)
    np.testing.assert_array_equal(label, direct(2, rows)["label"])
    trailing = dict(call.trailing_metadata())
    assert trailing["x-model-version"] == "2" and trailing["x-request-id"] == "r-1"
    assert trailing["x-model-route"] == "pinned"
    assert deployed.metric(f'gateway_requests_total{{code="200",model="{MODEL}",'
                           'route="pinned",version="2"}') == 2


def test_async_callback_client(client: grpcclient.InferenceServerClient) -> None:
    answers: queue.Queue[Any] = queue.Queue()
    batches = [sample_rows(n + 1, seed=n) for n in range(8)]
    for n, rows in enumerate(batches):
        client.async_infer(MODEL, rows_input(rows), partial_callback(answers, n),
                           model_version="2" if n % 2 else "", headers={STICKY: f"u{n}"})
    got = dict(answers.get(timeout=30) for _ in batches)
    for n, rows in enumerate(batches):
        result, error = got[n]
        assert error is None
        check_answer(result, 2 if n % 2 else 1, rows)


def partial_callback(answers: queue.Queue[Any], n: int) -> Any:
    return lambda result, error: answers.put((n, (result, error)))


def test_aio_client(deployed: GatewayProcess) -> None:
    async def scenario() -> None:
        client = aioclient.InferenceServerClient(deployed.grpc_url)
        try:
            assert await client.is_server_ready()
            rows = [sample_rows(n + 1, seed=10 + n) for n in range(16)]
            results = await asyncio.gather(*(
                client.infer(MODEL, rows_input(r, aioclient), headers={STICKY: "k"},
                             model_version="" if n % 4 else "2")
                for n, r in enumerate(rows)))
            for n, (r, result) in enumerate(zip(rows, results, strict=True)):
                check_answer(result, 1 if n % 4 else 2, r)
            index = await client.get_model_repository_index(as_json=True)
            assert index["models"]
        finally:
            await client.close()

    asyncio.run(scenario())


def test_errors_are_status_codes_with_the_http_messages(
        client: grpcclient.InferenceServerClient, deployed: GatewayProcess) -> None:
    narrow = np.zeros((1, 29), np.float32)
    cases = [(MODEL, "", narrow, "StatusCode.INVALID_ARGUMENT", 400),
             ("no-such-model", "", narrow, "StatusCode.NOT_FOUND", 404),
             (MODEL, "9", narrow, "StatusCode.NOT_FOUND", 404)]
    for model, version, rows, status, http_status in cases:
        with pytest.raises(InferenceServerException) as raised:
            client.infer(model, rows_input(rows), model_version=version)
        assert raised.value.status() == status
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
        reply = deployed.request("POST", path, b'{"inputs": [{"name": "input", "shape": [1, 29]'
                                               b', "datatype": "FP32", "data": [' +
                                 b",".join([b"0"] * 29) + b"]}]}")
        assert reply.status == http_status
        assert raised.value.message() == reply.json()["error"]
    with pytest.raises(InferenceServerException) as raised:
        client.get_model_config(MODEL)
    assert raised.value.status() == "StatusCode.UNIMPLEMENTED"
    assert "ModelMetadata" in str(raised.value.message())


def test_hostile_messages_are_refused_with_bounded_memory(deployed: GatewayProcess) -> None:
    before = rss_bytes(deployed)
    with grpc.insecure_channel(deployed.grpc_url, options=[
            ("grpc.max_send_message_length", -1)]) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        lying = service_pb2.ModelInferRequest(model_name=MODEL)
        lying.inputs.add(name="input", datatype="FP32", shape=[4000, 30])
        lying.raw_input_contents.append(b"\0" * 120)  # one row's bytes under 4000 rows' shape
        huge_shape = service_pb2.ModelInferRequest(model_name=MODEL)
        huge_shape.inputs.add(name="input", datatype="FP32", shape=[10**9, 10**9])
        huge_shape.inputs[0].contents.fp32_contents.append(1.0)
        typed = service_pb2.ModelInferRequest(model_name=MODEL)
        typed.inputs.add(name="input", datatype="FP32", shape=[1000, 30])
        typed.inputs[0].contents.fp32_contents.extend([0.0] * 30)
        for message, fragment in ((lying, "binary_data_size is 120"),
                                  (huge_shape, "the limit is"), (typed, "has 30")):
            with pytest.raises(grpc.RpcError) as raised:
                stub.ModelInfer(message)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert fragment in raised.value.details()
        big = service_pb2.ModelInferRequest(model_name=MODEL)
        big.inputs.add(name="input", datatype="FP32", shape=[1, 30])
        big.raw_input_contents.append(b"\0" * (9 * 1024 * 1024))  # over max_body_bytes, 8 MiB
        for _ in range(5):
            with pytest.raises(grpc.RpcError) as raised:
                stub.ModelInfer(big)
            assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert rss_bytes(deployed) - before < 64 * 1024 * 1024
    assert grpcclient.InferenceServerClient(deployed.grpc_url).is_server_live()


def test_sigterm_drains_grpc_calls_in_flight(model_repo: Path, write_config: ConfigWriter,
                                            start: Start) -> None:
    """A call its client gives up on counts as 499; calls accepted before SIGTERM are
    answered; the process then exits cleanly."""
    add_model(model_repo, "slow", 1, slow_model(layers=400))
    config = write_config(model_repo, routing={"models": {}},
                          server={"shutdown_grace_s": 30},
                          batching={"max_queue_size": 64, "execution": "thread"},
                          drift={"enabled": False})
    server = start(config, grpc=True)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    answers: queue.Queue[Any] = queue.Queue()
    rows = np.random.default_rng(0).random((8000, 30), dtype=np.float32)
    with pytest.raises(InferenceServerException, match="Deadline"):
        client.infer("slow", rows_input(rows), client_timeout=0.05)
    settle_s = time.monotonic() + 30
    while server.metric('gateway_requests_total{code="499",model="slow",route="split",'
                        'version="1"}') != 1:
        assert time.monotonic() < settle_s, server.request("GET", "/metrics").body[-3000:]
        time.sleep(0.05)
    for n in range(4):
        client.async_infer("slow", rows_input(rows), partial_callback(answers, n))
    wait_for_inflight(server, 4)
    server.process.send_signal(signal.SIGTERM)
    got = dict(answers.get(timeout=60) for _ in range(4))
    assert all(error is None for _, error in got.values()), got
    assert server.process.wait(timeout=60) in (0, -15)


def test_grpc_stops_taking_calls_when_http_does(model_repo: Path, write_config: ConfigWriter,
                                                 start: Start) -> None:
    """SIGTERM: gRPC refuses new calls while HTTP drains (one grace for both, not one after
    the other), a health Watch stream says NOT_SERVING and ends (it holds no shutdown), and
    the HTTP requests in flight are answered."""
    add_model(model_repo, "slow", 1, slow_model(layers=400))
    config = write_config(model_repo, routing={"models": {}},
                          server={"shutdown_grace_s": 60},
                          batching={"max_queue_size": 64, "execution": "thread"},
                          drift={"enabled": False})
    server = start(config, grpc=True)
    rows = np.random.default_rng(0).random((8000, 30), dtype=np.float32)
    body = json.dumps({"inputs": [{"name": "input", "shape": list(rows.shape),
                                   "datatype": "FP32", "data": rows.ravel().tolist()}]}).encode()
    answers: queue.Queue[int] = queue.Queue()
    callers = [threading.Thread(target=lambda: answers.put(
        server.request("POST", "/v2/models/slow/infer", body, timeout_s=120).status))
        for _ in range(3)]
    with grpc.insecure_channel(server.grpc_url) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        for caller in callers:
            caller.start()
        wait_for_inflight(server, 3)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(StopIteration):
            next(watch)
        assert time.monotonic() - signalled < 30  # well inside the 60 s grace
        client = grpcclient.InferenceServerClient(server.grpc_url)
        with pytest.raises(InferenceServerException) as refused:
            client.infer(MODEL, rows_input(sample_rows(1, seed=1)), client_timeout=10)
        assert refused.value.status() == "StatusCode.UNAVAILABLE", refused.value
    for caller in callers:
        caller.join(timeout=120)
    assert [answers.get_nowait() for _ in callers] == [200, 200, 200]
    assert server.process.wait(timeout=60) in (0, -15)


def test_a_taken_grpc_port_is_one_line_and_exit_3_before_any_model_loads(
        write_config: ConfigWriter) -> None:
    config = write_config()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with socket.socket() as http:
            http.bind(("127.0.0.1", 0))
            http_port = http.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "gateway", "serve", "--config", str(config),
                               "--host", "127.0.0.1", "--port", str(http_port), "--grpc-port",
                               str(port)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert f"gateway serve: cannot listen for gRPC on 127.0.0.1:{port}: the port is taken" \
        in done.stderr
    assert "Traceback" not in done.stderr and "loaded" not in done.stderr


def test_repeated_metadata_routes_as_a_repeated_http_header(write_config: ConfigWriter,
                                                              start: Start) -> None:
    """The first value counts over both transports: a flag header sent twice."""
    server = start(write_config(routing={"models": {MODEL: {
        "traffic": [{"version": 1, "weight": 100}, {"version": 2, "weight": 0}],
        "flags": [{"name": "beta", "header": "x-beta", "values": ["true"], "version": 2}]}}}),
        grpc=True)
    rows = sample_rows(1, seed=8)
    body = json.dumps({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32",
                                   "data": rows.ravel().tolist()}]}).encode()
    served = []
    for values in (("true", "no"), ("no", "true")):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.putrequest("POST", f"/v2/models/{MODEL}/infer")
        for value in values:
            conn.putheader("x-beta", value)
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        over_http = conn.getresponse().getheader("x-model-version")
        conn.close()
        with grpc.insecure_channel(server.grpc_url) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            message = service_pb2.ModelInferRequest(model_name=MODEL)
            message.inputs.add(name="input", datatype="FP32", shape=[1, 30])
            message.raw_input_contents.append(rows.tobytes())
            over_grpc = stub.ModelInfer(message, metadata=[("x-beta", v) for v in values])
        served.append((over_http, over_grpc.model_version))
    assert served == [("2", "2"), ("1", "1")]


def test_typed_and_raw_contents_together_are_refused_as_triton_refuses_them(
        deployed: GatewayProcess) -> None:
    with grpc.insecure_channel(deployed.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        both = service_pb2.ModelInferRequest(model_name=MODEL)
        both.inputs.add(name="input", datatype="FP32", shape=[1, 30])
        both.inputs[0].contents.fp32_contents.extend([2.0] * 30)
        both.raw_input_contents.append(np.zeros((1, 30), np.float32).tobytes())
        with pytest.raises(grpc.RpcError) as raised:
            stub.ModelInfer(both)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "contents must not be set" in raised.value.details()


def test_a_datatype_no_version_takes_is_refused_before_its_data_is_decoded(
        deployed: GatewayProcess) -> None:
    """Typed INT64 contents of 4 M elements to an FP32 input: refused by the datatype alone,
    over both transports, without decoding 4 M Python integers (34x the message before)."""
    message = service_pb2.ModelInferRequest(model_name=MODEL)
    message.inputs.add(name="input", datatype="INT64", shape=[4 * 1024 * 1024 // 8, 8])
    message.inputs[0].contents.int64_contents.extend(range(4 * 1024 * 1024 // 8 * 8 // 8))
    before = rss_bytes(deployed)
    with grpc.insecure_channel(deployed.grpc_url, options=[
            ("grpc.max_send_message_length", -1)]) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for _ in range(4):
            with pytest.raises(grpc.RpcError) as raised:
                stub.ModelInfer(message)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "has datatype INT64; the model expects FP32" in raised.value.details()
    reply = deployed.request("POST", f"/v2/models/{MODEL}/infer", json.dumps({"inputs": [
        {"name": "input", "shape": [1, 30], "datatype": "INT64", "data": [0] * 30}]}).encode())
    assert reply.status == 400 and "has datatype INT64; the model expects FP32" in \
        reply.json()["error"]
    assert rss_bytes(deployed) - before < 64 * 1024 * 1024


def test_the_access_log_has_a_line_per_grpc_call(write_config: ConfigWriter,
                                                 start: Start) -> None:
    server = start(write_config(server={"access_log": True}), grpc=True)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    rows = sample_rows(1, seed=2)
    client.infer(MODEL, rows_input(rows), headers={"x-request-id": "grpc-line-1"})
    with pytest.raises(InferenceServerException):
        client.infer(MODEL, rows_input(rows), model_version="9",
                     headers={"x-request-id": "grpc-line-2"})
    deadline = time.monotonic() + 10
    while "request_id=grpc-line-2" not in server.log():
        assert time.monotonic() < deadline, server.log()[-2000:]
        time.sleep(0.05)
    lines = [line for line in server.log().splitlines() if "gRPC ModelInfer" in line]
    assert len(lines) == 2, lines
    assert f"\"gRPC ModelInfer '{MODEL}'\" 200" in lines[0] and "request_id=grpc-line-1" \
        in lines[0] and "trace_id=-" in lines[0]
    assert "\" 404 " in lines[1] and "request_id=grpc-line-2" in lines[1]
