"""Capture records (README "Prediction capture and replay"): what one JSON line holds, and the name
of the file it goes to.

Pure functions over what the request path handed over; the writer thread calls them, never the
event loop. Every tensor is written as a V2 JSON tensor with flat `data`, whatever way it arrived
(HTTP JSON or binary, gRPC typed or raw contents: decoded alike), by the one JSON tensor codec
(`gateway.protocol.json_tensor`), so every record reads alike:

    {"kind": "infer", "time": "2026-12-03T15:17:30.123456Z", "request_id": "req-17",
     "trace_id": null, "model": "breast-cancer", "version": 2, "route": "split",
     "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 30], "data": [...]}],
     "outputs": [{"name": "label", "datatype": "INT64", "shape": [1], "data": [0]}, ...]}
    {"kind": "feedback", "time": ..., "request_id": ..., "trace_id": ..., "model": ...,
     "feedback": [{"label": 1, "version": 2, "prediction": 0, "id": "req-17"}]}

Limits of the JSON form (the codec's): a float NaN or infinity is written `null` (JSON has
neither; replay reads `null` back as NaN); a BYTES element that is not UTF-8 is written with
U+FFFD in place of the bytes that are not (as the JSON response does). A redacted input keeps
its name, datatype and shape, with `"data": null` and `"parameters": {"redacted": true}`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

from gateway.protocol.json_tensor import datatype_name, json_tensor
from gateway.protocol.request import RequestedOutput

INFER = "infer"
FEEDBACK = "feedback"
PREFIX = "capture-"
SUFFIX = ".jsonl"
GZIP_SUFFIX = ".jsonl.gz"
_MAX_NAME_BYTES = 150
"""Longest model name written as is in a file name (a file name may have 255 bytes, and a model
name 128 characters of up to 4 bytes each)."""
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE


class _Clock:
    """ISO 8601 UTC text of a time, its date and second formatted once per second."""

    second = -1
    prefix = b""


def utc_bytes(t: float) -> bytes:
    """`t` (seconds since the epoch) as ISO 8601 UTC with microseconds, e.g.
    b"2026-12-03T15:17:30.123456Z"."""
    second = int(t)
    if second != _Clock.second:
        _Clock.prefix = datetime.fromtimestamp(second, UTC).strftime(
            "%Y-%m-%dT%H:%M:%S.").encode()
        _Clock.second = second
    return _Clock.prefix + b"%06dZ" % ((t - second) * 1e6)


def utc_text(t: float) -> str:
    """`utc_bytes` as text."""
    return utc_bytes(t).decode()


def file_name(model: str, t: float) -> str:
    """`capture-<model>-<UTC time>.jsonl`: names sort by time within a model; a model name too
    long for a file name is cut and given a digest of the whole name."""
    name = model
    if len(model.encode()) > _MAX_NAME_BYTES:
        digest = hashlib.sha256(model.encode()).hexdigest()[:16]
        name = model.encode()[:_MAX_NAME_BYTES - 17].decode(errors="ignore") + "~" + digest
    stamp = datetime.fromtimestamp(t, UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{PREFIX}{name}-{stamp}{SUFFIX}"


def redacted(name: str, datatype: str, array: np.ndarray) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": array.shape, "data": None,
            "parameters": {"redacted": True}}


def infer_line(t: float, request_id: str | None, trace_id: str | None, model: str,
               version: int, route: str, inputs: Mapping[str, np.ndarray],
               datatypes: Mapping[str, str], results: Mapping[str, np.ndarray],
               requested: tuple[RequestedOutput, ...] | None,
               redact: Collection[str] = ()) -> bytes:
    """The line of one answered request: its inputs as sent, the outputs it was answered with."""
    names = results if requested is None else [o.name for o in requested]
    return _dumps({
        "kind": INFER, "time": utc_text(t), "request_id": request_id, "trace_id": trace_id,
        "model": model, "version": version, "route": route,
        "inputs": [json_tensor(name, datatypes[name], array) if name not in redact
                   else redacted(name, datatypes[name], array)
                   for name, array in inputs.items()],
        "outputs": [json_tensor(name, datatype_name(results[name]), results[name])
                    for name in names],
    })


def feedback_line(t: float, request_id: str | None, trace_id: str | None, model: str,
                  body: bytes) -> bytes:
    """The line of one accepted feedback batch: its items as sent (the body was validated)."""
    items = orjson.loads(body)["feedback"]
    return _dumps({"kind": FEEDBACK, "time": utc_text(t), "request_id": request_id,
                   "trace_id": trace_id, "model": model, "feedback": items})


def _dumps(doc: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(doc, option=_OPTIONS)
    except TypeError:  # a NumPy type orjson does not take (a big-endian view, float128, ...)
        return orjson.dumps(doc, option=_OPTIONS, default=_plain)


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to a capture line")
