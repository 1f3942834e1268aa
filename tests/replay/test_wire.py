"""The binary V2 tensors `gateway replay --against` sends and reads, checked against the
gateway's own decoder and encoder: every datatype, NaN kept, answers that do not fit refused."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from gateway.protocol.request import RequestedOutput, decode_request
from gateway.protocol.response import encode_response
from gateway.replay.wire import binary_request, read_outputs
from tests.conftest import ECHO_TYPES, echo_values


def as_served(datatype: str) -> np.ndarray:
    values = echo_values(datatype)
    if datatype == "BYTES":  # serving and capture hold text as str objects
        return np.vectorize(lambda b: b.decode(), otypes=[object])(values)
    return values


def same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    if a.dtype.kind == "O":
        assert a.astype(str).tolist() == b.astype(str).tolist()
    else:
        assert a.dtype.newbyteorder("=") == b.dtype.newbyteorder("=")
        np.testing.assert_array_equal(a, b)  # NaN equals NaN here


def test_a_request_decodes_to_the_arrays_it_was_made_of() -> None:
    inputs = {f"in_{t}": as_served(t) for t in ECHO_TYPES}
    inputs["in_FP32"] = np.array([[np.nan, 1.5], [-np.inf, 0.0]], dtype=np.float32)
    body, length = binary_request("req-7", inputs, {f"in_{t}": t for t in ECHO_TYPES})
    decoded = decode_request(body, str(length), 1 << 20)
    assert decoded.id == "req-7" and decoded.binary_outputs is True
    assert list(decoded.inputs) == list(inputs)
    for name, array in inputs.items():
        same(array, decoded.inputs[name])


@pytest.mark.parametrize("binary", [True, False], ids=["binary answer", "JSON answer"])
def test_an_answer_reads_back_to_the_outputs_served(binary: bool) -> None:
    results = {f"out_{t}": as_served(t) for t in ECHO_TYPES}
    requested = tuple(RequestedOutput(name, binary if i % 2 else None)
                      for i, name in enumerate(results))
    body, length = encode_response("echo", "1", "x", results, requested, binary_default=binary)
    outputs = read_outputs(body, None if length is None else str(length))
    assert list(outputs) == list(results)
    for name, array in results.items():
        same(array, outputs[name])


def framed(outputs: list[dict[str, object]], binary: bytes) -> tuple[bytes, str]:
    header = orjson.dumps({"outputs": outputs})
    return header + binary, str(len(header))


def fp32(shape: list[int], size: int) -> dict[str, object]:
    return {"name": "x", "datatype": "FP32", "shape": shape,
            "parameters": {"binary_data_size": size}}


@pytest.mark.parametrize("body, length", [
    (b"not json", None),
    framed([fp32([2], 8)], b"\0" * 4),
    framed([fp32([3], 8)], b"\0" * 8),
    (orjson.dumps({"outputs": [{"name": "x", "datatype": "NOPE", "shape": [1],
                                "data": [1]}]}), None),
    (orjson.dumps({"no outputs": []}), None),
], ids=["not JSON", "short binary", "shape and size disagree", "unknown datatype",
        "no outputs"])
def test_an_answer_that_does_not_fit_is_a_value_error(body: bytes, length: str | None) -> None:
    with pytest.raises(ValueError):
        read_outputs(body, length)


def test_a_well_framed_answer_reads() -> None:
    body, length = framed([fp32([2], 8)], np.array([1.5, np.nan], np.float32).tobytes())
    same(read_outputs(body, length)["x"], np.array([1.5, np.nan], np.float32))
