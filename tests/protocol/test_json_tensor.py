"""The one JSON tensor codec: what it writes reads back through the request path's decoder for
every datatype (NaN and infinity as `null` read back as NaN, wide integers, FP16, BYTES), its
row form is byte for byte its whole form, and a captured tensor a request would be refused for
is refused, not cast."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from gateway.errors import BadRequest
from gateway.protocol.json_tensor import (
    json_row_texts,
    json_tensor,
    json_tensor_parts,
    rows_from_json,
    tensor_from_json,
)
from gateway.protocol.request import decode_request
from tests.conftest import ECHO_TYPES, echo_values

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def written(name: str, datatype: str, array: np.ndarray) -> bytes:
    return orjson.dumps(json_tensor(name, datatype, array), option=_OPTIONS)


def special_values(datatype: str) -> np.ndarray:
    """echo_values, with NaN and both infinities in a float type's."""
    values = echo_values(datatype)
    if values.dtype.kind == "f":
        values[0] = [np.nan, np.inf]
        values[1, 0] = -np.inf
        values[2, 0] = np.finfo(values.dtype).max
    return values


@pytest.mark.parametrize("datatype", ECHO_TYPES)
def test_what_is_written_reads_back_as_sent(datatype: str) -> None:
    values = special_values(datatype)
    if datatype == "BYTES":
        values[0, 1] = b"\xff not utf-8"
    name, read_datatype, array = tensor_from_json(orjson.loads(written("t", datatype, values)))
    assert (name, read_datatype, array.shape) == ("t", datatype, values.shape)
    if datatype == "BYTES":
        assert array.dtype == object
        assert array.tolist() == [["r0-ä", "\ufffd not utf-8"], ["r1-ä", ""], ["r2-ä", ""]]
        return
    assert array.dtype == values.dtype
    if values.dtype.kind == "f":  # JSON has no infinity: written null, read back NaN
        values = np.where(np.isinf(values), np.nan, values)
    np.testing.assert_array_equal(array, values)


@pytest.mark.parametrize("datatype", [t for t in ECHO_TYPES if t != "BYTES"])
@pytest.mark.parametrize("shape", [(3, 2), (3,), (2, 3, 2), (1, 1)])
def test_the_row_form_is_byte_for_byte_the_whole_form(datatype: str,
                                                      shape: tuple[int, ...]) -> None:
    values = np.resize(special_values(datatype), shape)
    before, after = json_tensor_parts('a "name"', datatype, values.shape[1:])
    texts = json_row_texts(values)
    assert texts is not None and len(texts) == shape[0]
    rows = before + b"%d" % shape[0] + after + b",".join(texts) + b"]}"
    assert rows == written('a "name"', datatype, values)


def test_the_row_form_leaves_text_and_empty_rows_to_the_whole_form() -> None:
    assert json_row_texts(np.array([["a"]], dtype=object)) is None
    assert json_row_texts(np.zeros((0, 2))) is None
    assert json_row_texts(np.zeros((2, 0))) is None
    assert json_row_texts(np.zeros((2, 2), dtype=">f4")) is None


def test_many_alike_tensors_decode_at_once_as_one_by_one() -> None:
    first, second = special_values("FP16")[:1], special_values("FP16")[1:]
    data = [orjson.loads(written("t", "FP16", a))["data"] for a in (first, second)]
    together = rows_from_json("t", "FP16", [*data[0], *data[1]], 3, (2,))
    one_by_one = [tensor_from_json(orjson.loads(written("t", "FP16", a)))[2]
                  for a in (first, second)]
    np.testing.assert_array_equal(together, np.concatenate(one_by_one))
    assert together.dtype == np.float16


@pytest.mark.parametrize(("datatype", "text"), [
    ("FP32", b"3.4028235e38"), ("FP32", b"-3.4028235e38"), ("FP16", b"65504.0"),
    ("FP16", b"65519.0")])
def test_the_largest_float_as_written_is_not_out_of_range(datatype: str, text: bytes) -> None:
    """FP32's largest value is written "3.4028235e38" (shortest text), which reads as a float64
    a little above it and rounds back to it: a request echoing an answer is not refused."""
    body = (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "' + datatype.encode()
            + b'", "data": [' + text + b"]}]}")
    array = decode_request(body, None, 16).inputs["x"]
    assert np.isfinite(array).all() and abs(array[0]) == np.finfo(array.dtype).max
    entry = {"name": "x", "datatype": datatype, "shape": [1], "data": [float(text)]}
    assert abs(tensor_from_json(entry)[2][0]) == np.finfo(array.dtype).max


@pytest.mark.parametrize(("datatype", "data"), [
    ("FP16", [65520.0]), ("FP16", [70000]), ("FP32", [3.4028236e38]), ("FP32", [-1e300]),
    ("FP32", [None, 1e39])])
def test_a_value_that_would_become_infinity_is_refused(datatype: str,
                                                       data: list[float | None]) -> None:
    entry = {"name": "x", "datatype": datatype, "shape": [len(data)], "data": data}
    with pytest.raises(ValueError, match=f"outside the {datatype} range"):
        tensor_from_json(entry)


@pytest.mark.parametrize(("datatype", "data", "fragment"), [
    ("INT32", [1.5], "INT32 data must be integers"),
    ("INT32", [None], "INT32 data must be integers"),
    ("FP32", ["1.5"], "FP32 data must be numbers"),
    ("BOOL", [1], "BOOL data must be true or false"),
    ("INT8", [300], "outside the INT8 range"),
    ("UINT64", [-1], "outside the UINT64 range"),
    ("BYTES", [1], "BYTES data must be strings"),
    ("FP32", [[1.0], [2.0, 3.0]], "ragged"),
])
def test_a_captured_tensor_a_request_would_be_refused_for_is_refused(
        datatype: str, data: list[object], fragment: str) -> None:
    """The old replay decoder cast these (1.5 to 1, "1.5" to 1.5, 1 to True)."""
    entry = {"name": "x", "datatype": datatype, "shape": [1], "data": data}
    with pytest.raises(ValueError, match=fragment):
        tensor_from_json(entry)


@pytest.mark.parametrize("entry", [
    {"name": "x", "datatype": "FP32", "shape": [2], "data": [1.0]},
    {"name": "x", "datatype": "FP8", "shape": [1], "data": [1.0]},
    {"name": "x", "datatype": "FP32", "shape": [-1], "data": [1.0]},
    {"name": "x", "datatype": "FP32", "shape": [True], "data": [1.0]},
    {"name": 3, "datatype": "FP32", "shape": [1], "data": [1.0]},
    {"name": "x", "datatype": "FP32", "data": [1.0]},
    [1.0],
])
def test_what_is_not_a_v2_tensor_is_a_value_error(entry: object) -> None:
    with pytest.raises(ValueError):
        tensor_from_json(entry)


def test_a_request_may_not_send_null() -> None:
    """`null` reads as NaN only from a capture: JSON has no NaN, and a request's null is a
    mistake."""
    body = b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1.0, null]}]}'
    with pytest.raises(BadRequest, match="FP32 data must be numbers"):
        decode_request(body, None, 16)
