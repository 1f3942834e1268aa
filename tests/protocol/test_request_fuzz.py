"""Property tests of the request codec (hypothesis): whatever the body and the binary extension
header say, decoding either succeeds with arrays that match what was declared, or raises
BadRequest; never another exception, and never an allocation past the element limit."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import BadRequest
from gateway.protocol.request import decode_request
from gateway.tensors import DATATYPES

MAX_ELEMENTS = 4096
DATATYPE_NAMES = [*DATATYPES, "FP8", "", "fp32"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=20)
shapes = st.lists(st.integers(-2, 2**40), max_size=6) | json_values


@st.composite
def tensor_headers(draw: st.DrawFn) -> dict[str, Any]:
    tensor: dict[str, Any] = {"name": draw(st.sampled_from(["input", "x", ""]) | json_values),
                              "shape": draw(shapes),
                              "datatype": draw(st.sampled_from(DATATYPE_NAMES) | json_values)}
    if draw(st.booleans()):
        tensor["parameters"] = {"binary_data_size": draw(st.integers(-1, 2**40) | json_values)}
    else:
        tensor["data"] = draw(json_values)
    return tensor


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, str | None]:
    doc: dict[str, Any] = {"inputs": draw(st.lists(tensor_headers(), max_size=3) | json_values)}
    if draw(st.booleans()):
        doc["id"] = draw(json_values)
    if draw(st.booleans()):
        doc["parameters"] = draw(json_values)
    if draw(st.booleans()):
        doc["outputs"] = draw(json_values)
    # The stdlib writes what orjson would refuse to: integers past 64 bits, NaN, lone surrogates.
    header = json.dumps(doc).encode() if draw(st.booleans()) else draw(st.binary(max_size=64))
    binary = draw(st.binary(max_size=256))
    length = draw(st.sampled_from([None, str(len(header))]) | st.text(max_size=6))
    return header + (binary if length is not None else b""), length


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_any_body_decodes_or_is_a_bad_request(request: tuple[bytes, str | None]) -> None:
    body, length = request
    try:
        decoded = decode_request(body, length, MAX_ELEMENTS)
    except BadRequest as exc:
        assert exc.message
        return
    for name, array in decoded.inputs.items():
        assert isinstance(array, np.ndarray) and array.size <= MAX_ELEMENTS, name
        assert decoded.datatypes[name] in DATATYPES


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(DATATYPES)), st.lists(st.integers(0, 5), min_size=1, max_size=3),
       st.binary(max_size=200))
def test_binary_data_of_any_size_is_checked_against_the_shape(
        datatype: str, shape: list[int], payload: bytes) -> None:
    header = orjson.dumps({"inputs": [{"name": "x", "shape": shape, "datatype": datatype,
                                       "parameters": {"binary_data_size": len(payload)}}]})
    try:
        decoded = decode_request(header + payload, str(len(header)), MAX_ELEMENTS)
    except BadRequest:
        return
    assert list(decoded.inputs["x"].shape) == shape
