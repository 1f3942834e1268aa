"""Read a capture folder (README "Prediction capture and replay") for replay: one model's answered
requests, in capture order,
and the labels its feedback lines give them.

Files are read in name order (`capture-<model>-<UTC time>.jsonl[.gz]`, so by time within a
model); a folder gathered from several replicas reads as one. What is read is the capture as it
stood when replay started (README "Prediction capture and replay"): the files there then, and a
file still being written only
up to the size it had then (a line the writer was in the middle of is not in it). Otherwise a
replay `--against` a gateway that captures into the same folder reads its own requests back as
they are captured, and never ends. A file the capture closed meanwhile is read from its gzip,
to the same size; one deleted meanwhile (retention) is counted as missing.

A line that is not a whole JSON object of the capture's shape (a file cut short, a byte
flipped) is skipped and counted, as is a gzip stream that breaks off: the rest of the capture
still replays.

Labels join requests by `id`: the feedback items sharing an `id` label that request's rows in
order (README "Prediction capture and replay"), wherever in the folder they were written.
"""

from __future__ import annotations

import gzip
import math
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import IO, Any, Protocol

import orjson

from gateway.capture.records import FEEDBACK, GZIP_SUFFIX, INFER, PREFIX, SUFFIX
from gateway.protocol.json_tensor import rows_from_json, tensor_from_json
from gateway.tensors import DATATYPES, Tensors

CHUNK_LINES = 1024
"""Lines read (and requests decoded and compared) at a time."""


class CaptureError(Exception):
    """The capture cannot be replayed as asked; the message says why."""


class Redacted(Exception):
    """A request whose inputs were redacted: it cannot be sent again."""


@dataclass
class CaptureStats:
    files: int = 0
    missing_files: int = 0
    """Files there at the start that were deleted before they were read (retention)."""
    lines: int = 0
    corrupt_lines: int = 0
    other_models: Counter[str] = field(default_factory=Counter)
    labels: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    """Request id -> the labels its feedback items gave, in order."""
    feedback_rows: int = 0


Captured = dict[str, Any]
"""An answered request's record as read (gateway.capture.records): its `request_id`, the
`version` that served it, `inputs` and `outputs` as V2 JSON tensors."""


class _Lines(Protocol):
    """A file's lines, plain or gzipped."""

    def __iter__(self) -> Iterator[bytes]: ...
    def readline(self, size: int = -1, /) -> bytes: ...
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class CaptureFile:
    """A capture file as it stood when replay started."""

    path: Path
    size: int
    """Its bytes then; a plain file (maybe still being written) is read no further."""

    @property
    def name(self) -> str:
        return self.path.name


def capture_files(folder: Path) -> list[CaptureFile]:
    """The capture files of `folder` as they stand now, in name order: the snapshot replay
    reads. CaptureError when there are none."""
    if not folder.is_dir():
        raise CaptureError(f"{folder} is not a folder; give the capture folder (capture.path "
                           "in gateway.yaml)")
    names = {p.name for p in folder.iterdir()
             if p.name.startswith(PREFIX) and p.name.endswith((SUFFIX, GZIP_SUFFIX))}
    files = []
    for name in sorted(names):
        if name.endswith(SUFFIX) and f"{name}.gz" in names:
            continue  # gzipped a moment ago, the plain file not yet deleted: the same lines
        try:
            files.append(CaptureFile(folder / name, (folder / name).stat().st_size))
        except FileNotFoundError:  # gzipped or deleted since the listing
            continue
    if not files:
        raise CaptureError(f"{folder} holds no capture files (capture-*.jsonl or "
                           "capture-*.jsonl.gz); is capture.enabled true?")
    return files


def read_capture(files: list[CaptureFile], model: str, stats: CaptureStats,
                 progress: Callable[[int], None]) -> Iterator[list[Captured]]:
    """Every answered request of `model`, in order, `CHUNK_LINES` lines' worth at a time;
    feedback and skipped lines go to `stats`. `progress` is told how many bytes were read."""
    for file in files:
        opened = _open(file)
        if opened is None:
            stats.missing_files += 1
            continue
        raw, lines, limit = opened
        stats.files += 1
        with raw:
            done = 0
            batch: list[bytes] = []
            try:
                for line in _snapshot_lines(lines, limit):
                    batch.append(line)
                    if len(batch) == CHUNK_LINES:
                        yield _requests(batch, model, stats)
                        batch = []
                        progress(raw.tell() - done)
                        done = raw.tell()
            except (OSError, EOFError, zlib.error):  # a gzip stream broken off or garbled
                stats.corrupt_lines += 1
            if batch:
                yield _requests(batch, model, stats)
            progress(raw.tell() - done)


def _open(file: CaptureFile) -> tuple[IO[bytes], _Lines, int | None] | None:
    """The raw file, its lines' stream and how many bytes of them to read (None: all); None
    when the file is gone."""
    path, limit = file.path, None
    if path.name.endswith(SUFFIX):
        limit = file.size
        try:
            raw = open(path, "rb")  # noqa: SIM115 - closed by read_capture
            return raw, raw, limit
        except FileNotFoundError:  # closed and gzipped since the start: the same bytes, first
            path = path.with_name(f"{path.name}.gz")
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by read_capture
    except FileNotFoundError:
        return None
    return raw, gzip.GzipFile(fileobj=raw), limit


def _snapshot_lines(stream: _Lines, limit: int | None) -> Iterator[bytes]:
    """The lines of `stream` within its first `limit` bytes (all of them when None). A last
    line cut by the limit was being written at the start: left out when the stream goes on
    past it, kept (a file cut short, counted as unreadable) when it does not."""
    if limit is None:
        yield from stream
        return
    left = limit
    while left > 0:
        line = stream.readline(left)
        if not line:
            return
        left -= len(line)
        if not left and not line.endswith(b"\n") and stream.read(1):
            return
        yield line


def _requests(lines: list[bytes], model: str, stats: CaptureStats) -> list[Captured]:
    """The requests of `model` among `lines`, parsed in one go (one by one when one of them is
    not JSON, to skip just that one)."""
    stats.lines += len(lines)
    try:
        docs = orjson.loads(b"[" + b",".join(lines) + b"]")
    except orjson.JSONDecodeError:
        docs = [_parsed(line) for line in lines]
    try:  # the usual chunk: only this model's requests
        if ([d["kind"] for d in docs].count(INFER) == len(docs)
                and [d["model"] for d in docs].count(model) == len(docs)
                and {type(d["version"]) for d in docs} == {int}):
            return list(docs)
    except (KeyError, TypeError):
        pass
    found = []
    for doc in docs:
        try:
            kind = doc["kind"]
            if kind == INFER:
                if doc["model"] == model and type(doc["version"]) is int:
                    found.append(doc)
                    continue
                if doc["model"] != model and isinstance(doc["model"], str):
                    stats.other_models[doc["model"]] += 1
                    continue
            elif kind == FEEDBACK:
                if doc["model"] == model:
                    _labels(doc["feedback"], stats)
                continue
        except (KeyError, TypeError):
            pass
        stats.corrupt_lines += 1
    return found


def _parsed(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return None


def _labels(items: list[Any], stats: CaptureStats) -> None:
    for item in items:
        if isinstance(item, dict) and "label" in item:
            stats.feedback_rows += 1
            if isinstance(item.get("id"), str):
                stats.labels[item["id"]].append(item["label"])


def decode_tensors(entries: list[dict[str, Any]]) -> tuple[Tensors, dict[str, str]]:
    """V2 JSON tensors back to arrays by the JSON tensor codec (`tensor_from_json`: as a
    request's are decoded, BYTES as str objects, `null` as NaN); Redacted for a tensor without
    its data, ValueError for one that does not fit."""
    arrays: Tensors = {}
    datatypes: dict[str, str] = {}
    try:
        for entry in entries:
            if entry["data"] is None:
                raise Redacted(entry["name"])
            name, datatype, array = tensor_from_json(entry)
            arrays[name] = array
            datatypes[name] = datatype
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a V2 tensor: {exc}") from None
    return arrays, datatypes


def decode_batch(docs: list[dict[str, Any]], field: str) -> tuple[Tensors, list[int]] | None:
    """The `field` tensors ("inputs" or "outputs") of all `docs` concatenated along the first
    dimension, decoded by the JSON tensor codec in one call per tensor name (`rows_from_json`),
    and each document's first dimension: when every document has the same names, datatypes and
    shapes but the first dimension, the same first dimension in each of its tensors, and flat
    data. None otherwise (decode one by one)."""
    batch: Tensors = {}
    rows: list[int] = []
    try:
        count = len(docs[0][field])
        if not count or any(len(doc[field]) != count for doc in docs):
            return None
        for j, entry in enumerate(docs[0][field]):
            name, datatype = entry["name"], entry["datatype"]
            column = [doc[field][j] for doc in docs]
            shapes = [c["shape"] for c in column]
            tail = shapes[0][1:]
            n = len(column)
            if (DATATYPES[datatype].is_bytes or not shapes[0]
                    or [c["name"] for c in column].count(name) != n
                    or [c["datatype"] for c in column].count(datatype) != n
                    or [shape[1:] for shape in shapes].count(tail) != n):
                return None
            firsts = [shape[0] for shape in shapes]
            if j == 0:
                rows = firsts
            elif firsts != rows:
                return None
            width = math.prod(tail)
            data = [c["data"] for c in column]
            if list(map(len, data)) != [n * width for n in rows]:
                return None
            if rows.count(rows[0]) != n:  # lists of one length are decoded as they are
                data = list(chain.from_iterable(data))
            batch[name] = rows_from_json(name, datatype, data, sum(rows), tuple(tail))
    except (IndexError, KeyError, TypeError, ValueError, OverflowError):
        return None
    return batch, rows
