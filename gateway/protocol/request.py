"""Decode a V2 inference request (JSON, or JSON plus the binary tensor data extension).

Every check that bounds memory runs before the allocation it guards: the declared shape's element
count is checked against the limit before any array is built, and binary sizes are checked against
the bytes actually received. Each failure is a BadRequest whose message names the input and the fix.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from gateway.errors import BadRequest, shown
from gateway.protocol.json_data import SAFE_INFERENCE_BYTES, array_from_json, no_strings_in_data
from gateway.tensors import DATATYPES, Datatype

MAX_RANK = 32
"""Most dimensions a tensor may declare (NumPy's own limit is 64; ONNX models use a handful)."""


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool | None
    """Its `binary_data` parameter; None (absent) answers the output as JSON, as Triton does."""


@dataclass(slots=True)  # per request, never changed; not frozen: see inference.Answer
class InferRequest:
    id: str | None
    parameters: dict[str, Any]
    inputs: dict[str, np.ndarray]
    """Input name -> decoded array, shaped as the request declared."""
    datatypes: dict[str, str]
    """Input name -> the V2 datatype the request declared."""
    outputs: tuple[RequestedOutput, ...] | None
    """The outputs asked for, or None for all of them."""
    binary_outputs: bool
    """`binary_data_output`: every output binary, when the request lists no outputs."""

    @property
    def timeout_us(self) -> int | None:
        value = self.parameters.get("timeout")
        return value if isinstance(value, int) and not isinstance(value, bool) else None


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """Split a body into its JSON header and its binary section (empty without the extension)."""
    if header_length is None:
        return body, memoryview(b"")
    try:
        length = int(header_length)
    except ValueError:
        raise BadRequest(f"Inference-Header-Content-Length must be an integer, got "
                         f"{header_length[:40]!r}") from None
    if not 0 < length <= len(body):
        raise BadRequest(f"Inference-Header-Content-Length is {length} but the body has "
                         f"{len(body)} bytes; it must count the JSON header's bytes")
    view = memoryview(body)
    return bytes(view[:length]), view[length:]


def decode_request(body: bytes, header_length: str | None, max_elements: int,
                   known_inputs: Mapping[str, Collection[str]] | None = None) -> InferRequest:
    """Parse and decode a whole inference request; raises BadRequest on any malformation.

    `known_inputs`, when given, are the only input names the model has (in any version): a
    request naming another is refused at that input, before the rest is decoded (a body of
    140,000 tiny inputs must not hold the event loop for half a second first)."""
    header, binary = split_body(body, header_length)
    try:
        doc = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest("request body must be a JSON object with an 'inputs' list")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest("'id' must be a string")
    parameters = _request_parameters(doc)
    inputs, datatypes = _decode_inputs(doc, header, binary, max_elements, known_inputs)
    outputs = _requested_outputs(doc.get("outputs"))
    return InferRequest(request_id, parameters, inputs, datatypes, outputs,
                        parameters.get("binary_data_output", False))


def _request_parameters(doc: dict[str, Any]) -> dict[str, Any]:
    parameters = _mapping(doc.get("parameters"), "request 'parameters'")
    timeout = parameters.get("timeout")
    if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool)
                                or timeout < 0):
        raise BadRequest("parameter 'timeout' must be a non-negative integer of microseconds")
    if not isinstance(parameters.get("binary_data_output", False), bool):
        raise BadRequest("parameter 'binary_data_output' must be true or false")
    return parameters


def _decode_inputs(doc: dict[str, Any], header: bytes, binary: memoryview, max_elements: int,
                   known_inputs: Mapping[str, Collection[str]] | None,
                   ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Each input's array, shaped as declared, and its declared datatype, by name."""
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise BadRequest("'inputs' must be a non-empty list of tensors")
    inputs: dict[str, np.ndarray] = {}
    datatypes: dict[str, str] = {}
    no_strings: list[bool] = []  # proven once, for the first input that needs the proof
    offset = 0
    for position, raw in enumerate(raw_inputs):
        name, datatype, shape, params = _tensor_header(raw, position)
        if name in inputs:
            raise BadRequest(f"input {shown(name)} appears more than once")
        if known_inputs is not None and name not in known_inputs:
            raise BadRequest(f"unknown input {shown(name)}; the model takes "
                             f"{', '.join(repr(n) for n in sorted(known_inputs))}")
        if known_inputs is not None and datatype.name not in known_inputs[name]:
            raise wrong_datatype(name, datatype.name, known_inputs[name])
        count = element_count(name, shape, max_elements)
        size = params.get("binary_data_size")
        if size is not None:
            part = _binary_part(name, size, binary, offset)
            array = array_from_binary(name, datatype, part, count)
            offset += size
        elif "data" not in raw:
            raise BadRequest(f"input {shown(name)} has neither 'data' nor a binary_data_size "
                             "parameter")
        else:
            # NumPy may infer the data's type itself when the widest array it could make (a
            # fixed-width string array, count x the longest string) is small anyway, or when
            # the request's quotes prove there is no string in it; else each element is checked.
            trusted = count * 4 * len(header) <= SAFE_INFERENCE_BYTES
            if not trusted:
                if not no_strings:
                    no_strings.append(no_strings_in_data(doc, header))
                trusted = no_strings[0]
            array = array_from_json(name, datatype, raw["data"], count, trusted)
        inputs[name] = array.reshape(shape)
        datatypes[name] = datatype.name
    if offset != len(binary):
        raise BadRequest(f"the body has {len(binary) - offset} binary bytes that no input's "
                         "binary_data_size accounts for")
    return inputs, datatypes


def _binary_part(name: str, size: Any, binary: memoryview, offset: int) -> memoryview:
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BadRequest(f"input {shown(name)}: binary_data_size must be a non-negative integer")
    if offset + size > len(binary):
        raise BadRequest(f"input {shown(name)} declares binary_data_size {size} but only "
                         f"{len(binary) - offset} binary bytes remain in the body")
    return binary[offset:offset + size]


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object")
    return value


def _tensor_header(raw: Any, position: int) -> tuple[str, Datatype, list[int], dict[str, Any]]:
    if not isinstance(raw, dict):
        raise BadRequest(f"inputs[{position}] must be an object with name, shape, datatype, data")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"inputs[{position}] needs a 'name' string")
    shape = raw.get("shape")
    if (not isinstance(shape, list)
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise BadRequest(f"input {shown(name)}: 'shape' must be a list of non-negative integers, "
                         f"got {str(shape)[:80]}")
    if len(shape) > MAX_RANK:
        raise BadRequest(f"input {shown(name)}: shape has {len(shape)} dimensions; at most "
                         f"{MAX_RANK} are accepted")
    datatype_name = raw.get("datatype")
    datatype = DATATYPES.get(datatype_name) if isinstance(datatype_name, str) else None
    if datatype is None:
        raise BadRequest(f"input {shown(name)}: datatype {str(datatype_name)[:40]!r} is not one of "
                         f"{', '.join(DATATYPES)}")
    return name, datatype, shape, _mapping(raw.get("parameters"), f"input {shown(name)} parameters")


def wrong_datatype(name: str, datatype: str, taken: Collection[str]) -> BadRequest:
    """A tensor in a datatype no loaded version takes it in: refused before its data is read
    (the same words as the signature check's, gateway.protocol.validate)."""
    return BadRequest(f"input {shown(name)} has datatype {datatype}; the model expects "
                      f"{' or '.join(sorted(taken))}")


def element_count(name: str, shape: list[int], max_elements: int) -> int:
    """The tensor's element count, within the limit. An empty tensor's other dimensions count
    too: NumPy refuses a shape like [0, 10**12, 10**12] whose non-zero product overflows."""
    count = math.prod(shape)
    extent = math.prod(d for d in shape if d)
    if count > max_elements or extent > max_elements:
        raise BadRequest(f"input {shown(name)} has shape {str(shape)[:200]} ({count} elements, "
                         f"{extent} without its zero dimensions); the limit is "
                         f"{max_elements} elements per tensor")
    return count


def array_from_binary(name: str, datatype: Datatype, data: memoryview, count: int) -> np.ndarray:
    """A tensor's elements from its binary data (flat; BadRequest when they do not fit)."""
    if datatype.is_bytes:
        return _bytes_from_binary(name, data, count)
    expected = count * datatype.dtype.itemsize
    if len(data) != expected:
        raise BadRequest(f"input {shown(name)}: {count} {datatype.name} elements need {expected} "
                         f"bytes, binary_data_size is {len(data)}")
    return np.frombuffer(data, dtype=datatype.dtype)


def _bytes_from_binary(name: str, data: memoryview, count: int) -> np.ndarray:
    """BYTES elements are each a 4-byte little-endian length followed by that many bytes.

    onnxruntime's string tensors hold UTF-8 text, so elements are decoded here (and refused when
    they are not UTF-8) instead of reaching the model as the text "b'...'".
    """
    items: list[str] = []
    position = 0
    while position < len(data):
        if position + 4 > len(data):
            raise BadRequest(f"input {shown(name)}: BYTES element {len(items)} has a truncated "
                             "length")
        (length,) = struct.unpack_from("<I", data, position)
        position += 4
        if position + length > len(data):
            raise BadRequest(f"input {shown(name)}: BYTES element {len(items)} claims {length} "
                             f"bytes, {len(data) - position} remain")
        try:
            items.append(str(data[position:position + length], "utf-8"))
        except UnicodeDecodeError:
            raise BadRequest(f"input {shown(name)}: BYTES element {len(items)} is not UTF-8 text, "
                             "which onnxruntime string tensors need") from None
        position += length
        if len(items) > count:
            break
    if len(items) != count:
        raise BadRequest(f"input {shown(name)}: shape needs {count} BYTES elements, the binary "
                         f"data holds {len(items) if len(items) <= count else 'more'}")
    array = np.empty(count, dtype=object)
    array[:] = items
    return array


def _requested_outputs(raw: Any) -> tuple[RequestedOutput, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise BadRequest("'outputs' must be a list of {\"name\": ...} objects")
    outputs: list[RequestedOutput] = []
    for position, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequest(f"outputs[{position}] needs a 'name' string")
        params = _mapping(item.get("parameters"), f"output {shown(item['name'])} parameters")
        if "classification" in params:
            raise BadRequest("the 'classification' output parameter is not supported; ask for "
                             "the model's label output instead")
        binary = params.get("binary_data", None)
        if binary is not None and not isinstance(binary, bool):
            raise BadRequest(f"output {shown(item['name'])}: binary_data must be true or false")
        outputs.append(RequestedOutput(item["name"], binary))
    names = [o.name for o in outputs]
    if len(set(names)) != len(names):
        raise BadRequest("'outputs' names an output more than once")
    return tuple(outputs)
