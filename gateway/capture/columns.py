"""Many alike answered requests written at once, column by column: byte for byte the lines
`records.infer_line` writes one by one, for about half the work.

Why: at full load the writer thread encodes thousands of records a second, and every microsecond
it spends is taken from the event loop by the GIL; most of a record's cost was building its
dictionaries and calling orjson three times, not writing its numbers. Requests alike (same
version and route, same input and output names, datatypes and shapes but the first dimension,
no text, nothing redacted, nothing asked but everything) have their tensors concatenated, each
column written by one orjson call and cut back into rows (`json_row_texts`, the JSON tensor
codec's row form); a line is then its few varying parts (time, ids, row count, rows) joined to
text made once per group.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from gateway.capture.records import utc_bytes
from gateway.protocol.json_tensor import datatype_name, json_row_texts, json_tensor_parts

Alike = tuple[float, str | None, str | None, Mapping[str, np.ndarray], Mapping[str, np.ndarray]]
"""One request of a group: time, request id, trace id, inputs, results."""


def alike_lines(model: str, version: int, route: str, datatypes: Mapping[str, str],
                group: Sequence[Alike]) -> list[bytes] | None:
    """The lines of `group` (requests of one version and route whose inputs have `datatypes`),
    or None when they are not alike enough to be written together."""
    rows = _rows(group)
    if rows is None:
        return None
    inputs = _columns([item[3] for item in group], rows, datatypes)
    outputs = _columns([item[4] for item in group], rows, None)
    if inputs is None or outputs is None:
        return None
    head = (b',"model":' + orjson.dumps(model) + b',"version":' + str(version).encode()
            + b',"route":' + orjson.dumps(route) + b',"inputs":[')
    # Between one tensor's values and the next's, for a one-row request: all constant.
    tensors = [*inputs, *outputs]
    joins = []
    for index, (prefix, tail, _) in enumerate(tensors):
        before = head if index == 0 else b"]}," if index != len(inputs) else b']}],"outputs":['
        joins.append(before + prefix + b"1" + tail)
    texts = [column[2] for column in tensors]
    lines = []
    at = 0
    for (t, request_id, trace_id, _, _), n in zip(group, rows, strict=True):
        parts = [b'{"kind":"infer","time":"', utc_bytes(t), b'","request_id":',
                 orjson.dumps(request_id), b',"trace_id":', orjson.dumps(trace_id)]
        if n == 1:
            for join, column in zip(joins, texts, strict=True):
                parts += (join, column[at])
        else:
            for index, (prefix, tail, column) in enumerate(tensors):
                parts += (b"]}," if index and index != len(inputs) else
                          b']}],"outputs":[' if index else head,
                          prefix, b"%d" % n, tail, b",".join(column[at:at + n]))
        parts.append(b"]}]}\n")
        lines.append(b"".join(parts))
        at += n
    return lines


def _rows(group: Sequence[Alike]) -> list[int] | None:
    """Each request's rows (its first input's first dimension), if every request has some."""
    try:
        rows = [next(iter(item[3].values())).shape[0] for item in group]
    except (StopIteration, IndexError):
        return None
    return rows if min(rows) > 0 else None


def _columns(tensors: list[Mapping[str, np.ndarray]], rows: list[int],
             datatypes: Mapping[str, str] | None) -> list[tuple[bytes, bytes, list[bytes]]] | None:
    """Per tensor name: the text before the row count, the text from the shape's tail to the
    data, and each row's values as text; None when the requests are not alike."""
    first = tensors[0]
    names = tuple(first)
    n = len(tensors)
    if [tuple(t) for t in tensors].count(names) != n:
        return None
    columns = []
    for name in names:
        arrays = [t[name] for t in tensors]
        dtype, tail = arrays[0].dtype, arrays[0].shape[1:]
        if (dtype.kind in "OUSV" or [a.dtype for a in arrays].count(dtype) != n
                or [a.shape[1:] for a in arrays].count(tail) != n
                or [a.shape[0] for a in arrays] != rows):
            return None
        texts = json_row_texts(np.concatenate(arrays))
        if texts is None:
            return None
        datatype = datatypes[name] if datatypes is not None else datatype_name(arrays[0])
        columns.append((*json_tensor_parts(name, datatype, tail), texts))
    return columns


def runs(records: list[tuple[Any, ...]],
         redacted: Collection[str]) -> Iterator[tuple[bool, list[tuple[Any, ...]]]]:
    """The queue's records (`service.CaptureService`) in order, in runs of consecutive ones
    that may be written together (same model, version, route and input datatypes, all outputs
    answered, nothing redacted): (True, run), or (False, [record]) for any other."""
    run: list[tuple[Any, ...]] = []
    key: tuple[Any, ...] | None = None
    for record in records:
        if len(record) != 9 or record[1] in redacted or record[7].outputs is not None:
            if run:
                yield True, run
                run, key = [], None
            yield False, [record]
            continue
        _, model, _, _, _, version, route, request, _ = record
        this = (model, version, route, request.datatypes)
        if this != key and run:
            yield True, run
            run = []
        key = this
        run.append(record)
    if run:
        yield True, run
