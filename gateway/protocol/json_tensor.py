"""V2 JSON tensors both ways, once: the form HTTP answers, capture records (one by one and column
by column) and replay all write and read.

Writing: `json_tensor` is `{"name", "datatype", "shape", "data"}` with flat data (`json_data`:
NaN and infinity become `null`, BYTES that are not UTF-8 get U+FFFD, as Triton's JSON answers
do). `json_tensor_parts` and `json_row_texts` are the same text cut at the first dimension and
row by row, so that many alike tensors are written with one orjson call per column.

Reading: `tensor_from_json` applies the request path's own decoder (`array_from_json`, with its
type and range checks) to a tensor a capture holds, reading `null` back as NaN; a record that a
request would have been refused for is refused, instead of being cast into something else.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson

from gateway.errors import BadRequest
from gateway.protocol.json_data import array_from_json, json_data
from gateway.protocol.request import MAX_RANK
from gateway.tensors import DATATYPES, datatype_of

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
_ROW_SEPARATOR = b"],["
TRUST = False

_DATATYPE_NAMES: dict[np.dtype, str] = {}


def datatype_name(array: np.ndarray) -> str:
    """The V2 datatype name of an array a model answered (by its dtype, looked up once)."""
    name = _DATATYPE_NAMES.get(array.dtype)
    if name is None:
        name = _DATATYPE_NAMES[array.dtype] = datatype_of(array).name
    return name


def json_tensor(name: str, datatype: str, array: np.ndarray) -> dict[str, Any]:
    """The V2 JSON tensor of `array`, its data flat, for orjson with OPT_SERIALIZE_NUMPY."""
    return {"name": name, "datatype": datatype, "shape": array.shape, "data": json_data(array)}


def json_tensor_parts(name: str, datatype: str, tail: tuple[int, ...]) -> tuple[bytes, bytes]:
    """The text of a JSON tensor of shape (n, *tail) around its row count and its rows: it is
    `before + b"%d" % n + after + b",".join(its rows' json_row_texts) + b"]}"`, byte for byte
    what orjson writes of `json_tensor`."""
    before = (b'{"name":' + orjson.dumps(name) + b',"datatype":' + orjson.dumps(datatype)
              + b',"shape":[')
    after = b"".join(b",%d" % d for d in tail) + b'],"data":['
    return before, after


def json_row_texts(array: np.ndarray) -> list[bytes] | None:
    """The JSON text of each row's values (along the first dimension), from one orjson call;
    None for what only `json_tensor` writes (text, a non-native byte order, rows of no value)."""
    dtype = array.dtype
    if (dtype.kind in "OUSV" or (not dtype.isnative and dtype.itemsize > 1) or not array.ndim
            or not array.shape[0]):
        return None
    rows = array.reshape(array.shape[0], -1)
    if not rows.shape[1]:
        return None
    texts = orjson.dumps(rows, option=_OPTIONS)[2:-2].split(_ROW_SEPARATOR)
    return texts if len(texts) == rows.shape[0] else None


def tensor_from_json(entry: Any) -> tuple[str, str, np.ndarray]:
    """A captured V2 JSON tensor's name, datatype and array (shaped; BYTES as str objects,
    `null` as NaN), decoded as a request's is; ValueError saying what does not fit."""
    try:
        name, datatype_text, shape = entry["name"], entry["datatype"], entry["shape"]
        datatype = DATATYPES[datatype_text]
        if (not isinstance(name, str) or not isinstance(shape, list) or len(shape) > MAX_RANK
                or not all(type(d) is int and d >= 0 for d in shape)):
            raise ValueError(f"not a V2 tensor: name {str(name)[:40]!r}, shape "
                             f"{str(shape)[:80]}")
        # Decoded as a request whose body proves no string is in its data is not: a capture
        # is a file anyone may have edited, so each element's type is checked first.
        array = array_from_json(name, datatype, entry["data"], math.prod(shape), trusted=TRUST,
                                nulls=True)
        return name, datatype.name, array.reshape(shape)
    except BadRequest as exc:
        raise ValueError(str(exc)) from None
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"not a V2 tensor: {exc}") from None


def rows_from_json(name: str, datatype_text: str, data: list[Any], rows: int,
                   tail: tuple[int, ...]) -> np.ndarray:
    """Many alike captured tensors' data (a list of each one's flat data, `rows` rows of shape
    `tail` in all) as one array of shape (rows, *tail), decoded as `tensor_from_json` decodes
    each: one NumPy call for all of them; ValueError when they do not fit."""
    try:
        datatype = DATATYPES[datatype_text]
        array = array_from_json(name, datatype, data, rows * math.prod(tail), trusted=TRUST,
                                nulls=True)
        return array.reshape(rows, *tail)
    except BadRequest as exc:
        raise ValueError(str(exc)) from None
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"not a V2 tensor: {exc}") from None
