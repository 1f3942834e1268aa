"""V2 request decoding: JSON and binary, every datatype, and each malformation as a clear 400."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest

from gateway.errors import BadRequest
from gateway.protocol.request import InferRequest, decode_request, split_body
from tests.conftest import ECHO_TYPES, echo_values

LIMIT = 1_000_000


def json_doc(datatype: str, values: np.ndarray) -> dict[str, object]:
    data = ([v.decode() for v in values.ravel()] if datatype == "BYTES"
            else values.ravel().tolist())
    return {"name": "x", "shape": list(values.shape), "datatype": datatype, "data": data}


def binary_payload(datatype: str, values: np.ndarray) -> bytes:
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(v)) + v for v in values.ravel())
    return values.astype(values.dtype.newbyteorder("<")).tobytes()


def decode(doc: object, binary: bytes = b"") -> InferRequest:
    header = orjson.dumps(doc)
    return decode_request(header + binary, str(len(header)) if binary else None, LIMIT)


@pytest.mark.parametrize("datatype", ECHO_TYPES)
def test_json_and_binary_decode_to_the_same_array(datatype: str) -> None:
    values = echo_values(datatype)
    from_json = decode({"inputs": [json_doc(datatype, values)]})
    payload = binary_payload(datatype, values)
    tensor = {"name": "x", "shape": [3, 2], "datatype": datatype,
              "parameters": {"binary_data_size": len(payload)}}
    from_binary = decode({"inputs": [tensor]}, payload)
    expected = (np.vectorize(lambda b: b.decode(), otypes=[object])(values)
                if datatype == "BYTES" else values)
    for request in (from_json, from_binary):
        array = request.inputs["x"]
        assert array.shape == (3, 2)
        np.testing.assert_array_equal(array, expected)
        if datatype != "BYTES":
            assert array.dtype == values.dtype


def test_nested_json_data_is_accepted() -> None:
    request = decode({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32",
                                  "data": [[1, 2], [3, 4]]}]})
    np.testing.assert_array_equal(request.inputs["x"], [[1, 2], [3, 4]])


def test_request_fields_are_kept() -> None:
    request = decode({"id": "r1", "parameters": {"timeout": 500, "binary_data_output": True},
                      "inputs": [json_doc("FP32", echo_values("FP32"))],
                      "outputs": [{"name": "y", "parameters": {"binary_data": False}},
                                  {"name": "z"}]})
    assert request.id == "r1"
    assert request.timeout_us == 500
    assert request.binary_outputs is True
    assert [(o.name, o.binary) for o in request.outputs] == [("y", False), ("z", None)]


BAD = {
    "not json": (b"{", None, "not valid JSON"),
    "array body": (b"[]", None, "JSON object"),
    "inputs missing": (b"{}", None, "'inputs' must be"),
    "input not object": (b'{"inputs": [1]}', None, "must be an object"),
    "no name": (b'{"inputs": [{"shape": [1], "datatype": "FP32", "data": [1]}]}', None, "'name'"),
    "negative dim": (b'{"inputs": [{"name": "x", "shape": [-1], "datatype": "FP32", "data": []}]}',
                     None, "non-negative"),
    "bool dim": (b'{"inputs": [{"name": "x", "shape": [true], "datatype": "FP32", "data": [1]}]}',
                 None, "non-negative"),
    "too many dimensions": (b'{"inputs": [{"name": "x", "shape": [' + b"1," * 99 + b'1],'
                            b' "datatype": "FP32", "data": [1]}]}', None, "100 dimensions"),
    "bad datatype": (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "BF16", "data": [1]}]}',
                     None, "not one of"),
    "no data": (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}', None,
                "neither 'data'"),
    "ragged": (b'{"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32",'
               b' "data": [[1, 2], [3]]}]}', None, "ragged"),
    "too many elements": (b'{"inputs": [{"name": "x", "shape": [100000, 100000],'
                          b' "datatype": "FP32", "data": [1]}]}', None, "the limit is"),
    "empty but vast": (b'{"inputs": [{"name": "x", "shape": [0' + b", 10000000000" * 3
                       + b'], "datatype": "FP32", "data": []}]}', None, "without its zero"),
    "past FP32": (b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32",'
                  b' "data": [1.0, -1e300]}]}', None, "outside the FP32 range"),
    "past FP16": (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP16",'
                  b' "data": [70000]}]}', None, "outside the FP16 range"),
    "count mismatch": (b'{"inputs": [{"name": "x", "shape": [3], "datatype": "FP32",'
                       b' "data": [1, 2]}]}', None, "needs 3"),
    "float for int": (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "INT32",'
                      b' "data": [1.5]}]}', None, "must be integers"),
    "int out of range": (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "INT8",'
                         b' "data": [300]}]}', None, "outside the INT8 range"),
    "huge int": (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "UINT64",'
                 b' "data": [18446744073709551616]}]}', None, "UINT64"),
    "number for bool": (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "BOOL",'
                        b' "data": [1]}]}', None, "true or false"),
    "number for bytes": (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES",'
                         b' "data": [1]}]}', None, "must be strings"),
    "null data": (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32",'
                  b' "data": [null]}]}', None, "must be numbers"),
    "bad timeout": (b'{"parameters": {"timeout": "1s"}, "inputs": [{"name": "x", "shape": [1],'
                    b' "datatype": "FP32", "data": [1]}]}', None, "timeout"),
    "id not string": (b'{"id": 5, "inputs": []}', None, "'id' must be a string"),
    "header length zero": (b"{}", "0", "must count the JSON header"),
    "header length past body": (b"{}", "99", "must count the JSON header"),
    "classification": (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}],'
                       b' "outputs": [{"name": "y", "parameters": {"classification": 2}}]}', None,
                       "not supported"),
    "duplicate input": (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32",'
                        b' "data": [1]}, {"name": "x", "shape": [1], "datatype": "FP32",'
                        b' "data": [2]}]}', None, "'x' appears more than once"),
    "duplicate output": (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32",'
                         b' "data": [1]}], "outputs": [{"name": "y"}, {"name": "y"}]}', None,
                         "more than once"),
}


@pytest.mark.parametrize("body,header_length,fragment", BAD.values(), ids=BAD.keys())
def test_malformed_requests_raise_bad_request(body: bytes, header_length: str | None,
                                              fragment: str) -> None:
    with pytest.raises(BadRequest, match=fragment):
        decode_request(body, header_length, LIMIT)


def test_deep_nesting_is_a_bad_request() -> None:
    deep = b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": ' + \
        b"[" * 5000 + b"1" + b"]" * 5000 + b"}]}"
    with pytest.raises(BadRequest):
        decode_request(deep, None, LIMIT)


def binary_request(size: int, payload: bytes, datatype: str = "FP32",
                   shape: list[int] | None = None) -> tuple[bytes, str]:
    header = orjson.dumps({"inputs": [{"name": "x", "shape": shape or [2],
                                       "datatype": datatype,
                                       "parameters": {"binary_data_size": size}}]})
    return header + payload, str(len(header))


@pytest.mark.parametrize("size,payload,fragment", [
    (8, b"\0" * 4, "only 4 binary bytes remain"),
    (4, b"\0" * 4, "need 8 bytes"),
    (8, b"\0" * 12, "no input's binary_data_size accounts for"),
    (-1, b"", "non-negative integer"),
])
def test_binary_sizes_must_fit(size: int, payload: bytes, fragment: str) -> None:
    with pytest.raises(BadRequest, match=fragment):
        decode_request(*binary_request(size, payload), LIMIT)


@pytest.mark.parametrize("payload,fragment", [
    (b"\1\0", "truncated length"),
    (struct.pack("<I", 9) + b"abc", "claims 9 bytes"),
    (struct.pack("<I", 1) + b"a", "holds 1"),
    (struct.pack("<I", 1) + b"\xff" + struct.pack("<I", 0), "not UTF-8"),
])
def test_binary_bytes_elements_are_checked(payload: bytes, fragment: str) -> None:
    with pytest.raises(BadRequest, match=fragment):
        decode_request(*binary_request(len(payload), payload, "BYTES"), LIMIT)


def test_split_body_without_extension_is_all_json() -> None:
    header, binary = split_body(b'{"a": 1}', None)
    assert header == b'{"a": 1}' and len(binary) == 0


def test_unknown_inputs_are_refused_before_the_rest_is_decoded() -> None:
    body = orjson.dumps({"inputs": [
        {"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]},
        {"name": "y", "shape": [1], "datatype": "NO-SUCH-TYPE", "data": [1.0]}]})
    with pytest.raises(BadRequest, match="unknown input 'x'; the model takes 'input'"):
        decode_request(body, None, 1 << 20, {"input": frozenset({"FP32"})})
    with pytest.raises(BadRequest, match="datatype 'NO-SUCH-TYPE'"):  # without: decodes on
        decode_request(body, None, 1 << 20)


def test_a_datatype_no_version_takes_is_refused_before_its_data_is_decoded() -> None:
    """Its data is not even looked at: a string among numbers would be another error."""
    body = orjson.dumps({"inputs": [
        {"name": "input", "shape": [2], "datatype": "INT64", "data": [1, "not a number"]}]})
    with pytest.raises(BadRequest, match="has datatype INT64; the model expects FP16 or FP32"):
        decode_request(body, None, 1 << 20, {"input": frozenset({"FP32", "FP16"})})


def test_echoed_names_are_bounded() -> None:
    name = "n" * 100_000
    body = orjson.dumps({"inputs": [{"name": name, "shape": [1], "datatype": "FP32",
                                     "data": ["x"]}]})
    with pytest.raises(BadRequest) as caught:
        decode_request(body, None, 1 << 20)
    assert len(caught.value.message) < 200
