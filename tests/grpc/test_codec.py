"""The gRPC codec without a server: typed and raw contents of every datatype decode as the HTTP
codec decodes them, shapes that lie are refused before allocating, answers go back raw in the
order asked for."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.errors import BadRequest
from gateway.grpc import v2_pb2 as pb
from gateway.grpc.codec import decode_infer, encode_infer
from gateway.protocol.request import RequestedOutput
from gateway.protocol.response import tensor_bytes
from tests.conftest import ECHO_TYPES, echo_values

TYPED_FIELDS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
                "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
                "UINT16": "uint_contents", "UINT32": "uint_contents",
                "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents",
                "BYTES": "bytes_contents"}
LIMIT = 1 << 20


def message_of(values: dict[str, np.ndarray], raw: bool) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name="m", id="r1")
    for name, array in values.items():
        tensor = message.inputs.add(name=name, datatype=name, shape=array.shape)
        if raw:
            message.raw_input_contents.append(bytes(tensor_bytes(array)))
        else:
            items = [str(v).encode() for v in array.ravel()] if name == "BYTES" \
                else array.ravel().tolist()
            getattr(tensor.contents, TYPED_FIELDS[name]).extend(items)
    return message


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
def test_every_datatype_decodes_to_its_array(raw: bool) -> None:
    values = {t: echo_values(t) for t in ECHO_TYPES if raw or t != "FP16"}
    values["BYTES"] = np.array([[b.decode() for b in row] for row in values["BYTES"]],
                               dtype=object)
    request = decode_infer(message_of(values, raw), LIMIT, None)
    assert request.id == "r1" and request.outputs is None
    for name, array in values.items():
        got = request.inputs[name]
        assert got.shape == array.shape and request.datatypes[name] == name
        if name == "BYTES":
            assert got.tolist() == array.tolist()
        else:
            assert got.dtype == array.dtype.newbyteorder("<")
            np.testing.assert_array_equal(got, array)


def refused(message: pb.ModelInferRequest, fragment: str) -> None:
    with pytest.raises(BadRequest, match=fragment):
        decode_infer(message, LIMIT, None)


def test_lying_and_malformed_messages_are_refused() -> None:
    lying = pb.ModelInferRequest(model_name="m")
    lying.inputs.add(name="x", datatype="FP32", shape=[1000, 30])
    lying.raw_input_contents.append(b"\0" * 120)
    refused(lying, "binary_data_size is 120")
    huge = pb.ModelInferRequest(model_name="m")
    huge.inputs.add(name="x", datatype="FP32", shape=[1 << 40, 1 << 40])
    refused(huge, "the limit is")
    typed = pb.ModelInferRequest(model_name="m")
    typed.inputs.add(name="x", datatype="INT8", shape=[2]).contents.int_contents.extend([1, 999])
    refused(typed, "outside INT8")
    fp16 = pb.ModelInferRequest(model_name="m")
    fp16.inputs.add(name="x", datatype="FP16", shape=[1]).contents.fp32_contents.append(1.0)
    refused(fp16, "raw_input_contents")
    unknown = pb.ModelInferRequest(model_name="m")
    unknown.inputs.add(name="x", datatype="FP8", shape=[1])
    refused(unknown, "not one of")
    negative = pb.ModelInferRequest(model_name="m")
    negative.inputs.add(name="x", datatype="FP32", shape=[-1, 2])
    refused(negative, "non-negative")
    counted = message_of({"INT32": np.arange(4, dtype=np.int32)}, raw=True)
    counted.raw_input_contents.append(b"")
    refused(counted, "2 entries for 1 inputs")
    refused(pb.ModelInferRequest(model_name="m"), "at least one")
    not_text = pb.ModelInferRequest(model_name="m")
    not_text.inputs.add(name="x", datatype="BYTES", shape=[1]).contents.bytes_contents.append(
        b"\xff")
    refused(not_text, "not UTF-8")
    with pytest.raises(BadRequest, match="unknown input 'INT32'"):
        decode_infer(message_of({"INT32": np.arange(2, dtype=np.int32)}, True), LIMIT,
                     {"y": frozenset({"FP32"})})
    with pytest.raises(BadRequest, match="has datatype INT32; the model expects FP32"):
        decode_infer(message_of({"INT32": np.arange(2, dtype=np.int32)}, False), LIMIT,
                     {"INT32": frozenset({"FP32"})})


def test_parameters_and_answers() -> None:
    message = message_of({"INT32": np.arange(2, dtype=np.int32)}, raw=True)
    message.parameters["timeout"].int64_param = 500
    message.parameters["tag"].string_param = "a"
    message.outputs.add(name="b")
    message.outputs.add(name="a")
    request = decode_infer(message, LIMIT, None)
    assert request.timeout_us == 500 and request.parameters["tag"] == "a"
    assert request.outputs == (RequestedOutput("b", None), RequestedOutput("a", None))
    results = {"a": np.array([1.5], np.float32), "b": np.array(["x", "yz"], dtype=object)}
    response = encode_infer("m", "2", request, results)
    assert (response.model_name, response.model_version, response.id) == ("m", "2", "r1")
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("b", "BYTES", [2]), ("a", "FP32", [1])]
    assert response.raw_output_contents[0] == b"\x01\0\0\0x\x02\0\0\0yz"
    assert np.frombuffer(response.raw_output_contents[1], np.float32).tolist() == [1.5]
    message.parameters["timeout"].string_param = "soon"
    refused(message, "timeout")
