from __future__ import annotations

import numpy as np

from gateway.tensors import BY_ORT_TYPE, DATATYPES, TensorSpec, datatype_of


def test_every_v2_datatype_has_a_numpy_and_onnxruntime_name() -> None:
    assert list(DATATYPES) == ["BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16",
                               "UINT32", "UINT64", "FP16", "FP32", "FP64", "BYTES"]
    assert BY_ORT_TYPE["tensor(float)"].name == "FP32"
    assert BY_ORT_TYPE["tensor(string)"].name == "BYTES"
    assert all(d.dtype.byteorder in "<|=" for d in DATATYPES.values())


def test_datatype_of_arrays_onnxruntime_returns() -> None:
    assert datatype_of(np.zeros(1, np.float32)).name == "FP32"
    assert datatype_of(np.zeros(1, np.int64)).name == "INT64"
    assert datatype_of(np.array(["a"], dtype=object)).name == "BYTES"
    assert datatype_of(np.array(["a"])).name == "BYTES"
    assert datatype_of(np.zeros(1, bool)).name == "BOOL"


def test_tensor_spec_json() -> None:
    assert TensorSpec("x", "FP32", (-1, 3)).to_json() == {
        "name": "x", "datatype": "FP32", "shape": [-1, 3]}
