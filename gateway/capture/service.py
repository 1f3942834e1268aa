"""Prediction capture (README "Prediction capture and replay"): keep what was answered, off the
request path.

The request path calls `infer` or `feedback`, which sample, check the bound and append what the
request already holds (its decoded arrays, the results, the ids) to a deque: no encoding, no
I/O, no lock. Past `MAX_RECORDS` records or `MAX_HELD_BYTES` of bodies and results waiting, a
record is dropped and counted. The writer thread wakes every `TICK_S`, encodes everything that
waited (orjson, gateway.capture.records) and appends it to each model's file
(gateway.capture.files, whose own thread gzips closed files); what could not be written is
counted `dropped`, what was flushed `written` (`gateway_capture_records_total{model, result}`).
Nothing the folder does can fail a request: the worst is records dropped and counted.

Small records are encoded in this process on purpose: a writer process was tried for them
(frames of raw arrays on a pipe, JSON made on the other core), and making a frame cost the GIL as
much as making the line (both are a few microseconds of Python per record). A big record's line
costs eight times its frame, so runs of big records go to a child process
(gateway.capture.encoder) and only their lines come back.

As in the shadow runner, the held bytes are split by writer (the event loop adds, the thread
subtracts), so neither loses the other's update without a lock. Records the writer is done with
go back to the event loop, which drops one tick's list at its next request: freeing the
requests' arrays in the thread that made them let the allocator reuse that memory at once
(freed in the writer thread, they cost the event loop about 4% of its req/s at full load; the
lists waiting hold about a tick's records: each list has a record, each record came with a call
that drops one). With capture off, the gateway holds `NoCapture`, whose calls do nothing.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client import Counter as Metric

from gateway.capture.columns import alike_lines, runs
from gateway.capture.encoder import ChildEncoder
from gateway.capture.files import CaptureFolder
from gateway.capture.records import feedback_line, infer_line
from gateway.protocol.request import InferRequest
from gateway.settings import CaptureSettings
from gateway.tensors import Tensors

logger = logging.getLogger("gateway.capture")

TICK_S = 0.05
"""How often the thread takes what waited: at most 20 GIL waits a second, whatever the load."""
MAX_RECORDS = 20_000
"""Records waiting at most (a second or more of full load at every tick's pace)."""
MAX_HELD_BYTES = 64 << 20
"""Request bodies and results waiting at most, in bytes."""
WRITTEN, DROPPED = "written", "dropped"
_NOTHING: frozenset[str] = frozenset()


class Capture(Protocol):
    def infer(self, model: str, version: int, route: str, request: InferRequest,
              results: Tensors, header_id: str | None, trace_id: str | None,
              body_bytes: int) -> None: ...

    def feedback(self, model: str, body: bytes, header_id: str | None,
                 trace_id: str | None) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class NoCapture:
    """Capture off: nothing is kept, nothing is counted."""

    def infer(self, model: str, version: int, route: str, request: InferRequest,
              results: Tensors, header_id: str | None, trace_id: str | None,
              body_bytes: int) -> None:
        pass

    def feedback(self, model: str, body: bytes, header_id: str | None,
                 trace_id: str | None) -> None:
        pass

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class CaptureService:
    def __init__(self, settings: CaptureSettings, registry: CollectorRegistry) -> None:
        self.folder = CaptureFolder(settings.path, int(settings.max_file_mb * (1 << 20)),
                                    int(settings.max_total_mb * (1 << 20)))
        self._sample = settings.sample_percent / 100
        self._redact = {model: frozenset(names) for model, names in settings.redact.items()}
        self._records = Metric("gateway_capture_records_total",
                               "Captured records by outcome: written to the capture folder, "
                               "or dropped (queue full, folder not writable).",
                               ["model", "result"], registry=registry)
        self._children: dict[tuple[str, str], Metric] = {}
        self._queue: deque[tuple[Any, ...]] = deque()
        self._added_bytes = 0    # written by the event loop only
        self._removed_bytes = 0  # written by the writer thread only
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="capture")
        self._written: deque[list[tuple[Any, ...]]] = deque()
        self._encoder = ChildEncoder()

    def infer(self, model: str, version: int, route: str, request: InferRequest,
              results: Tensors, header_id: str | None, trace_id: str | None,
              body_bytes: int) -> None:
        """Keep one answered request (called after the answer is made; never raises)."""
        if self._written:
            self._written.popleft()  # what the writer is done with is freed here, see above
        if self._sample < 1 and random.random() >= self._sample:
            return
        size = body_bytes + sum(array.nbytes for array in results.values())
        if self._full(size):
            self.count(model, DROPPED)
            return
        self._added_bytes += size
        self._queue.append((time.time(), model, size, request.id or header_id, trace_id,
                            version, route, request, results))

    def feedback(self, model: str, body: bytes, header_id: str | None,
                 trace_id: str | None) -> None:
        """Keep one accepted feedback batch, whole (labels are never sampled out)."""
        if self._written:
            self._written.popleft()
        if self._full(len(body)):
            self.count(model, DROPPED)
            return
        self._added_bytes += len(body)
        self._queue.append((time.time(), model, len(body), header_id, trace_id, body))

    def _full(self, size: int) -> bool:
        held = self._added_bytes - self._removed_bytes
        return len(self._queue) >= MAX_RECORDS or held + size > MAX_HELD_BYTES

    def count(self, model: str, result: str, n: int = 1) -> None:
        child = self._children.get((model, result))
        if child is None:
            child = self._children[(model, result)] = self._records.labels(model, result)
        child.inc(n)

    def start(self) -> None:
        self.folder.start()
        self._thread.start()

    def stop(self) -> None:
        """Write what waits, close and gzip every file (blocking: call off the event loop)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
            self.folder.stop()
        self._encoder.stop()

    def _run(self) -> None:
        while not self._stopping.wait(TICK_S):
            self._write_waiting()
        self._write_waiting()

    def _write_waiting(self) -> None:
        queue = self._queue
        records = []
        while queue:
            records.append(queue.popleft())
        self._removed_bytes += sum(record[2] for record in records)
        lines: dict[str, list[bytes]] = {}
        for alike, run in runs(records, self._redact):
            model = run[0][1]
            encoded = None
            if alike and len(run) > 1:
                _, _, _, _, _, version, route, request, _ = run[0]
                group = [(r[0], r[3], r[4], r[7].inputs, r[8]) for r in run]
                encoded = self._encoder.lines(model, version, route, request.datatypes, group)
                try:
                    if encoded is None:
                        encoded = alike_lines(model, version, route, request.datatypes, group)
                except Exception:  # one by one, as a last resort, rather than lose them
                    logger.exception("capture: cannot write %d records of %r together",
                                     len(run), model)
            if encoded is None:
                encoded = [line for line in map(self._encode_one, run) if line is not None]
            lines.setdefault(model, []).extend(encoded)
        now = time.time()
        for model, model_lines in lines.items():
            written = self.folder.write(model, model_lines, now)
            self.count(model, WRITTEN if written else DROPPED, len(model_lines))
        self.folder.tick()
        if records:
            self._written.append(records)

    def _encode_one(self, record: tuple[Any, ...]) -> bytes | None:
        try:
            return self._encode(record)
        except Exception:  # never lose the thread to one odd record
            logger.exception("capture: cannot encode a record of model %r", record[1])
            self.count(record[1], DROPPED)
            return None

    def _encode(self, record: tuple[Any, ...]) -> bytes:
        t, model, _, request_id, trace_id, *rest = record
        if len(rest) == 1:
            return feedback_line(t, request_id, trace_id, model, rest[0])
        version, route, request, results = rest
        return infer_line(t, request_id, trace_id, model, version, route, request.inputs,
                          request.datatypes, results, request.outputs,
                          self._redact.get(model, _NOTHING))


def make_capture(settings: CaptureSettings, registry: CollectorRegistry) -> Capture:
    return CaptureService(settings, registry) if settings.enabled else NoCapture()
