from __future__ import annotations

import numpy as np
import pytest

from gateway.errors import BadRequest
from gateway.protocol.request import InferRequest, RequestedOutput
from gateway.protocol.validate import check_request
from gateway.tensors import TensorSpec

INPUTS = (TensorSpec("input", "FP32", (-1, 30)),)
OUTPUTS = (TensorSpec("label", "INT64", (-1,)), TensorSpec("probabilities", "FP32", (-1, 2)))


def request(array: np.ndarray, datatype: str = "FP32", name: str = "input",
            outputs: tuple[RequestedOutput, ...] | None = None) -> InferRequest:
    return InferRequest(None, {}, {name: array}, {name: datatype}, outputs, False)


def test_a_fitting_request_passes() -> None:
    check_request(request(np.zeros((5, 30), np.float32)), INPUTS, OUTPUTS, 100)
    check_request(request(np.zeros((0, 30), np.float32)), INPUTS, OUTPUTS, 100)


@pytest.mark.parametrize("req,fragment", [
    (request(np.zeros((1, 30)), name="x"), "unknown input 'x'; the model takes 'input'"),
    (request(np.zeros((1, 30)), datatype="FP64"), "datatype FP64; the model expects FP32"),
    (request(np.zeros((2, 31))), r"shape \[2, 31\]; the model expects \[-1, 30\]"),
    (request(np.zeros(30)), r"shape \[30\]"),
    (request(np.zeros((101, 30))), "101 rows; the limit is 100"),
    (request(np.zeros((1, 30)), outputs=(RequestedOutput("score", None),)),
     "unknown output 'score'"),
])
def test_misfits_name_the_tensor_and_the_expectation(req: InferRequest, fragment: str) -> None:
    with pytest.raises(BadRequest, match=fragment):
        check_request(req, INPUTS, OUTPUTS, 100)


def test_missing_inputs_are_named() -> None:
    two = (*INPUTS, TensorSpec("mask", "BOOL", (-1,)))
    with pytest.raises(BadRequest, match="missing input.*'mask'"):
        check_request(request(np.zeros((1, 30))), two, OUTPUTS, 100)
