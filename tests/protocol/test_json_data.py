"""JSON tensor data to arrays: NumPy's inference where it is safe, the elements' types where it
is not, and the same answer either way."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from gateway.errors import BadRequest
from gateway.protocol.json_data import SAFE_INFERENCE_BYTES, no_strings_in_data
from gateway.protocol.request import decode_request
from tests.conftest import ECHO_TYPES, echo_values


def test_long_strings_become_objects_not_fixed_width_arrays() -> None:
    data = ["x" * 100_000] + [""] * 999
    body = orjson.dumps({"inputs": [{"name": "s", "shape": [1000], "datatype": "BYTES",
                                     "data": data}]})
    array = decode_request(body, None, 1 << 20).inputs["s"]
    assert array.dtype == object and array.nbytes == 8 * 1000  # not 1000 x 400 KB
    assert array[0] == data[0] and array[1] == ""


@pytest.mark.parametrize(("datatype", "data", "fragment"), [
    ("INT32", [1, 2.5], "INT32 data must be integers"),
    ("INT32", [1, None], "INT32 data must be integers"),
    ("UINT8", [1, "2"], "UINT8 data must be integers"),
    ("BOOL", [True, 1], "BOOL data must be true or false"),
    ("BYTES", ["a", 1], "BYTES data must be strings"),
    ("BYTES", [["a"], "b"], "ragged"),
    ("FP64", [[1.0, 2.0], [3.0]], "ragged"),
    ("FP64", [1.0, {"a": 1}], "FP64 data must be numbers"),
])
@pytest.mark.parametrize("request_id", [None, 'has a \\"quote\\"'],
                         ids=["quotes prove no strings", "element-wise check"])
def test_json_leaves_must_be_of_the_datatype(datatype: str, data: list[object],
                                              fragment: str, request_id: str | None) -> None:
    """Both ways give the same answer: NumPy's own inference when the request's quotes prove
    its data holds no string, the element-wise type check otherwise (an escaped quote)."""
    body = orjson.dumps({"id": request_id, "inputs": [
        {"name": "t", "shape": [2], "datatype": datatype, "data": data}]})
    with pytest.raises(BadRequest, match=fragment):
        decode_request(body, None, 1 << 20)


@pytest.mark.parametrize("request_id", [None, 'has a \\"quote\\"'])
@pytest.mark.parametrize("datatype", ECHO_TYPES)
def test_both_ways_decode_alike(datatype: str, request_id: str | None) -> None:
    values = echo_values(datatype)
    data = ([v.decode() for v in values.ravel()] if datatype == "BYTES"
            else values.tolist())
    body = orjson.dumps({"id": request_id, "parameters": {"binary_data_output": True},
                         "inputs": [{"name": "t", "shape": list(values.shape),
                                     "datatype": datatype, "data": data}],
                         "outputs": [{"name": "o", "parameters": {"binary_data": False}}]})
    array = decode_request(body, None, 1 << 20).inputs["t"]
    expected = (np.array(data, dtype=object).reshape(values.shape) if datatype == "BYTES"
                else values)
    np.testing.assert_array_equal(array, expected)


@pytest.mark.parametrize(("doc", "proven"), [
    ({"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1.0, 2.0]}]}, True),
    ({"id": "r", "parameters": {"timeout": 5, "tag": "a"}, "inputs": [
        {"name": "x", "shape": [2], "datatype": "FP32", "data": [1.0, 2.0],
         "parameters": {"binary_data": False}}], "outputs": [{"name": "y"}]}, True),
    ({"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1.0, "2"]}]}, False),
    ({"id": 'a \\"quoted\\" id', "inputs": [{"name": "x", "shape": [1], "datatype": "FP32",
                                          "data": [1.0]}]}, False),
    ({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}],
      "junk": list(range(100))}, False),
])
def test_the_quotes_prove_there_is_no_string_in_the_data(doc: dict[str, object],
                                                         proven: bool) -> None:
    assert no_strings_in_data(doc, orjson.dumps(doc)) is proven


def test_a_long_string_among_many_numbers_is_refused_before_numpy_sees_it() -> None:
    data: list[object] = ["x" * 30_000] + [1.0] * 4_999
    assert SAFE_INFERENCE_BYTES < 5000 * 4 * 30_000  # NumPy would have made 600 MB
    body = orjson.dumps({"inputs": [{"name": "x", "shape": [5000], "datatype": "FP32",
                                     "data": data}]})
    with pytest.raises(BadRequest, match="FP32 data must be numbers"):
        decode_request(body, None, 1 << 22)
