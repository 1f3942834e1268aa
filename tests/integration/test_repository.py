"""Model repositories as users really fill them, against the real server (SPEC 1 and 3):
a model that parses numbers out of strings (Triton's `simple_string`, built here with
onnx.helper), folder names with spaces and odd digits, a canary that fails at start-up, and
Triton's rule for which outputs go binary."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest
import tritonclient.http as httpclient
import yaml

from tests.conftest import MODEL, ROOT, ConfigWriter, add_model, add_version, sample_rows
from tests.integration.conftest import Start
from tests.integration.test_errors import assert_error, infer_body

STRING_MODEL = "simple_string"


def simple_string_model() -> bytes:
    """Triton's simple_string example: INPUT0 and INPUT1, [-1, 16] strings holding integers;
    OUTPUT0 their sum and OUTPUT1 their difference, as strings. The graph parses the strings
    (Cast STRING -> INT32), so the empty strings of a synthetic warm-up make it fail."""
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Cast", ["INPUT0"], ["a"], to=TensorProto.INT32),
        helper.make_node("Cast", ["INPUT1"], ["b"], to=TensorProto.INT32),
        helper.make_node("Add", ["a", "b"], ["sum"]),
        helper.make_node("Sub", ["a", "b"], ["difference"]),
        helper.make_node("Cast", ["sum"], ["OUTPUT0"], to=TensorProto.STRING),
        helper.make_node("Cast", ["difference"], ["OUTPUT1"], to=TensorProto.STRING),
    ]
    graph = helper.make_graph(
        nodes, STRING_MODEL,
        [helper.make_tensor_value_info(n, TensorProto.STRING, ["batch", 16])
         for n in ("INPUT0", "INPUT1")],
        [helper.make_tensor_value_info(n, TensorProto.STRING, ["batch", 16])
         for n in ("OUTPUT0", "OUTPUT1")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def string_sample(name: str = "INPUT0") -> bytes:
    return orjson.dumps({"inputs": [
        {"name": name, "shape": [1, 16], "datatype": "BYTES", "data": [str(i) for i in range(16)]},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "BYTES", "data": ["1"] * 16}]})


def string_infer(client: httpclient.InferenceServerClient, binary: bool) -> None:
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.ones((1, 16), dtype=np.int32)
    inputs = [httpclient.InferInput("INPUT0", [1, 16], "BYTES"),
              httpclient.InferInput("INPUT1", [1, 16], "BYTES")]
    inputs[0].set_data_from_numpy(a.astype(np.bytes_).astype(object), binary_data=binary)
    inputs[1].set_data_from_numpy(b.astype(np.bytes_).astype(object), binary_data=binary)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary)
               for n in ("OUTPUT0", "OUTPUT1")]
    result = client.infer(STRING_MODEL, inputs, outputs=outputs)
    total = result.as_numpy("OUTPUT0")
    difference = result.as_numpy("OUTPUT1")
    assert total is not None and difference is not None
    np.testing.assert_array_equal(total.astype(np.int32), a + b)
    np.testing.assert_array_equal(difference.astype(np.int32), a - b)


def test_a_string_parsing_model_serves_without_a_sample(
        model_repo: Path, write_config: ConfigWriter, start: Start) -> None:
    add_model(model_repo, STRING_MODEL, 1, simple_string_model())
    server = start(write_config(model_repo))
    assert server.request("GET", "/v2/health/ready").status == 200
    client = httpclient.InferenceServerClient(server.url)
    assert client.is_model_ready(STRING_MODEL)
    for binary in (True, False):
        string_infer(client, binary)
    log = server.log()
    assert "warm-up with a request made from its signature failed" in log
    assert "sample.json" in log  # says how to warm it up with real input


def test_a_sample_warms_a_string_model_up_and_a_bad_one_fails_it(
        model_repo: Path, write_config: ConfigWriter, start: Start) -> None:
    good = add_model(model_repo, STRING_MODEL, 1, simple_string_model())
    (good / "sample.json").write_bytes(string_sample())
    bad = add_model(model_repo, STRING_MODEL, 2, simple_string_model())
    (bad / "sample.json").write_bytes(string_sample(name="INPUT9"))
    routing = {"models": {MODEL: {"traffic": [{"version": 2, "weight": 100}]},
                          STRING_MODEL: {"traffic": [{"version": 1, "weight": 100},
                                                     {"version": 2, "weight": 0}]}}}
    server = start(write_config(model_repo, routing=routing))
    client = httpclient.InferenceServerClient(server.url)
    string_infer(client, binary=True)
    assert "made from its signature failed" not in server.log()
    failed = server.request("POST", f"/v2/models/{STRING_MODEL}/versions/2/infer",
                            string_sample())
    assert_error(failed, 503, "sample.json is not a request this version takes")
    assert "unknown input 'INPUT9'" in failed.json()["error"]


def test_shipped_versions_warm_up_with_their_samples(
        write_config: ConfigWriter, start: Start) -> None:
    for version in (1, 2, 3):
        sample = ROOT / "models" / MODEL / str(version) / "sample.json"
        assert sample.is_file(), "models/train.py writes a sample.json per version"
    server = start(write_config())
    assert server.request("GET", "/v2/health/ready").status == 200
    assert "made from its signature failed" not in server.log()
    sample = (ROOT / "models" / MODEL / "2" / "sample.json").read_bytes()
    assert server.request("POST", f"/v2/models/{MODEL}/versions/2/infer", sample).status == 200


def tamper(repo: Path, version: int) -> None:
    model_file = repo / MODEL / str(version) / "model.onnx"
    model_file.write_bytes(model_file.read_bytes() + b"\0")


def test_a_failing_canary_flag_or_shadow_keeps_the_replica_ready(
        model_repo: Path, write_config: ConfigWriter, start: Start) -> None:
    add_version(model_repo, 4, (model_repo / MODEL / "2" / "model.onnx").read_bytes())
    for version in (2, 3, 4):
        tamper(model_repo, version)
    routing = {"models": {MODEL: {
        "traffic": [{"version": 1, "weight": 100}, {"version": 2, "weight": 0}],
        "flags": [{"name": "beta", "header": "x-beta", "values": ["1"], "version": 3}],
        "shadow": [{"version": 4, "percent": 100}]}}}
    server = start(write_config(model_repo, routing=routing))
    ready = server.request("GET", "/v2/health/ready")
    assert ready.status == 200, ready.body
    not_serving = " ".join(ready.json()["not_serving"])
    for version in (2, 3, 4):
        assert f"version {version}" in not_serving
    metrics = server.request("GET", "/metrics").body.decode()
    assert f'gateway_model_ready{{model="{MODEL}",version="2"}} 0.0' in metrics
    assert f'gateway_model_ready{{model="{MODEL}",version="1"}} 1.0' in metrics
    # The flag naming a broken version does not match; its callers get version 1.
    reply = server.request("POST", f"/v2/models/{MODEL}/infer", infer_body(sample_rows(1)),
                           {"x-beta": "1"})
    assert reply.status == 200 and reply.headers["x-model-version"] == "1"


def test_a_replica_whose_weighted_versions_all_fail_is_not_ready(
        model_repo: Path, write_config: ConfigWriter, start: Start) -> None:
    tamper(model_repo, 2)
    routing = {"models": {MODEL: {"traffic": [{"version": 1, "weight": 0},
                                              {"version": 2, "weight": 100}]}}}
    server = start(write_config(model_repo, routing=routing))
    assert_error(server.request("GET", "/v2/health/ready"), 503, f"model '{MODEL}'")


def test_a_broken_canary_with_weight_keeps_the_replica_ready(
        model_repo: Path, write_config: ConfigWriter, start: Start) -> None:
    tamper(model_repo, 2)
    routing = {"models": {MODEL: {"traffic": [{"version": 1, "weight": 90},
                                              {"version": 2, "weight": 10}]}}}
    server = start(write_config(model_repo, routing=routing))
    assert server.request("GET", "/v2/health/ready").status == 200
    for _ in range(20):  # the split is taken among the ready versions
        reply = server.request("POST", f"/v2/models/{MODEL}/infer", infer_body(sample_rows(1)))
        assert reply.status == 200 and reply.headers["x-model-version"] == "1"


def test_a_listed_output_is_binary_only_by_its_own_binary_data(
        write_config: ConfigWriter, start: Start) -> None:
    """Triton's rule (http_server.cc, qa/L0_http): an output the request lists is binary only
    when its own binary_data is true, whatever `binary_data_output` says; `binary_data_output`
    (default false) decides only when no output is listed, and then for all of them."""
    server = start(write_config())
    path = f"/v2/models/{MODEL}/infer"
    cases = [({}, {"label": True, "probabilities": None}, {"label"}),
             ({}, {"label": None, "probabilities": None}, set()),
             ({"binary_data_output": True}, {"label": False, "probabilities": None}, set()),
             ({"binary_data_output": True}, {"label": None, "probabilities": None}, set()),
             ({"binary_data_output": True}, {"label": None, "probabilities": True},
              {"probabilities"}),
             ({"binary_data_output": False}, {"label": True, "probabilities": True},
              {"label", "probabilities"}),
             ({"binary_data_output": True}, {}, {"label", "probabilities"}),
             ({"binary_data_output": False}, {}, set()),
             ({}, {}, set())]
    for parameters, asked, binary in cases:
        outputs = [{"name": name, **({"parameters": {"binary_data": b}} if b is not None else {})}
                   for name, b in asked.items()] or None
        reply = server.request("POST", path, infer_body(sample_rows(2), outputs=outputs,
                                                        parameters=parameters))
        assert reply.status == 200, reply.body
        length = int(reply.headers.get("inference-header-content-length", len(reply.body)))
        header = json.loads(reply.body[:length])
        got = {o["name"] for o in header["outputs"] if "binary_data_size" in
               o.get("parameters", {})}
        assert got == binary, (parameters, asked, header)
        for output in header["outputs"]:
            assert ("data" in output) == (output["name"] not in binary)


ODD_NAME = "breast cancer copy (v2)"


def test_model_names_are_served_as_given_and_odd_folders_are_named(
        model_repo: Path, write_config: ConfigWriter, start: Start) -> None:
    shutil.copytree(model_repo / MODEL, model_repo / ODD_NAME)
    for odd in ("²", "٣", "01"):
        shutil.copytree(model_repo / MODEL / "1", model_repo / MODEL / odd)
    (model_repo / "100%").mkdir()
    routing = {"models": {ODD_NAME: {"traffic": [{"version": 1, "weight": 100}]},
                          MODEL: {"traffic": [{"version": 2, "weight": 100}]}}}
    config = write_config(model_repo, routing=routing)
    server = start(config)
    client = httpclient.InferenceServerClient(server.url)
    assert client.is_model_ready(ODD_NAME)
    rows = sample_rows(2)
    inputs = [httpclient.InferInput("input", list(rows.shape), "FP32")]
    inputs[0].set_data_from_numpy(rows)
    result = client.infer(ODD_NAME, inputs)
    assert result.get_response()["model_name"] == ODD_NAME
    # curl's way: the name percent-encoded by hand.
    quoted = ODD_NAME.replace(" ", "%20").replace("(", "%28").replace(")", "%29")
    reply = server.request("POST", f"/v2/models/{quoted}/infer", infer_body(rows))
    assert reply.status == 200 and reply.json()["model_name"] == ODD_NAME
    metadata = client.get_model_metadata(MODEL)
    assert metadata["versions"] == ["2"]  # '٣' is no alias of version 3, '²' no version
    log = server.log()
    for named in ("'²'", "'٣'", "'01'", "'100%'"):
        assert named in log, named
    check = subprocess.run([sys.executable, "-m", "gateway", "check", "--config", str(config)],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    for named in ("'²'", "'٣'", "'01'", "'100%'"):
        assert f"skipped: '{MODEL}'/{named}" in check.stdout or f"skipped: {named}" in \
            check.stdout, check.stdout


def test_the_shipped_samples_are_what_train_writes() -> None:
    for version in (1, 2, 3):
        folder = ROOT / "models" / MODEL / str(version)
        sample = json.loads((folder / "sample.json").read_bytes())
        manifest = yaml.safe_load((folder / "manifest.yaml").read_text())
        assert sample["inputs"][0]["name"] == "input"
        assert sample["inputs"][0]["shape"][1] == len(manifest["features"])
        assert hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest() == \
            manifest["sha256"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_asks_outputs_its_own_way(binary: bool, write_config: ConfigWriter,
                                               start: Start) -> None:
    server = start(write_config())
    client = httpclient.InferenceServerClient(server.url)
    rows = sample_rows(3)
    inputs = [httpclient.InferInput("input", list(rows.shape), "FP32")]
    inputs[0].set_data_from_numpy(rows, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput("label", binary_data=binary),
               httpclient.InferRequestedOutput("probabilities", binary_data=not binary)]
    result = client.infer(MODEL, inputs, outputs=outputs)
    label, probabilities = result.as_numpy("label"), result.as_numpy("probabilities")
    assert label is not None and probabilities is not None
    assert label.shape == (3,) and probabilities.shape == (3, 2)
