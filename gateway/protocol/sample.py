"""A version's own `sample.json` (README "Model repository"): a V2 request body it answers, used to
warm it up.

Decoded and checked exactly as a request would be, so a sample that the version would refuse is
found at load, with the same message a caller would get.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gateway.errors import BadRequest
from gateway.protocol.request import decode_request
from gateway.protocol.validate import check_request
from gateway.tensors import TensorSpec


class SampleError(Exception):
    """The sample cannot be read or is not a request this version takes."""


def read_sample(path: Path, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...],
                max_elements: int, max_rows: int) -> dict[str, np.ndarray]:
    """The sample's input arrays, checked against the version's signature."""
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise SampleError(f"cannot read {path.name}: {exc.strerror}") from exc
    try:
        request = decode_request(body, None, max_elements)
        check_request(request, inputs, outputs, max_rows)
    except BadRequest as exc:
        raise SampleError(f"{path.name} is not a request this version takes: {exc.message}") \
            from None
    return request.inputs
