"""Check a decoded request against a model version's signature, before it is queued.

Validation happens here, on the request's own task, so a bad request is answered 400 and never
reaches a batch it could poison.
"""

from __future__ import annotations

import onnxruntime as ort

from gateway.errors import BadRequest, GatewayError, InferenceFailed, shown
from gateway.protocol.request import InferRequest
from gateway.tensors import TensorSpec


def _shape_fits(shape: tuple[int, ...], expected: tuple[int, ...]) -> bool:
    if len(shape) != len(expected):
        return False
    return all(e < 0 or e == s for s, e in zip(shape, expected, strict=True))


def check_request(request: InferRequest, inputs: tuple[TensorSpec, ...],
                  outputs: tuple[TensorSpec, ...], max_batch_rows: int) -> None:
    """Raise BadRequest unless the request's inputs and outputs fit the model's signature."""
    expected = {spec.name: spec for spec in inputs}
    for name, array in request.inputs.items():
        spec = expected.get(name)
        if spec is None:
            raise BadRequest(f"unknown input {shown(name)}; the model takes "
                             f"{', '.join(repr(n) for n in expected)}")
        datatype = request.datatypes[name]
        if datatype != spec.datatype:
            raise BadRequest(f"input {shown(name)} has datatype {datatype}; the model expects "
                             f"{spec.datatype}")
        if not _shape_fits(array.shape, spec.shape):
            raise BadRequest(f"input {shown(name)} has shape {list(array.shape)}; the model "
                             f"expects {list(spec.shape)} (-1: any size)")
        if array.ndim and spec.shape[0] < 0 and array.shape[0] > max_batch_rows:
            raise BadRequest(f"input {shown(name)} has {array.shape[0]} rows; the limit is "
                             f"{max_batch_rows} rows per request")
    missing = [name for name in expected if name not in request.inputs]
    if missing:
        raise BadRequest(f"missing input(s) {', '.join(repr(n) for n in missing)}; the model "
                         f"takes {', '.join(repr(n) for n in expected)}")
    if request.outputs is not None:
        known = {spec.name for spec in outputs}
        for output in request.outputs:
            if output.name not in known:
                raise BadRequest(f"unknown output {shown(output.name)}; the model gives "
                                 f"{', '.join(repr(n) for n in known)}")


# onnxruntime's error for inputs it rejects; anything else it raises is the model's fault.
_ORT_INVALID_ARGUMENT = getattr(ort.capi.onnxruntime_pybind11_state, "InvalidArgument", ValueError)


def classify_inference_error(exc: Exception) -> GatewayError:
    """What onnxruntime raised for a call, as the answer: inputs it rejects are the caller's
    (400, inputs this check could not see), anything else is the model's (500)."""
    if isinstance(exc, _ORT_INVALID_ARGUMENT):
        return BadRequest(f"onnxruntime rejected the inputs: {exc}")
    return InferenceFailed(f"inference failed: {exc}")
