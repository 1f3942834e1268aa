"""JSON tensor data to arrays, with memory bounded by the request's own size; and arrays to JSON
data (`json_data`), the one encoder answers and capture records use.

`np.array` infers the type of a JSON list itself, and a string among numbers makes it build a
fixed-width string array of count x the longest string: a 45 KB body with one long string among
4,999 short ones asked for 370 MB, a 7 MB one for more than NumPy could have (a 500). So NumPy
infers only where that cannot cost much (`SAFE_INFERENCE_BYTES`), or where the request's quotes
prove there is no string in any tensor's data (`no_strings_in_data`); elsewhere the elements'
Python types are checked first (`_leaf_types`). Whatever NumPy infers is then checked against
the datatype, so both ways answer alike.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

import numpy as np

from gateway.errors import BadRequest, shown
from gateway.tensors import DATATYPES, Datatype

_INT_KINDS = "iu"

_LEAF_TYPES = {"BOOL": frozenset({bool}), "BYTES": frozenset({str})}
"""Python types JSON data may hold, per datatype; integer types take int (and bool, as NumPy
does), float types int, float and bool (orjson makes exactly these types, so a set of types is
a complete check)."""
_INT_TYPES = frozenset({int, bool})
_NUMBER_TYPES = frozenset({int, float, bool})
_NULLABLE_TYPES = _NUMBER_TYPES | {type(None)}


SAFE_INFERENCE_BYTES = 1 << 20
"""Largest array NumPy's own type inference of JSON data may make (a fixed-width string array
of count x the header's length x 4 bytes at worst) without proof that the data holds no string."""
_QUOTE = 34


def no_strings_in_data(doc: dict[str, Any], header: bytes) -> bool:
    """True when no tensor's data holds a string: every string of a JSON text is two '"' (an
    escaped one adds one), so a header with exactly as many as its own structure needs (keys,
    names, datatypes, parameters) has none in its data. NumPy counts the quotes: `bytes.count`
    took 10 µs for an 18 KB header, ten times as long."""
    structure = _structure_strings(doc)
    if structure is None:
        return False
    quotes = np.count_nonzero(np.frombuffer(header, dtype=np.uint8) == _QUOTE)
    return int(quotes) == 2 * structure


_SMALL = 64
"""Longest list `_structure_strings` walks (a shape, the outputs asked for); a longer one
outside a tensor's data leaves the count to the element-wise check."""


def _structure_strings(doc: dict[str, Any]) -> int | None:
    """How many strings the request holds outside its tensors' data (keys, names, datatypes,
    parameters); None when it cannot tell cheaply (an odd shape of document)."""
    total = len(doc)  # the keys
    for key, value in doc.items():
        if key == "inputs" and type(value) is list:
            for raw in value:
                if type(raw) is not dict:
                    return None
                total += len(raw)
                for field, item in raw.items():
                    if field != "data":
                        count = _small_strings(item)
                        if count is None:
                            return None
                        total += count
        else:
            count = _small_strings(value)
            if count is None:
                return None
            total += count
    return total


def _small_strings(value: Any, depth: int = 0) -> int | None:
    kind = type(value)
    if kind is str:
        return 1
    if kind is dict or kind is list:
        if depth > 3 or len(value) > _SMALL:
            return None
        items = value.values() if kind is dict else value
        total = len(value) if kind is dict else 0
        for item in items:
            count = _small_strings(item, depth + 1)
            if count is None:
                return None
            total += count
        return total
    return 0


def _leaf_types(name: str, data: list[Any]) -> set[type]:
    """The Python types of the leaves of `data`, nested or flat, without building anything.

    This runs before NumPy sees data that may hold strings: `np.array` on a list holding one
    long string among short ones makes a fixed-width string array of count x longest (a 45 KB
    body asked for 370 MB). At C speed (`map(type, ...)` over a lazy chain), but still some
    40 ns an element, so it runs only when the request's quotes say a string may be there."""
    depth, first = 1, data[0] if data else None
    while isinstance(first, list):
        depth, first = depth + 1, first[0] if first else None
    leaves: Any = data
    for _ in range(depth - 1):
        leaves = chain.from_iterable(leaves)
    try:
        return set(map(type, leaves))
    except TypeError:  # a number where a nested list belongs
        raise _ragged(name) from None


def _ragged(name: str) -> BadRequest:
    return BadRequest(f"input {shown(name)}: 'data' is ragged; give a flat list or nested lists "
                      "of equal length")


def array_from_json(name: str, datatype: Datatype, data: Any, count: int,
                    trusted: bool, nulls: bool = False) -> np.ndarray:
    """The flat array of JSON `data`; `trusted`: NumPy may infer its type (whatever it infers
    is checked below), else the elements' types are checked first. `nulls`: a float tensor's
    `null` is NaN (a capture record writes NaN and infinity so; a request may not)."""
    if not isinstance(data, list):
        data = [data]
    if datatype.is_bytes or not trusted:
        types = _leaf_types(name, data)
        allowed = _LEAF_TYPES.get(datatype.name) or (
            _INT_TYPES if datatype.dtype.kind in _INT_KINDS else
            _NULLABLE_TYPES if nulls else _NUMBER_TYPES)
        if not types <= allowed:
            raise _wrong_kind(name, datatype)
    try:
        # BYTES as objects: a str array would be count x the longest string wide.
        array = np.array(data, dtype=object if datatype.is_bytes else None)
    except (ValueError, TypeError, RecursionError):
        raise _ragged(name) from None
    if array.size != count or (datatype.is_bytes and array.dtype != object):
        raise BadRequest(f"input {shown(name)}: 'data' has {array.size} elements but the shape "
                         f"needs {count}")
    array = array.reshape(-1)
    if datatype.is_bytes:
        if not all(isinstance(item, str) for item in array):  # a list nested among strings
            raise _ragged(name)
        return array
    kind = array.dtype.kind
    if count == 0:
        return np.empty(0, dtype=datatype.dtype)
    if datatype.name == "BOOL":
        if kind != "b":
            raise _wrong_kind(name, datatype)
    elif datatype.dtype.kind in _INT_KINDS:
        if kind in "fO":  # a float among ints, or ints past int64 that NumPy widened
            return _wide_integers(name, datatype, np.array(data, dtype=object).reshape(-1))
        if kind not in "biu":
            raise _wrong_kind(name, datatype)
        info = np.iinfo(datatype.dtype)
        if array.min() < info.min or array.max() > info.max:
            raise BadRequest(f"input {shown(name)}: a value is outside the {datatype.name} "
                             f"range [{info.min}, {info.max}]")
    elif kind not in "biuf":  # None, an object, a list among numbers
        if nulls and kind == "O":
            return _with_nulls(name, datatype, array)
        raise _wrong_kind(name, datatype)
    elif datatype.dtype.itemsize < array.dtype.itemsize or kind in _INT_KINDS:
        # JSON numbers arrive as float64 or int64: a value past FP16's or FP32's range would
        # silently become infinity.
        limit = _ROUNDS_TO_INFINITY[datatype.name]
        if array.size and (array.max() >= limit or array.min() <= -limit):
            raise _outside_floats(name, datatype)
    return array.astype(datatype.dtype, copy=False)


def _float_limits() -> dict[str, float]:
    """Per float datatype, the magnitude from which a float64 rounds to infinity: the largest
    finite value plus half its spacing. Not the largest value itself: its shortest text (FP32's
    "3.4028235e38", which answers and capture records write) reads back as a float64 a little
    above it, and rounds to it."""
    limits = {}
    for datatype_name in ("FP16", "FP32", "FP64"):
        dtype = np.dtype(DATATYPES[datatype_name].dtype)
        largest = np.finfo(dtype).max
        below = np.nextafter(largest, dtype.type(0))
        limits[datatype_name] = float(largest) + (float(largest) - float(below)) / 2
    return limits


_ROUNDS_TO_INFINITY = _float_limits()


def _outside_floats(name: str, datatype: Datatype) -> BadRequest:
    largest = float(np.finfo(datatype.dtype).max)
    return BadRequest(f"input {shown(name)}: a value is outside the {datatype.name} range "
                      f"(largest magnitude {largest:.6g})")


def _with_nulls(name: str, datatype: Datatype, array: np.ndarray) -> np.ndarray:
    """The rare slow path of a float tensor read with `nulls`: NaN for each `null`, every
    other element a number within the datatype's range."""
    if not all(type(value) in _NULLABLE_TYPES for value in array):
        raise _wrong_kind(name, datatype)
    values = array.astype(np.float64)
    limit = _ROUNDS_TO_INFINITY[datatype.name]
    if np.any(np.abs(values[~np.isnan(values)]) >= limit):
        raise _outside_floats(name, datatype)
    return values.astype(datatype.dtype, copy=False)


def _wrong_kind(name: str, datatype: Datatype) -> BadRequest:
    wanted = {"BOOL": "true or false", "BYTES": "strings"}.get(
        datatype.name, "integers" if datatype.dtype.kind in _INT_KINDS else "numbers")
    return BadRequest(f"input {shown(name)}: {datatype.name} data must be {wanted}")


def _wide_integers(name: str, datatype: Datatype, array: np.ndarray) -> np.ndarray:
    """The rare slow path: a value past int64 (UINT64's upper half, or out of every range),
    or not an integer at all."""
    if not all(type(value) is int or type(value) is bool for value in array):
        raise _wrong_kind(name, datatype)
    try:
        return np.array(array.tolist(), dtype=datatype.dtype)
    except OverflowError:
        info = np.iinfo(datatype.dtype)
        raise BadRequest(f"input {shown(name)}: a value is outside the {datatype.name} range "
                         f"[{info.min}, {info.max}]") from None


def json_data(array: np.ndarray) -> Any:
    """A tensor's V2 JSON `data`, flat: a numeric array as is (orjson writes native-order
    arrays itself; `reshape` copies only what is not contiguous), BYTES as text (bytes that are
    not UTF-8 replaced, as Triton's JSON answers do)."""
    dtype = array.dtype
    if dtype.kind in "OUS":
        return [item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
                for item in array.reshape(-1)]
    if not dtype.isnative:
        array = array.astype(dtype.newbyteorder("="))
    return array.reshape(-1)
