"""Encode a V2 inference response as JSON, or JSON plus binary tensor data.

Triton's output rule (its `http_server.cc`, README "Endpoints"): an output the request lists is
binary only when its own `binary_data` parameter is true, whatever `binary_data_output` says; the
request's `binary_data_output` (default false) decides only when the request lists no outputs, and
then for every output. Binary outputs are appended after the JSON header in the
order of the header's `outputs` list, and the header's length travels in the
`Inference-Header-Content-Length` response header.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from gateway.protocol.json_tensor import datatype_name, json_tensor
from gateway.protocol.request import RequestedOutput

_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def _bytes_elements(array: np.ndarray) -> list[bytes]:
    return [item if isinstance(item, bytes) else str(item).encode() for item in array.reshape(-1)]


def tensor_bytes(array: np.ndarray) -> bytes | memoryview:
    """A tensor's binary data as the V2 binary extension lays it out (BYTES length-prefixed).
    Viewed flat as bytes by NumPy, not by `memoryview.cast`, which refuses an empty tensor's
    shape (a request of 0 rows asking for binary outputs, or any over gRPC, was a 500)."""
    if array.dtype.kind in "OUS":
        return b"".join(struct.pack("<I", len(item)) + item for item in _bytes_elements(array))
    little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return little.reshape(-1).view(np.uint8).data


def encode_response(model_name: str, model_version: str, request_id: str | None,
                    results: Mapping[str, np.ndarray],
                    requested: tuple[RequestedOutput, ...] | None,
                    binary_default: bool) -> tuple[bytes, int | None]:
    """Return the body and, when it carries binary data, the length of its JSON header."""
    if requested is None:
        wanted = [(name, binary_default) for name in results]
    else:
        wanted = [(o.name, o.binary is True) for o in requested]
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes | memoryview] = []
    for name, binary in wanted:
        array = results[name]
        if not binary:
            outputs.append(json_tensor(name, datatype_name(array), array))
            continue
        chunk = tensor_bytes(array)
        outputs.append({"name": name, "datatype": datatype_name(array), "shape": array.shape,
                        "parameters": {"binary_data_size": len(chunk) if isinstance(chunk, bytes)
                                       else chunk.nbytes}})
        chunks.append(chunk)
    doc: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        doc["id"] = request_id
    doc["outputs"] = outputs
    header = orjson.dumps(doc, option=_JSON_OPTIONS)
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)
