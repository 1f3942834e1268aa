"""ModelInferRequest to an `InferRequest`, and an answer to a ModelInferResponse (the gRPC
transport's codec; the JSON one is `gateway.protocol`).

Inputs come typed (`contents`, one repeated field per datatype) or raw (`raw_input_contents`,
one entry per input, laid out as the binary tensor extension lays them out; tritonclient sends
raw by default). Either way the declared datatype is checked against the ones the model's
loaded versions take, and the shape against the element limit and the data's own length, before
anything is allocated: the message itself is bounded by `limits.max_body_bytes`
(`grpc.max_receive_message_length`), and a numeric tensor costs a small multiple of its share of
it (typed contents are read one element at a time into the array, never as a list of Python
numbers). BYTES elements become Python strings, about 50 bytes each beside their text, as they
do over HTTP. Outputs go back raw, as Triton answers, in the order asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

import numpy as np

from gateway.errors import BadRequest, shown
from gateway.grpc import v2_pb2 as pb
from gateway.protocol.request import (
    MAX_RANK,
    InferRequest,
    RequestedOutput,
    array_from_binary,
    element_count,
    wrong_datatype,
)
from gateway.protocol.response import tensor_bytes
from gateway.tensors import DATATYPES, Datatype, Tensors, datatype_of

_TYPED_FIELD = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
                "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
                "UINT16": "uint_contents", "UINT32": "uint_contents",
                "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents",
                "BYTES": "bytes_contents"}
"""The `InferTensorContents` field each datatype travels in (FP16 has none: raw only)."""

_PARAMETER_VALUE: dict[str, Callable[[pb.InferParameter], Any]] = {
    "bool_param": lambda p: p.bool_param, "int64_param": lambda p: p.int64_param,
    "string_param": lambda p: p.string_param, "double_param": lambda p: p.double_param,
    "uint64_param": lambda p: p.uint64_param}


def parameters_of(parameters: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    """A parameters map as plain values (`timeout` an int of microseconds, as over HTTP)."""
    plain: dict[str, Any] = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        if choice is not None:
            plain[key] = _PARAMETER_VALUE[choice](parameter)
    timeout = plain.get("timeout")
    if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool)
                                or timeout < 0):
        raise BadRequest("parameter 'timeout' must be a non-negative integer of microseconds")
    return plain


def decode_infer(message: pb.ModelInferRequest, max_elements: int,
                 known_inputs: Mapping[str, Collection[str]] | None) -> InferRequest:
    """The request a ModelInferRequest carries; BadRequest with the reason when it does not fit."""
    raw = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise BadRequest(f"raw_input_contents has {len(raw)} entries for {len(message.inputs)} "
                         "inputs; send one per input, in the order of 'inputs'")
    if not message.inputs:
        raise BadRequest("'inputs' must name at least one tensor")
    inputs: Tensors = {}
    datatypes: dict[str, str] = {}
    for position, tensor in enumerate(message.inputs):
        name = tensor.name
        if not name:
            raise BadRequest(f"inputs[{position}] needs a name")
        if name in inputs:
            raise BadRequest(f"input {shown(name)} appears more than once")
        if known_inputs is not None and name not in known_inputs:
            raise BadRequest(f"unknown input {shown(name)}; the model takes "
                             f"{', '.join(repr(n) for n in sorted(known_inputs))}")
        datatype = DATATYPES.get(tensor.datatype)
        if datatype is None:
            raise BadRequest(f"input {shown(name)}: datatype {tensor.datatype[:40]!r} is not one "
                             f"of {', '.join(DATATYPES)}")
        if known_inputs is not None and datatype.name not in known_inputs[name]:
            raise wrong_datatype(name, datatype.name, known_inputs[name])
        shape = list(tensor.shape)
        if len(shape) > MAX_RANK or any(d < 0 for d in shape):
            raise BadRequest(f"input {shown(name)}: shape {str(shape)[:80]} must be at most "
                             f"{MAX_RANK} non-negative dimensions")
        count = element_count(name, shape, max_elements)
        if raw:
            if tensor.HasField("contents"):  # as Triton refuses it: which one would be meant?
                raise BadRequest(f"input {shown(name)}: contents must not be set when the "
                                 "request uses raw_input_contents; send each input one way")
            array = array_from_binary(name, datatype, memoryview(raw[position]), count)
        else:
            array = _from_contents(name, datatype, tensor.contents, count)
        inputs[name] = array.reshape(shape)
        datatypes[name] = datatype.name
    outputs = tuple(RequestedOutput(o.name, None) for o in message.outputs) or None
    if outputs is not None and len({o.name for o in outputs}) != len(outputs):
        raise BadRequest("'outputs' names an output more than once")
    return InferRequest(message.id or None, parameters_of(message.parameters), inputs,
                        datatypes, outputs, False)


def _from_contents(name: str, datatype: Datatype, contents: pb.InferTensorContents,
                   count: int) -> np.ndarray:
    field = _TYPED_FIELD.get(datatype.name)
    if field is None:
        raise BadRequest(f"input {shown(name)}: {datatype.name} has no typed contents field; "
                         "send it in raw_input_contents")
    values = getattr(contents, field)
    if len(values) != count:
        raise BadRequest(f"input {shown(name)}: its shape holds {count} elements, its "
                         f"contents.{field} has {len(values)}")
    if datatype.is_bytes:
        array = np.empty(count, dtype=object)
        try:
            array[:] = [bytes(item).decode("utf-8") for item in values]
        except UnicodeDecodeError:
            raise BadRequest(f"input {shown(name)}: a BYTES element is not UTF-8 text, which "
                             "onnxruntime string tensors need") from None
        return array
    try:  # one element at a time: np.array(values) would first make a Python object of
        # every element (34x the message's size for INT64, which a few messages at once
        # take past a pod's memory limit)
        return np.fromiter(values, dtype=datatype.dtype, count=count)
    except (OverflowError, ValueError, TypeError):
        raise BadRequest(f"input {shown(name)}: contents.{field} holds a value outside "
                         f"{datatype.name}") from None


def encode_infer(model: str, version: str, request: InferRequest,
                 results: Tensors) -> pb.ModelInferResponse:
    """The answer, every output raw (as Triton answers); the outputs asked for, in that order."""
    names = list(results) if request.outputs is None else [o.name for o in request.outputs]
    response = pb.ModelInferResponse(model_name=model, model_version=version,
                                     id=request.id or "")
    for name in names:
        array = results[name]
        response.outputs.add(name=name, datatype=datatype_of(array).name, shape=array.shape)
        response.raw_output_contents.append(bytes(tensor_bytes(array)))
    return response
