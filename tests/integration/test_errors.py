"""Every row of SPEC section 3's error table, over raw HTTP against the real server: the status,
the V2 shape {"error": "..."} with a message that says what to fix, and nothing harmed around it."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import orjson
import pytest

from tests.conftest import MODEL, ConfigWriter, sample_rows
from tests.integration.conftest import Start
from tests.integration.server import GatewayProcess, Reply

INFER = f"/v2/models/{MODEL}/infer"


def infer_body(rows: np.ndarray, **extra: object) -> bytes:
    doc = {"inputs": [{"name": "input", "shape": list(rows.shape), "datatype": "FP32",
                       "data": rows.ravel().tolist()}], **extra}
    return orjson.dumps(doc)


def assert_error(reply: Reply, status: int, fragment: str) -> None:
    assert reply.status == status, reply.body
    doc = reply.json()
    assert set(doc) == {"error"}, doc
    assert fragment in doc["error"], doc["error"]


def binary_body(rows: np.ndarray, size: int | None = None) -> tuple[bytes, dict[str, str]]:
    raw = rows.tobytes()
    header = orjson.dumps({"inputs": [{
        "name": "input", "shape": list(rows.shape), "datatype": "FP32",
        "parameters": {"binary_data_size": len(raw) if size is None else size}}]})
    return header + raw, {"Inference-Header-Content-Length": str(len(header))}


BAD_REQUESTS = {
    "malformed JSON": (b'{"inputs": [', "not valid JSON"),
    "not an object": (b"[1, 2]", "JSON object"),
    "no inputs": (b'{"inputs": []}', "non-empty list"),
    "unknown input": (orjson.dumps({"inputs": [{"name": "x", "shape": [1, 30],
                                                "datatype": "FP32", "data": [0.0] * 30}]}),
                      "unknown input 'x'"),
    "wrong shape": (infer_body(np.zeros((2, 31), np.float32)), "shape [2, 31]"),
    "wrong datatype": (orjson.dumps({"inputs": [{"name": "input", "shape": [1, 30],
                                                 "datatype": "FP64", "data": [0.0] * 30}]}),
                       "datatype FP64"),
    "unknown datatype": (orjson.dumps({"inputs": [{"name": "input", "shape": [1, 30],
                                                   "datatype": "FLOAT", "data": [0.0] * 30}]}),
                         "not one of"),
    "data count does not fit shape": (
        orjson.dumps({"inputs": [{"name": "input", "shape": [2, 30], "datatype": "FP32",
                                  "data": [0.0] * 30}]}), "30 elements but the shape needs 60"),
    "strings as numbers": (
        orjson.dumps({"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32",
                                  "data": ["a", "b"]}]}), "must be numbers"),
    "huge claimed shape": (
        orjson.dumps({"inputs": [{"name": "input", "shape": [10**9, 10**9],
                                  "datatype": "FP32", "data": [1.0]}]}), "the limit is"),
    "duplicate input": (
        orjson.dumps({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32",
                                  "data": [0.0] * 30}] * 2}), "more than once"),
    "unknown output": (infer_body(np.zeros((1, 30), np.float32), outputs=[{"name": "score"}]),
                       "unknown output 'score'"),
    "missing input": (orjson.dumps({"inputs": [{"name": "input", "shape": [0, 30],
                                                "datatype": "FP32", "data": []},
                                               {"name": "other", "shape": [1],
                                                "datatype": "FP32", "data": [1.0]}]}),
                      "unknown input 'other'"),
}


@pytest.mark.parametrize("body,fragment", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_bad_request_answers_400(shipped: GatewayProcess, body: bytes, fragment: str) -> None:
    assert_error(shipped.request("POST", INFER, body), 400, fragment)


def test_binary_size_that_does_not_fit_answers_400(shipped: GatewayProcess) -> None:
    rows = sample_rows(2)
    body, headers = binary_body(rows, size=rows.nbytes - 4)
    assert_error(shipped.request("POST", INFER, body, headers), 400, "need 240 bytes")
    body, headers = binary_body(rows, size=rows.nbytes + 4)
    assert_error(shipped.request("POST", INFER, body, headers), 400, "binary bytes remain")
    body, _ = binary_body(rows)
    assert_error(shipped.request("POST", INFER, body, {"Inference-Header-Content-Length": "x"}),
                 400, "must be an integer")


def test_binary_request_is_served(shipped: GatewayProcess) -> None:
    body, headers = binary_body(sample_rows(2))
    reply = shipped.request("POST", INFER, body, headers)
    assert reply.status == 200
    assert reply.json()["outputs"][0]["shape"] == [2]


@pytest.mark.parametrize("path,fragment", [
    ("/v2/models/no-such-model/infer", "unknown model 'no-such-model'"),
    (f"/v2/models/{MODEL}/versions/9/infer", "has no version 9"),
    (f"/v2/models/{MODEL}/versions/3/infer", "not loaded; name it in the routing policy"),
    (f"/v2/models/{MODEL}/versions/x1/infer", "positive integers"),
    ("/v2/models/a%2Fb/infer", "no endpoint"),
    # Names from URLs are keys of the scanned repository, never paths: these find nothing.
    ("/v2/models/%2e%2e/infer", "unknown model '..'"),
    ("/v2/models/..%2F..%2Fetc/infer", "no endpoint"),
    (f"/v2/models/{MODEL}/versions/%2e%2e/infer", "positive integers"),
    (f"/v2/models/{MODEL}%00/infer", "unknown model"),
    (f"/v2/models/{MODEL}/versions/%C2%B3/infer", "positive integers"),
])
def test_unknown_model_or_version_answers_404(shipped: GatewayProcess, path: str,
                                              fragment: str) -> None:
    assert_error(shipped.request("POST", path, infer_body(sample_rows(1))), 404, fragment)


def test_metadata_of_unknown_model_answers_404(shipped: GatewayProcess) -> None:
    assert_error(shipped.request("GET", "/v2/models/nope"), 404, "unknown model")
    assert_error(shipped.request("GET", f"/v2/models/{MODEL}/versions/3/ready"), 404,
                 "not loaded")


def test_wrong_method_answers_405_in_v2_shape(shipped: GatewayProcess) -> None:
    assert_error(shipped.request("GET", INFER), 405, "GET is not allowed")


def test_body_over_the_limit_answers_413(shipped: GatewayProcess) -> None:
    body = b" " * (8 * 1024 * 1024 + 1)
    assert_error(shipped.request("POST", INFER, body), 413, "8388608-byte limit")


def test_request_id_and_version_headers(shipped: GatewayProcess) -> None:
    reply = shipped.request("POST", INFER, infer_body(sample_rows(1), id="abc"),
                            {"x-request-id": "trace-me"})
    assert reply.status == 200
    assert reply.headers["x-request-id"] == "trace-me"
    assert reply.headers["x-model-version"] == "1"  # the shipped policy: version 1
    assert reply.json()["id"] == "abc"
    generated = shipped.request("GET", "/v2/health/live").headers["x-request-id"]
    assert len(generated) == 32
    assert shipped.request("POST", INFER, b"{").headers["x-request-id"]


def _infer_in_thread(server: GatewayProcess, body: bytes, replies: list[Reply]) -> threading.Thread:
    thread = threading.Thread(target=lambda: replies.append(server.request("POST", INFER, body)))
    thread.start()
    return thread


def test_full_queue_answers_503_with_retry_after(write_config: ConfigWriter,
                                                  start: Start) -> None:
    # One place in the queue, and its first request waits 3 s for company: the next is refused.
    server = start(write_config(batching={"max_queue_size": 1, "max_queue_delay_us": 3_000_000,
                                          "max_batch_size": 32}))
    # A first request runs at once (no arrivals yet to expect company from) and starts the
    # arrival history that makes the next one wait for company.
    assert server.request("POST", INFER, infer_body(sample_rows(1))).status == 200
    replies: list[Reply] = []
    waiting = _infer_in_thread(server, infer_body(sample_rows(1)), replies)
    time.sleep(0.5)
    refused = server.request("POST", INFER, infer_body(sample_rows(1)))
    assert_error(refused, 503, "max_queue_size")
    assert refused.headers["retry-after"].isdigit()
    waiting.join()
    assert replies[0].status == 200  # the queued request was not harmed


def test_timeout_in_the_queue_answers_504(write_config: ConfigWriter, start: Start) -> None:
    server = start(write_config(batching={"max_queue_delay_us": 500_000, "max_batch_size": 32}))
    assert server.request("POST", INFER, infer_body(sample_rows(1))).status == 200  # see above
    body = infer_body(sample_rows(1), parameters={"timeout": 1000})  # 1 ms, as tritonclient sends
    assert_error(server.request("POST", INFER, body), 504, "timeout")
    assert server.request("POST", INFER, infer_body(sample_rows(1))).status == 200


def test_tampered_version_is_refused_while_the_other_serves(
        model_repo: Path, write_config: ConfigWriter, start: Start) -> None:
    model_file = model_repo / MODEL / "1" / "model.onnx"
    model_file.write_bytes(model_file.read_bytes() + b"\0")
    server = start(write_config(model_repo))
    assert_error(server.request("POST", f"/v2/models/{MODEL}/versions/1/infer",
                                infer_body(sample_rows(1))), 503, "sha256")
    # Version 1 has weight 0: named, but the replica stays in service (SPEC 3).
    ready = server.request("GET", "/v2/health/ready")
    assert ready.status == 200 and "version 1" in " ".join(ready.json()["not_serving"])
    assert server.request("GET", f"/v2/models/{MODEL}/versions/1/ready").status == 503
    assert server.request("POST", f"/v2/models/{MODEL}/versions/2/infer",
                          infer_body(sample_rows(1))).status == 200
    assert server.request("POST", INFER, infer_body(sample_rows(1))).status == 200
    assert "sha256" in server.log()
    metrics = server.request("GET", "/metrics").body.decode()
    assert f'gateway_model_ready{{model="{MODEL}",version="1"}} 0.0' in metrics
    assert f'gateway_model_ready{{model="{MODEL}",version="2"}} 1.0' in metrics


def test_unloadable_onnx_is_refused_while_the_other_serves(
        model_repo: Path, write_config: ConfigWriter, start: Start) -> None:
    import hashlib

    import yaml

    version_dir = model_repo / MODEL / "2"
    garbage = b"this is not an onnx graph"
    (version_dir / "model.onnx").write_bytes(garbage)
    manifest = yaml.safe_load((version_dir / "manifest.yaml").read_text())
    manifest["sha256"] = hashlib.sha256(garbage).hexdigest()
    (version_dir / "manifest.yaml").write_text(yaml.safe_dump(manifest))
    server = start(write_config(model_repo))
    reply = server.request("POST", f"/v2/models/{MODEL}/versions/2/infer",
                           infer_body(sample_rows(1)))
    assert_error(reply, 503, "onnxruntime cannot load")
    pinned = server.request("POST", f"/v2/models/{MODEL}/versions/1/infer",
                            infer_body(sample_rows(1)))
    assert pinned.status == 200 and json.loads(pinned.body)["model_version"] == "1"
    # The tests' default policy (DEFAULT_ROUTING) gives the broken version all unpinned traffic
    # (version 1 has weight 0): nothing else may take it, so those requests are told why.
    assert_error(server.request("POST", INFER, infer_body(sample_rows(1))), 503,
                 "onnxruntime cannot load")
