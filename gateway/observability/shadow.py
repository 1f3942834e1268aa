"""Shadow mode's runner: mirror answered requests to another version, compare, count; never block.

The request path only calls `mirror`, which appends to a bounded deque and never waits: past
`max_queue` mirrors or `max_queue_bytes` of tensors held, a mirror is dropped and counted. The
shadow's own thread wakes every `TICK_S`, takes everything that waited, merges the mirrors of each
shadow version along the batch dimension into one onnxruntime call per `max_batch_rows` (as the
batcher merges requests), compares them row by row with their primary's answers in a few array
operations (gateway.protocol.agreement), and counts the results: each row as agree, disagree or
error (the rows of a mirror the shadow failed on), and each mirror by its rows (agree when all
of them agree); while a tick runs, the next one's mirrors gather.

Why a thread that polls, and not one hand-off per mirror: a thread that gives up the GIL (as
onnxruntime does) must win it back from a busy event loop, which lets go only every switch
interval (5 ms); one mirror per hand-off capped the shadow at some 130 mirrors a second, a
quarter of what a 10% shadow is sent at full load, and every hand-off cost the event loop a
wake-up and a future. Now the event loop's whole share is `mirror`: the thread reads the registry
(a copy-on-write snapshot), counts and traces by itself, and pays the GIL's wait once a tick.

The counts of held mirrors are split by writer (the event loop adds, the thread subtracts), so
neither thread loses the other's update without a lock. The shadow's inference never runs on the
event loop nor in the primary's batch queue, so a slow or failing shadow cannot delay or change
an answer. What to mirror and how to compare are gateway.routing.shadow's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.context import Context

from gateway.batching.merge import MergeKey, concatenate, merge_key, run_concatenated
from gateway.routing.shadow import (
    DROPPED,
    ERROR,
    compare_mirrors,
    request_results,
    row_results,
)
from gateway.tensors import Tensors

logger = logging.getLogger("gateway.shadow")

TICK_S = 0.01
"""How often the shadow thread takes what waited: at most 100 GIL waits a second, whatever the
traffic; the results are nobody's answer, so 10 ms later costs nothing."""


@dataclass(frozen=True)
class Mirror:
    model: str
    version: int
    inputs: Tensors
    primary: Tensors
    rows: int
    size: int
    """Bytes of its inputs and primary outputs, held while it waits."""
    link: trace.SpanContext | None = None
    """The request span this mirror came from (tracing on)."""


@dataclass(frozen=True)
class ShadowVersion:
    """What the runner needs of a shadow version."""

    run: Callable[[Tensors], Tensors]
    label: str | None
    """The output holding the predicted label (classifiers). Not what agreement is judged on
    (every output both versions have is, docs/routing.md); kept for the callers that name it."""
    batchable: bool
    """Every input and output has a dynamic first dimension: mirrors may merge."""


ShadowCount = Callable[[str, int, str, int], None]
"""(model, version, result, n): count n mirrors, or n rows, under a result."""

ShadowTarget = Callable[[str, int], "ShadowVersion | None"]
"""(model, version) -> the shadow version, or None when it is not loaded any more."""

ShadowObserver = Callable[[str, int, Tensors, Tensors], None]
"""(model, version, inputs, the shadow's outputs): called on the event loop, once per merged
call, so the drift monitor watches the shadow's own outputs while it is being evaluated."""


@dataclass
class _Job:
    """The mirrors of one shadow version in one tick, and what became of them."""

    version: ShadowVersion
    mirrors: list[Mirror]
    results: list[str] | None = None
    """Each mirror's result, in order."""
    rows: Counter[str] = field(default_factory=Counter)
    """The mirrors' rows by result."""
    start_ns: int = 0
    end_ns: int = 0


class ShadowRunner:
    def __init__(self, target: ShadowTarget, count: ShadowCount,
                 max_queue: int = 4096, max_queue_bytes: int = 64 * 2**20,
                 max_batch_rows: int = 256, tracer: trace.Tracer | None = None,
                 observe: ShadowObserver | None = None,
                 count_rows: ShadowCount | None = None) -> None:
        """`count(model, version, result, n)` counts n mirrors under a result (from either
        thread: Prometheus' counters take their own lock), `count_rows` their rows compared
        (agree, disagree, error); `observe`, when given, sees each answered call's inputs and
        outputs on the event loop."""
        self._observe = observe
        self._count_rows = count_rows
        self._loop: asyncio.AbstractEventLoop | None = None
        self._target = target
        self._tracer = tracer
        self._count = count
        self._max_queue = max_queue
        self._max_queue_bytes = max_queue_bytes
        self._max_batch_rows = max_batch_rows
        self._waiting: deque[Mirror] = deque()
        self._offered = [0, 0]
        """Mirrors and bytes ever queued: written by the event loop only."""
        self._finished = [0, 0]
        """Mirrors and bytes ever taken and done with: written by the shadow thread only."""
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Called on the event loop (observations are handed back to it)."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._work, name="gateway-shadow", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """The thread leaves at its next tick or chunk; what still waits is not run (the
        process may be exiting, and a shadow's results are nobody's answer)."""
        self._stopping.set()

    def mirror(self, model: str, versions: list[int], inputs: Tensors, primary: Tensors,
               rows: int, link: trace.SpanContext | None = None) -> None:
        """Queue a mirror per shadow version; never waits (full queue: dropped and counted)."""
        size = (sum(a.nbytes for a in inputs.values())
                + sum(a.nbytes for a in primary.values()))
        offered, finished = self._offered, self._finished
        for version in versions:
            if (offered[0] - finished[0] >= self._max_queue
                    or offered[1] - finished[1] + size > self._max_queue_bytes):
                self._count(model, version, DROPPED, 1)
                continue
            self._waiting.append(Mirror(model, version, inputs, primary, rows, size, link))
            offered[0] += 1
            offered[1] += size

    def _work(self) -> None:
        while not self._stopping.wait(TICK_S):
            taken = []
            while self._waiting:
                taken.append(self._waiting.popleft())
            if not taken:
                continue
            try:
                jobs = self._jobs(taken)
                _run_jobs(jobs, self._max_batch_rows, self._stopping, self._observed)
                for job in jobs:
                    self._report(job)
            except Exception:  # a fault here must never end the shadow or reach a request
                logger.exception("shadow runner failed on %d mirrors; they are skipped",
                                 len(taken))
            finally:
                self._finished[1] += sum(m.size for m in taken)
                self._finished[0] += len(taken)

    def _observed(self, model: str, version: int, inputs: Tensors, outputs: Tensors) -> None:
        """From the shadow thread: hand an answered call to `observe` on the event loop."""
        if self._observe is not None and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed at shutdown
                self._loop.call_soon_threadsafe(self._observe, model, version, inputs, outputs)

    def _jobs(self, taken: list[Mirror]) -> list[_Job]:
        """The mirrors by shadow version; those of a version no longer loaded are dropped (not
        the shadow's error: SREs watch `error` during a rollout)."""
        by_version: dict[tuple[str, int], list[Mirror]] = {}
        for item in taken:
            by_version.setdefault((item.model, item.version), []).append(item)
        jobs = []
        for (model, version), mirrors in by_version.items():
            target = self._target(model, version)
            if target is None:
                self._count(model, version, DROPPED, len(mirrors))
            else:
                jobs.append(_Job(target, mirrors))
        return jobs

    def _report(self, job: _Job) -> None:
        if job.results is None or len(job.results) < len(job.mirrors):
            return  # left at stop
        first = job.mirrors[0]
        counts = Counter(job.results)
        for result, n in counts.items():
            self._count(first.model, first.version, result, n)
        if self._count_rows is not None:
            for result, n in job.rows.items():
                if n:
                    self._count_rows(first.model, first.version, result, n)
        if self._tracer is None:
            return
        # Its own trace (the callers' answers did not wait for it), linked to each request.
        links = [trace.Link(m.link) for m in job.mirrors if m.link is not None]
        span = self._tracer.start_span(
            "shadow", context=Context(), links=links or None, start_time=job.start_ns,
            attributes={"model": first.model, "version": first.version,
                        "requests": len(job.mirrors), "rows": sum(m.rows for m in job.mirrors),
                        **({"result": job.results[0]} if len(counts) == 1 else {}),
                        **{f"result.{r}": n for r, n in counts.items()},
                        **{f"rows.{r}": n for r, n in job.rows.items()}})
        if ERROR in counts:
            span.set_status(trace.StatusCode.ERROR)
        span.end(end_time=job.end_ns)


def _run_jobs(jobs: list[_Job], max_batch_rows: int, stopping: threading.Event,
              observed: ShadowObserver) -> None:
    """On the shadow thread: every job's mirrors run and compared, results set on the job."""
    for job in jobs:
        job.start_ns = time.time_ns()
        job.results = []
        for chunk in _chunks(job, max_batch_rows):
            if stopping.is_set():
                return
            results, rows = _run_chunk(job.version, chunk, observed)
            job.results += results
            job.rows.update(rows)
        job.end_ns = time.time_ns()


def _chunks(job: _Job, max_batch_rows: int) -> list[list[Mirror]]:
    """Consecutive mirrors that merge (same inputs past the first dimension, at least one row,
    rows within `max_batch_rows`), in order; a mirror that cannot merge is a chunk alone."""
    chunks: list[list[Mirror]] = []
    key: MergeKey | None = None
    rows = 0
    for item in job.mirrors:
        item_key = (merge_key(item.inputs, item.rows)
                    if job.version.batchable and item.rows > 0 else None)
        if (item_key is not None and chunks and item_key == key
                and rows + item.rows <= max_batch_rows):
            chunks[-1].append(item)
            rows += item.rows
        else:
            chunks.append([item])
            key, rows = item_key, item.rows
    return chunks


def _run_chunk(version: ShadowVersion, chunk: list[Mirror],
               observed: ShadowObserver) -> tuple[list[str], dict[str, int]]:
    """One call for the chunk, compared row by row: each mirror's result and the rows by
    result. After a failed merged call, one call per mirror, so that only the mirror the shadow
    fails on counts as its error (its rows too). What the shadow answered goes to `observed`
    (its drift window)."""
    first = chunk[0]
    inputs = first.inputs
    try:
        if len(chunk) > 1:
            inputs = concatenate([m.inputs for m in chunk])
            output = run_concatenated(version.run, inputs, sum(m.rows for m in chunk))
        else:
            output = version.run(inputs)
    except Exception as exc:
        if len(chunk) > 1:
            results: list[str] = []
            rows: Counter[str] = Counter()
            for item in chunk:
                one, counted = _run_chunk(version, [item], observed)
                results += one
                rows.update(counted)
            return results, rows
        logger.warning("shadow model '%s' version %d failed: %s", first.model, first.version,
                       exc)
        return [ERROR], {ERROR: first.rows}
    observed(first.model, first.version, inputs, output)
    sizes = [m.rows for m in chunk]
    try:
        agree = compare_mirrors([m.primary for m in chunk], output, sizes)
    except Exception as exc:  # outputs no array operation can compare
        _log_uncomparable(first, exc)
        return [ERROR] * len(chunk), {ERROR: sum(sizes)}
    return request_results(agree, sizes), row_results(agree)


def _log_uncomparable(item: Mirror, exc: Exception) -> None:
    logger.warning("shadow model '%s' version %d: cannot compare outputs: %s", item.model,
                   item.version, exc)
