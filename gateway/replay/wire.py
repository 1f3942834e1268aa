"""The V2 binary tensor extension from the client's side, for `gateway replay --against`.

A captured request goes out with every input as binary data and asks for binary outputs, as
tritonclient does by default: the server gets the exact bits serving got (a NaN a caller sent
binary, written `null` in the capture, is NaN again; JSON has no NaN and a server refuses
`null`), and no number is printed and parsed on the way.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from gateway.errors import BadRequest
from gateway.protocol.request import array_from_binary, split_body
from gateway.protocol.response import tensor_bytes
from gateway.replay.reader import decode_tensors
from gateway.tensors import DATATYPES, Tensors


def binary_request(request_id: str, inputs: Tensors,
                   datatypes: dict[str, str]) -> tuple[bytes, int]:
    """The body of an inference request carrying `inputs` as binary data, and the length of
    its JSON header (the `Inference-Header-Content-Length`)."""
    entries: list[dict[str, Any]] = []
    chunks: list[bytes | memoryview] = []
    for name, array in inputs.items():
        chunk = tensor_bytes(array)
        entries.append({"name": name, "datatype": datatypes[name], "shape": list(array.shape),
                        "parameters": {"binary_data_size": len(chunk) if isinstance(chunk, bytes)
                                       else chunk.nbytes}})
        chunks.append(chunk)
    header = orjson.dumps({"id": request_id, "inputs": entries,
                           "parameters": {"binary_data_output": True}})
    return b"".join([header, *chunks]), len(header)


def read_outputs(body: bytes, header_length: str | None) -> Tensors:
    """The outputs of an inference answer, binary or JSON; ValueError when they do not fit."""
    try:
        header, binary = split_body(body, header_length)
        entries = orjson.loads(header)["outputs"]
        outputs: Tensors = {}
        offset = 0
        for entry in entries:
            size = (entry.get("parameters") or {}).get("binary_data_size")
            if size is None:
                outputs.update(decode_tensors([entry])[0])
                continue
            shape = entry["shape"]
            part = binary[offset:offset + size]
            if len(part) != size:
                raise ValueError(f"output {entry['name']!r} claims {size} bytes, "
                                 f"{len(part)} remain")
            array = array_from_binary(entry["name"], DATATYPES[entry["datatype"]], part,
                                      math.prod(shape))
            outputs[entry["name"]] = array.reshape(shape)
            offset += size
    except (BadRequest, KeyError, TypeError, orjson.JSONDecodeError) as exc:
        raise ValueError(str(exc)) from None
    return outputs
