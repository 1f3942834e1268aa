"""Prediction capture (SPEC 10) on a running gateway: what users send with tritonclient (binary
and JSON), curl-like raw HTTP and feedback comes back in the capture folder exactly; rotation,
gzip, retention and redaction; and a folder that is read-only, cannot be made or disappears, or
a queue flooded with big requests, never fails a request and is counted."""

from __future__ import annotations

import gzip
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as httpclient

from tests.conftest import MODEL, ConfigWriter, add_model, binary_body, sample_rows
from tests.integration.conftest import OtlpCollector, Start
from tests.integration.server import GatewayProcess

INFER = f"/v2/models/{MODEL}/infer"
FLAGS = [{"name": "beta", "header": "x-beta", "values": ["true"], "version": 3}]
ROUTING = {"models": {MODEL: {"traffic": [{"version": 1, "weight": 0}, {"version": 2,
                                                                        "weight": 100}],
                              "flags": FLAGS}}}


def capture_lines(folder: Path) -> list[dict[str, Any]]:
    """Every record of the capture folder, in file order (gzipped files read as they are)."""
    records = []
    for path in sorted(folder.glob("capture-*")):
        data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") \
            else path.read_bytes()
        records += [orjson.loads(line) for line in data.splitlines()]
    return records


def json_body(rows: np.ndarray, request_id: str | None = None) -> bytes:
    doc: dict[str, Any] = {"inputs": [{"name": "input", "shape": list(rows.shape),
                                       "datatype": "FP32", "data": rows.ravel().tolist()}]}
    if request_id is not None:
        doc["id"] = request_id
    return orjson.dumps(doc)


def metric(server: GatewayProcess, result: str) -> float:
    return server.metric(f'gateway_capture_records_total{{model="{MODEL}",result="{result}"}}')


def wait_for(condition: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def capture_config(write_config: ConfigWriter, folder: Path, **capture: Any) -> Path:
    return write_config(routing=ROUTING, capture={"enabled": True, "path": str(folder),
                                                  **capture})


def test_every_answered_request_is_one_record_of_what_was_sent_and_answered(
        write_config: ConfigWriter, start: Start, tmp_path: Path) -> None:
    folder = tmp_path / "capture"
    server = start(capture_config(write_config, folder))
    client = httpclient.InferenceServerClient(server.url)
    sent: dict[str, tuple[np.ndarray, dict[str, np.ndarray], str, str]] = {}
    for binary, request_id in ((True, "triton-binary"), (False, "triton-json")):
        rows = sample_rows(3, seed=len(sent))
        tensor = httpclient.InferInput("input", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows, binary_data=binary)
        outputs = [httpclient.InferRequestedOutput(n, binary_data=binary)
                   for n in ("label", "probabilities")]
        result = client.infer(MODEL, [tensor], outputs=outputs, request_id=request_id)
        sent[request_id] = (rows, {n: result.as_numpy(n) for n in ("label", "probabilities")},
                            "2", "split")
    for name, path, headers in (("raw-pinned", f"/v2/models/{MODEL}/versions/3/infer", {}),
                                ("raw-flag", INFER, {"x-beta": "true"})):
        rows = sample_rows(2, seed=len(sent))
        reply = server.request("POST", path, json_body(rows),
                               {"x-request-id": name, **headers})
        assert reply.status == 200
        answer = {o["name"]: np.array(o["data"]).reshape(o["shape"])
                  for o in reply.json()["outputs"]}
        sent[name] = (rows, answer, reply.headers["x-model-version"],
                      reply.headers["x-model-route"])
    body, headers = binary_body(4)  # raw binary, asking only for the label, as JSON
    header_length = int(headers["Inference-Header-Content-Length"])
    doc = orjson.loads(body[:header_length])
    doc["outputs"] = [{"name": "label"}]
    header = orjson.dumps(doc)
    reply = server.request("POST", INFER, header + body[header_length:],
                           {**headers, "Inference-Header-Content-Length": str(len(header)),
                            "x-request-id": "raw-binary"})
    assert reply.status == 200
    sent["raw-binary"] = (np.frombuffer(body[header_length:], np.float32).reshape(4, 30),
                          {"label": np.array(reply.json()["outputs"][0]["data"])}, "2", "split")
    # Errors are answers too, but not captured ones.
    assert server.request("POST", INFER, json_body(np.zeros((1, 29), np.float32))).status == 400
    assert server.request("POST", "/v2/models/nope/infer", json_body(rows)).status == 404
    feedback = orjson.dumps({"feedback": [{"label": 1, "version": 2, "prediction": 0,
                                           "id": "triton-json"}, {"label": 0}]})
    assert server.request("POST", f"/v2/models/{MODEL}/feedback", feedback).status == 200
    wait_for(lambda: metric(server, "written") == len(sent) + 1)
    server.stop()  # SIGTERM: the gateway writes what waits, closes and gzips

    files = sorted(p.name for p in folder.iterdir())
    assert len(files) == 1 and files[0].startswith(f"capture-{MODEL}-")
    assert files[0].endswith(".jsonl.gz")  # closed and gzipped at shutdown
    records = capture_lines(folder)
    infers = {r["request_id"]: r for r in records if r["kind"] == "infer"}
    assert set(infers) == set(sent) and len(records) == len(sent) + 1
    for request_id, (rows, answer, version, route) in sent.items():
        record = infers[request_id]
        assert (record["model"], str(record["version"]), record["route"]) == (
            MODEL, version, route), request_id
        assert record["trace_id"] is None
        assert record["time"].endswith("Z")
        (captured_input,) = record["inputs"]
        assert captured_input["datatype"] == "FP32"
        assert captured_input["shape"] == list(rows.shape)
        np.testing.assert_array_equal(
            np.array(captured_input["data"], np.float32).reshape(rows.shape), rows)
        outputs = {o["name"]: o for o in record["outputs"]}
        assert set(outputs) == set(answer), request_id  # what was answered, no more
        for name, expected in answer.items():
            np.testing.assert_allclose(
                np.array(outputs[name]["data"]).reshape(outputs[name]["shape"]),
                expected, rtol=0, atol=1e-7)
    assert infers["triton-binary"]["outputs"][0]["datatype"] == "INT64"
    (feedback_record,) = [r for r in records if r["kind"] == "feedback"]
    assert feedback_record["feedback"] == orjson.loads(feedback)["feedback"]


def test_a_traced_request_carries_its_trace_id(
        write_config: ConfigWriter, start: Start, collector: OtlpCollector,
        tmp_path: Path) -> None:
    folder = tmp_path / "capture"
    server = start(capture_config(write_config, folder), env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.server_address[1]}",
        "OTEL_BSP_SCHEDULE_DELAY": "100"})
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    reply = server.request("POST", INFER, json_body(sample_rows(1), "traced"),
                           {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    assert reply.status == 200
    wait_for(lambda: metric(server, "written") == 1)
    server.stop()
    (record,) = capture_lines(folder)
    assert record["trace_id"] == trace_id
    wait_for(lambda: any(span.trace_id.hex() == trace_id for _, span in collector.spans))


def test_files_rotate_are_gzipped_and_the_oldest_deleted_past_the_total(
        write_config: ConfigWriter, start: Start, tmp_path: Path) -> None:
    folder = tmp_path / "capture"
    server = start(capture_config(write_config, folder, max_file_mb=0.01, max_total_mb=0.02))
    for i in range(150):  # ~700 bytes a record: ~10 files of 10 KiB, ~25 KiB kept (gzipped)
        assert server.request("POST", INFER, json_body(sample_rows(1, seed=i)),
                              {"x-request-id": f"r{i:03d}"}).status == 200
        if i % 15 == 0:
            time.sleep(0.06)  # one writer tick: records reach the files in several batches
    wait_for(lambda: metric(server, "written") == 150)
    wait_for(lambda: len(list(folder.glob("*.jsonl.gz"))) >= 2)  # closed ones, while serving
    # while serving, a file being gzipped is also there as .gz.tmp (renamed when whole)
    assert all(p.name.endswith((".jsonl", ".jsonl.gz", ".jsonl.gz.tmp")) for p in folder.iterdir())
    server.stop()
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) >= 2 and all(n.endswith(".jsonl.gz") for n in names), names
    assert sum(p.stat().st_size for p in folder.iterdir()) <= 0.02 * 2**20
    assert all(gzip.decompress((folder / n).read_bytes()) for n in names)  # whole files
    kept = [r["request_id"] for r in capture_lines(folder)]
    assert kept == sorted(kept) and kept[-1] == "r149"  # the newest, in order
    assert "r000" not in kept  # the oldest went first


def test_redacted_inputs_keep_their_shape_but_not_their_values(
        write_config: ConfigWriter, start: Start, tmp_path: Path) -> None:
    folder = tmp_path / "capture"
    server = start(capture_config(write_config, folder, redact={MODEL: ["input"]}))
    rows = sample_rows(2)
    reply = server.request("POST", INFER, json_body(rows, "secret"))
    assert reply.status == 200
    wait_for(lambda: metric(server, "written") == 1)
    server.stop()
    (record,) = capture_lines(folder)
    assert record["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [2, 30],
                                 "data": None, "parameters": {"redacted": True}}]
    assert [o["name"] for o in record["outputs"]] == ["label", "probabilities"]
    text = b"".join(gzip.decompress(p.read_bytes()) for p in folder.iterdir())
    assert str(float(rows[0, 0])).encode()[:6] not in text


def _requests_succeed(server: GatewayProcess, n: int) -> None:
    for i in range(n):
        assert server.request("POST", INFER, json_body(sample_rows(1, seed=i))).status == 200


def test_a_folder_that_cannot_be_made_drops_and_counts_but_serves(
        write_config: ConfigWriter, start: Start, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    server = start(capture_config(write_config, blocker / "capture"))
    _requests_succeed(server, 20)
    wait_for(lambda: metric(server, "dropped") == 20)
    assert metric(server, "written") == 0
    assert "capture: cannot write to" in server.log()
    assert server.request("GET", "/v2/health/ready").status == 200


@pytest.mark.parametrize("options,message", [("ro", "Read-only file system"),
                                            ("size=12k", "No space left on device")])
def test_a_read_only_or_full_disk_drops_and_counts_but_serves(
        write_config: ConfigWriter, tmp_path: Path, options: str, message: str) -> None:
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o ro tmpfs /mnt"],
            capture_output=True).returncode != 0:
        pytest.skip("needs unshare and mount (a tmpfs in a mount namespace of its own)")
    folder = tmp_path / "capture"
    folder.mkdir()
    server = GatewayProcess(capture_config(write_config, folder), tmp_path, wrap=[
        "unshare", "-m", "sh", "-c", f'mount -t tmpfs -o {options} tmpfs "$0" && exec "$@"',
        str(folder)])
    try:
        for i in range(40):
            assert server.request("POST", INFER, json_body(sample_rows(1, seed=i))).status == 200
            time.sleep(0.01)  # several writer ticks: the disk fills part way
        wait_for(lambda: metric(server, "dropped") + metric(server, "written") == 40)
        assert metric(server, "dropped") > 0
        assert message in server.log()
        assert server.request("GET", "/v2/health/ready").status == 200
    finally:
        server.stop()


def test_a_folder_deleted_under_the_gateway_is_made_again(
        write_config: ConfigWriter, start: Start, tmp_path: Path) -> None:
    folder = tmp_path / "capture"
    server = start(capture_config(write_config, folder))
    _requests_succeed(server, 5)
    wait_for(lambda: metric(server, "written") == 5)
    shutil.rmtree(folder)
    _requests_succeed(server, 7)
    wait_for(lambda: metric(server, "written") == 12)
    server.stop()
    assert len(capture_lines(folder)) == 7  # the five went with the folder; the seven are kept


def wide_identity_model(width: int) -> bytes:
    """A real ONNX graph that answers its input as it is: FP32 [batch, width] -> `echo`.
    Serving it costs a copy; capturing it, every value written as text."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["wide"], ["echo"])], "wide",
        [helper.make_tensor_value_info("wide", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("echo", TensorProto.FLOAT, ["batch", width])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def test_a_flooded_queue_drops_and_counts_and_never_blocks(
        model_repo: Path, write_config: ConfigWriter, start: Start, tmp_path: Path) -> None:
    add_model(model_repo, "wide", 1, wide_identity_model(512))
    folder = tmp_path / "capture"
    server = start(write_config(model_repo, routing={"models": {}},
                                capture={"enabled": True, "path": str(folder)}))
    rows = np.random.default_rng(0).random((2048, 512), dtype=np.float32)  # 4 MiB
    header = orjson.dumps({"inputs": [{"name": "wide", "shape": [2048, 512], "datatype": "FP32",
                                       "parameters": {"binary_data_size": rows.nbytes}}],
                           "parameters": {"binary_data_output": True}})
    headers = {"Inference-Header-Content-Length": str(len(header))}
    statuses: list[int] = []
    slowest = [0.0]

    def send() -> None:
        for _ in range(8):
            began = time.monotonic()
            statuses.append(server.request("POST", "/v2/models/wide/infer",
                                           header + rows.tobytes(), headers).status)
            slowest[0] = max(slowest[0], time.monotonic() - began)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 64
    assert slowest[0] < 10  # answered as they came, not after the writer

    def counted(result: str) -> float:
        return server.metric(f'gateway_capture_records_total{{model="wide",result="{result}"}}')

    wait_for(lambda: counted("written") + counted("dropped") == 64, 120)
    assert counted("dropped") > 0 and counted("written") > 0


def encoder_children(server: GatewayProcess) -> list[int]:
    """The gateway's multiprocessing children (the encoder and its resource tracker)."""
    pid = server.process.pid
    children = [int(c) for task in Path(f"/proc/{pid}/task").iterdir()  # any thread's
                for c in (task / "children").read_text().split()]
    return [c for c in children if b"multiprocessing" in Path(f"/proc/{c}/cmdline").read_bytes()]


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] in "ZX"
    except FileNotFoundError:
        return True


def test_the_encoding_child_dies_with_a_killed_gateway(
        write_config: ConfigWriter, start: Start, tmp_path: Path) -> None:
    """kill -9 (or the OOM killer) of the gateway: its encoding child went on for ever, holding
    the gateway's stdout and stderr (a log pipe never ended)."""
    server = start(capture_config(write_config, tmp_path / "capture"))
    rows = sample_rows(32)
    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(lambda i: server.request("POST", INFER, json_body(rows, f"k{i}")
                                                     ).status, range(200))) == {200}
    wait_for(lambda: metric(server, "written") == 200)
    children = encoder_children(server)
    assert children
    server.process.kill()
    server.process.wait()
    wait_for(lambda: all(gone(child) for child in children))


def test_big_records_are_encoded_by_a_child_exactly_and_it_ends_with_the_gateway(
        write_config: ConfigWriter, start: Start, tmp_path: Path) -> None:
    """32-row requests have their lines made in a child process (gateway.capture.encoder): the
    records are what was sent, in order, none lost; the child ends with the gateway."""
    folder = tmp_path / "capture"
    server = start(capture_config(write_config, folder))
    sent = {f"big-{i}": sample_rows(32, seed=i) for i in range(200)}

    def send(item: tuple[str, np.ndarray]) -> int:
        return server.request("POST", INFER, json_body(item[1], item[0])).status
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(send, sent.items())) == [200] * 200
    wait_for(lambda: metric(server, "written") == 200)
    children = encoder_children(server)
    assert children
    assert "the encoding process failed" not in server.log()
    assert server.stop() in (0, -signal.SIGTERM)  # uvicorn raises SIGTERM again once drained
    assert "Application shutdown complete" in server.log()
    assert all(gone(child) for child in children)  # no process left behind
    records = capture_lines(folder)
    assert sorted(r["request_id"] for r in records) == sorted(sent)
    times = [r["time"] for r in records]
    assert times == sorted(times)  # in the order they were answered
    for record in records:
        (tensor,) = record["inputs"]
        assert tensor["shape"] == [32, 30]
        np.testing.assert_array_equal(np.array(tensor["data"], np.float32),
                                      sent[record["request_id"]].ravel())
