from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from gateway.protocol.sample import SampleError, read_sample
from gateway.tensors import TensorSpec
from tests.conftest import MODEL, MODELS

INPUTS = (TensorSpec("input", "FP32", (-1, 30)),)
OUTPUTS = (TensorSpec("label", "INT64", (-1,)),)


def test_a_shipped_sample_reads_as_the_arrays_a_request_would_give() -> None:
    feeds = read_sample(MODELS / MODEL / "1" / "sample.json", INPUTS, OUTPUTS, 1 << 20, 8192)
    assert list(feeds) == ["input"]
    assert feeds["input"].dtype == np.float32 and feeds["input"].shape == (2, 30)


@pytest.mark.parametrize(("body", "message"), [
    (b"{", "not valid JSON"),
    (orjson.dumps({"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP32",
                               "data": [0.0] * 30}]}), "unknown input 'x'"),
    (orjson.dumps({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32",
                               "data": [0.0] * 3}]}), "has shape [1, 3]"),
])
def test_a_sample_the_version_would_refuse_says_why(tmp_path: Path, body: bytes,
                                                    message: str) -> None:
    (tmp_path / "sample.json").write_bytes(body)
    with pytest.raises(SampleError, match="sample.json is not a request") as caught:
        read_sample(tmp_path / "sample.json", INPUTS, OUTPUTS, 1 << 20, 8192)
    assert message in str(caught.value)


def test_an_unreadable_sample_says_so(tmp_path: Path) -> None:
    (tmp_path / "sample.json").mkdir()
    with pytest.raises(SampleError, match="cannot read sample.json"):
        read_sample(tmp_path / "sample.json", INPUTS, OUTPUTS, 1 << 20, 8192)
