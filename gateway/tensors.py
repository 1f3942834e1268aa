"""The tensor vocabulary shared by the layers: V2 datatypes, their NumPy and onnxruntime names.

Plain data, as in KServe: one table maps each Open Inference Protocol datatype to the NumPy dtype
it decodes to (little-endian, as the binary extension requires) and to the onnxruntime type string
of the ONNX graph. BF16 has no NumPy dtype and is not served.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Tensors = dict[str, np.ndarray]
"""Tensor name -> array: a request's inputs or a model's outputs."""


@dataclass(frozen=True)
class Datatype:
    name: str
    """The V2 name, e.g. FP32."""
    dtype: np.dtype
    """The NumPy dtype, little-endian; object for BYTES."""
    ort_type: str
    """The onnxruntime type string, e.g. tensor(float)."""

    @property
    def is_bytes(self) -> bool:
        return self.name == "BYTES"


def _table() -> dict[str, Datatype]:
    rows = [
        ("BOOL", "?", "bool"), ("INT8", "<i1", "int8"), ("INT16", "<i2", "int16"),
        ("INT32", "<i4", "int32"), ("INT64", "<i8", "int64"), ("UINT8", "<u1", "uint8"),
        ("UINT16", "<u2", "uint16"), ("UINT32", "<u4", "uint32"), ("UINT64", "<u8", "uint64"),
        ("FP16", "<f2", "float16"), ("FP32", "<f4", "float"), ("FP64", "<f8", "double"),
        ("BYTES", "O", "string"),
    ]
    return {name: Datatype(name, np.dtype(code), f"tensor({ort})") for name, code, ort in rows}


DATATYPES: dict[str, Datatype] = _table()
"""V2 datatype name -> Datatype."""

BY_ORT_TYPE: dict[str, Datatype] = {d.ort_type: d for d in DATATYPES.values()}
"""onnxruntime type string -> Datatype."""

BY_DTYPE: dict[np.dtype, Datatype] = {
    d.dtype.newbyteorder("="): d for d in DATATYPES.values() if not d.is_bytes}
"""Native-order NumPy dtype -> Datatype (for arrays onnxruntime returns)."""


def datatype_of(array: np.ndarray) -> Datatype:
    """The V2 datatype of an array onnxruntime returned (strings come back as object or str)."""
    if array.dtype.kind in "OUS":
        return DATATYPES["BYTES"]
    return BY_DTYPE[array.dtype.newbyteorder("=")]


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model graph; -1 in `shape` is a dynamic dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}
