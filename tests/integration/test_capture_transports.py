"""A capture record is the request's, not its transport's: the same request sent to one gateway
as HTTP JSON, as gRPC `raw_input_contents` (tritonclient's default) and as gRPC typed `contents`
is written byte for byte the same line (but its time and request id), and each transport's lines
replay alike, in-process and against the gateway. Every datatype goes through (FP16 only raw, as
gRPC has no typed field for it), with each type's extremes: INT64's and UINT64's, FP32's and
FP16's largest values, BYTES that are not ASCII; and a request of 0 rows (whose empty outputs
gRPC could not encode)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import orjson
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc

from gateway.capture.records import file_name
from gateway.replay.reader import capture_files
from gateway.replay.report import replay
from gateway.replay.targets import InProcess, Remote
from gateway.runtime.repository import scan_repository
from gateway.settings import load_settings
from tests.conftest import ECHO_TYPES, MODEL, ConfigWriter, add_model, sample_rows, write_echo_model
from tests.integration.conftest import Start
from tests.integration.server import GatewayProcess

TYPED = "typed"
TYPED_TYPES = [t for t in ECHO_TYPES if t != "FP16"]
"""The datatypes gRPC's typed `contents` can carry."""
ROUTING = {"models": {name: {"traffic": [{"version": 1, "weight": 100}]}
                      for name in ("echo", TYPED)}
           | {MODEL: {"traffic": [{"version": 1, "weight": 100}, {"version": 2, "weight": 0}]}}}
_CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
             "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
             "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
             "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}
_VARYING = re.compile(rb'^\{"kind":"infer","time":"[^"]*","request_id":"[^"]*"')

Tensors = dict[str, tuple[str, np.ndarray]]
"""Input name -> datatype and values."""
Case = tuple[str, str, Tensors]
"""model, pinned version ("" routed), inputs."""


def identity_model(types: list[str]) -> bytes:
    """One Identity per datatype (`in_<T>` -> `out_<T>`, shape [-1, 2]), as the echo model."""
    from onnx import TensorProto, helper

    elem = {t: getattr(TensorProto, n) for t, n in (
        ("BOOL", "BOOL"), ("INT8", "INT8"), ("INT16", "INT16"), ("INT32", "INT32"),
        ("INT64", "INT64"), ("UINT8", "UINT8"), ("UINT16", "UINT16"), ("UINT32", "UINT32"),
        ("UINT64", "UINT64"), ("FP16", "FLOAT16"), ("FP32", "FLOAT"), ("FP64", "DOUBLE"),
        ("BYTES", "STRING"))}
    graph = helper.make_graph(
        [helper.make_node("Identity", [f"in_{t}"], [f"out_{t}"]) for t in types], TYPED,
        [helper.make_tensor_value_info(f"in_{t}", elem[t], ["batch", 2]) for t in types],
        [helper.make_tensor_value_info(f"out_{t}", elem[t], ["batch", 2]) for t in types])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def values(datatype: str) -> np.ndarray:
    """Three rows of a datatype with its extremes; floats that are not short in binary, and
    the largest finite one (FP32's is written 3.4028235e38, a little above it as a float64)."""
    from gateway.tensors import DATATYPES

    if datatype == "BYTES":
        return np.array([["zürich", ""], ["日本", "a b"], ["x" * 40, "\"quoted\""]], dtype=object)
    dtype = DATATYPES[datatype].dtype.newbyteorder("=")
    if dtype.kind == "f":
        array = (np.arange(6, dtype=np.float64) / 7 - 0.3).astype(dtype).reshape(3, 2)
        array[2, 1] = np.finfo(dtype).max
        array[2, 0] = -np.finfo(dtype).tiny
        return array
    if datatype == "BOOL":
        return np.array([[True, False], [False, True], [True, True]])
    info = np.iinfo(dtype)
    return np.array([[info.min, info.max], [0, 1], [info.max - 1, 7]], dtype=dtype)


def cases() -> list[Case]:
    rows = sample_rows(3, seed=11)
    return [("echo", "", {f"in_{t}": (t, values(t)) for t in ECHO_TYPES}),
            (TYPED, "", {f"in_{t}": (t, values(t)[1:]) for t in TYPED_TYPES}),
            (TYPED, "", {f"in_{t}": (t, values(t)[:0]) for t in TYPED_TYPES}),  # 0 rows
            (MODEL, "", {"input": ("FP32", rows)}),
            (MODEL, "2", {"input": ("FP32", rows[:1])})]


def over_http(server: GatewayProcess, case: Case, request_id: str) -> None:
    model, version, inputs = case
    tensors = [{"name": name, "datatype": datatype, "shape": list(array.shape),
                "data": array.ravel().tolist()} for name, (datatype, array) in inputs.items()]
    path = f"/v2/models/{model}/versions/{version}/infer" if version else \
        f"/v2/models/{model}/infer"
    reply = server.request("POST", path, orjson.dumps({"inputs": tensors}),
                           {"x-request-id": request_id, "content-type": "application/json"})
    assert reply.status == 200, reply.body


def over_grpc_raw(client: grpcclient.InferenceServerClient, case: Case, request_id: str) -> None:
    model, version, inputs = case
    tensors = []
    for name, (datatype, array) in inputs.items():
        tensor = grpcclient.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array if datatype != "BYTES" else
                                   np.vectorize(str.encode, otypes=[object])(array))
        tensors.append(tensor)
    client.infer(model, tensors, model_version=version, headers={"x-request-id": request_id})


def over_grpc_typed(url: str, case: Case, request_id: str) -> bool:
    """False when a datatype has no typed field (FP16)."""
    model, version, inputs = case
    if any(datatype not in _CONTENTS for datatype, _ in inputs.values()):
        return False
    message = service_pb2.ModelInferRequest(model_name=model, model_version=version)
    for name, (datatype, array) in inputs.items():
        tensor = message.inputs.add(name=name, datatype=datatype, shape=list(array.shape))
        flat = [item.encode() for item in array.ravel()] if datatype == "BYTES" \
            else array.ravel().tolist()
        getattr(tensor.contents, _CONTENTS[datatype]).extend(flat)
    with grpc.insecure_channel(url) as channel:
        service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
            message, metadata=(("x-request-id", request_id),))
    return True


def capture_bytes(folder: Path) -> list[bytes]:
    return [line for path in sorted(folder.glob("capture-*.jsonl"))
            for line in path.read_bytes().splitlines(keepends=True)]


def request_id_of(line: bytes) -> str:
    return str(orjson.loads(line)["request_id"])


def without_time_and_id(line: bytes) -> bytes:
    rest, found = _VARYING.subn(b"", line)
    assert found == 1, line[:120]
    return rest


def replayed(folder: Path, config: Path, model: str, version: int,
             against: str | None) -> dict[str, Any]:
    """The replay report of a capture folder, without its times and target."""
    settings = load_settings(config)
    repository = scan_repository(settings.model_repository)
    target = (Remote(against, repository, model, version) if against
              else InProcess(settings, repository, model, version))
    try:
        report = replay(capture_files(folder), model, version, target, lambda n: None)
    finally:
        target.close()
    for served in report["served_versions"]:
        served.pop("latency_ms")
    report.pop("target")
    return report


def test_one_request_is_one_record_and_one_replay_whichever_transport_sent_it(
        model_repo: Path, write_config: ConfigWriter, start: Start, tmp_path: Path) -> None:
    write_echo_model(model_repo)
    add_model(model_repo, TYPED, 1, identity_model(TYPED_TYPES))
    folder = tmp_path / "capture"
    config = write_config(model_repo, routing=ROUTING,
                          capture={"enabled": True, "path": str(folder)})
    server = start(config, grpc=True)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    sent: dict[str, list[str]] = {}  # case -> its request ids, one per transport
    for number, case in enumerate(cases()):
        ids = sent[f"case-{number}"] = [f"case-{number}-http-json", f"case-{number}-grpc-raw"]
        over_http(server, case, ids[0])
        over_grpc_raw(client, case, ids[1])
        if over_grpc_typed(server.grpc_url, case, f"case-{number}-grpc-typed"):
            ids.append(f"case-{number}-grpc-typed")
    expected = sum(map(len, sent.values()))
    deadline = time.monotonic() + 15
    while len(lines := capture_bytes(folder)) < expected:
        assert time.monotonic() < deadline, f"{len(lines)} of {expected} records written"
        time.sleep(0.1)
    by_id = {request_id_of(line): line for line in lines}
    assert len(by_id) == expected
    for number, (model, version, inputs) in enumerate(cases()):
        ids = sent[f"case-{number}"]
        first, *others = (by_id[i] for i in ids)
        for request_id, line in zip(ids[1:], others, strict=True):
            assert without_time_and_id(line) == without_time_and_id(first), request_id
        record = orjson.loads(first)
        assert (record["model"], record["route"]) == (model, "pinned" if version else "split")
        assert [t["datatype"] for t in record["inputs"]] == [d for d, _ in inputs.values()]
    # Each transport's record alone, replayed in-process and against the gateway on the
    # version that served it: the same report.
    for number, (model, version, inputs) in enumerate(cases()):
        reports = []
        for request_id in sent[f"case-{number}"]:
            own = tmp_path / "replay" / request_id
            own.mkdir(parents=True)
            (own / file_name(model, 0.0)).write_bytes(by_id[request_id])
            for against in (None, f"http://{server.url}"):
                report = replayed(own, config, model, int(version or 1), against)
                assert report["corrupt_lines"] == report["failed_requests"] == 0, report
                assert report["redacted_requests"] == 0, report
                assert report["rows"] == len(next(iter(inputs.values()))[1]), report
                assert report["agreement"] == 1.0 or not report["rows"], report
                reports.append(orjson.dumps(report))  # NaN agreement (no row) as null
        assert all(report == reports[0] for report in reports), model
