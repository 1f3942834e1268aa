"""V2 response encoding, read back the way a client reads it."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest

from gateway.protocol.request import RequestedOutput
from gateway.protocol.response import encode_response
from tests.conftest import ECHO_TYPES, echo_values


def ort_like(datatype: str) -> np.ndarray:
    """onnxruntime returns string tensors as object arrays of str."""
    values = echo_values(datatype)
    return np.vectorize(lambda b: b.decode(), otypes=[object])(values) \
        if datatype == "BYTES" else values


def read_binary(datatype: str, chunk: bytes, shape: list[int]) -> np.ndarray:
    if datatype == "BYTES":
        items, pos = [], 0
        while pos < len(chunk):
            (n,) = struct.unpack_from("<I", chunk, pos)
            items.append(chunk[pos + 4:pos + 4 + n].decode())
            pos += 4 + n
        return np.array(items, dtype=object).reshape(shape)
    from gateway.tensors import DATATYPES
    return np.frombuffer(chunk, DATATYPES[datatype].dtype).reshape(shape)


@pytest.mark.parametrize("binary", [True, False])
def test_every_datatype_encodes_and_reads_back(binary: bool) -> None:
    results = {f"out_{t}": ort_like(t) for t in ECHO_TYPES}
    body, header_length = encode_response("m", "3", "id-1", results, None, binary)
    if binary:
        assert header_length is not None
        doc = orjson.loads(body[:header_length])
        offset = header_length
    else:
        assert header_length is None
        doc = orjson.loads(body)
    assert (doc["model_name"], doc["model_version"], doc["id"]) == ("m", "3", "id-1")
    for output, datatype in zip(doc["outputs"], ECHO_TYPES, strict=True):
        assert output["datatype"] == datatype and output["shape"] == [3, 2]
        if binary:
            size = output["parameters"]["binary_data_size"]
            got = read_binary(datatype, body[offset:offset + size], output["shape"])
            offset += size
        else:
            got = np.array(output["data"], dtype=object if datatype == "BYTES" else None)
            got = got.reshape(output["shape"])
        np.testing.assert_array_equal(got, results[output["name"]], err_msg=datatype)
    if binary:
        assert offset == len(body)


def test_requested_outputs_choose_names_order_and_encoding() -> None:
    results = {"label": np.array([1, 0]), "probabilities": np.array([[0.2, 0.8], [0.9, 0.1]])}
    requested = (RequestedOutput("probabilities", True), RequestedOutput("label", None))
    body, header_length = encode_response("m", "1", None, results, requested, False)
    assert header_length is not None
    doc = orjson.loads(body[:header_length])
    assert "id" not in doc
    assert [o["name"] for o in doc["outputs"]] == ["probabilities", "label"]
    assert doc["outputs"][1]["data"] == [1, 0]
    assert doc["outputs"][0]["parameters"]["binary_data_size"] == 32


@pytest.mark.parametrize("shape", [(0, 2), (2, 0), (0,)])
@pytest.mark.parametrize("datatype", ECHO_TYPES)
def test_an_empty_output_encodes_binary_and_json(datatype: str, shape: tuple[int, ...]) -> None:
    """A request of 0 rows is valid; its empty outputs were a 500 in binary (and over gRPC,
    which answers every output raw)."""
    empty = np.resize(ort_like(datatype), shape)
    for binary in (True, False):
        body, header_length = encode_response("m", "1", None, {"y": empty}, None, binary)
        (output,) = orjson.loads(body[:header_length] if binary else body)["outputs"]
        assert output["shape"] == list(shape)
        assert (output["parameters"]["binary_data_size"] if binary else len(output["data"])) == 0
        assert header_length is None or len(body) == header_length
