"""A dynamic batcher per loaded model version.

Requests wait in a bounded queue. One worker per version takes the first request, waits up to
`max_queue_delay_us` for company (never when the queue already holds a full batch, and only while
requests arrive faster than that delay: see `_worth_waiting`), merges the
waiting requests along the first dimension into one onnxruntime call, and splits the outputs back.
A full queue refuses at once (503); a request whose deadline passes while queued gets 504; a request
larger than `max_batch_size` runs alone; if a merged call fails, its requests are retried one by
one so that only the faulty one fails. One batch per version runs at a time; while it runs on the
version's thread the event loop keeps serving, and arrivals gather into the next batch.

Where a batch runs: on the version's own thread (`executor` given; onnxruntime releases the GIL),
or inline on the event loop (`executor` None) for models whose whole batch takes microseconds,
where the hop to a thread would cost more than the call. `choose_execution` picks by measurement.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from gateway.batching.merge import MergeKey, merge_key, run_merged
from gateway.errors import GatewayError, QueueTimeout, Unavailable
from gateway.tensors import Tensors

logger = logging.getLogger("gateway.batching")

_GAP_WEIGHT = 0.1
"""Weight of the newest inter-arrival gap in the moving average."""
_GAP_CAP_S = 1.0
"""Gaps are counted at most this long, so an idle spell does not hide the next burst for long."""
_YIELD_WEIGHT = 0.2
"""Weight of the newest wait's outcome in the moving average of company gained per wait."""
_PROBE_EVERY = 16
"""While waits gain no company, still wait once in this many batches, to notice load coming."""
_TIMER_RESOLUTION_S = 0.002
"""Event-loop timers fire in whole milliseconds (uvloop rounds a 500 µs wait down to zero), so
the last stretch of a wait shorter than this polls the loop instead of setting a timer."""

RunFunction = Callable[[Tensors], Tensors]
_Outcome = tuple[Tensors | None, Exception | None]


BatchObserver = Callable[[int, list[float], float], None]
"""(rows in the batch, each request's wait in the queue in seconds, inference seconds)."""


@dataclass
class BatchTiming:
    """Filled in for a caller that asks (tracing): when its request queued and its batch ran."""
    enqueued_s: float = 0.0
    started_s: float = 0.0
    ended_s: float = 0.0
    rows: int = 0
    requests: int = 0


@dataclass(eq=False)
class _Pending:
    inputs: Tensors
    rows: int
    merge_key: MergeKey | None
    """Names, dtypes and shapes past the first dimension; None: this request runs alone."""
    deadline_s: float | None
    future: asyncio.Future[Tensors]
    enqueued_s: float = field(default_factory=time.perf_counter)
    timing: BatchTiming | None = None


@dataclass(frozen=True)
class BatchingLimits:
    max_batch_size: int
    max_queue_delay_us: int
    max_queue_size: int


class Batcher:
    """Queue and worker of one model version. `run` executes a (merged) batch synchronously."""

    def __init__(self, name: str, run: RunFunction, batchable: bool, limits: BatchingLimits,
                 executor: Executor | None, on_error: Callable[[Exception], GatewayError],
                 observe: BatchObserver | None = None,
                 inline_max_rows: int | None = None) -> None:
        """`executor` None runs batches inline on the event loop, but only up to
        `inline_max_rows` rows (default `max_batch_size`: what was timed to choose inline); a
        larger call (one big request) runs on the loop's default thread pool, so that an
        8,192-row request does not stall every other request."""
        self.name = name
        self._inline_max_rows = (limits.max_batch_size if inline_max_rows is None
                                 else inline_max_rows)
        self._observe = observe
        self._run = run
        self._batchable = batchable and limits.max_batch_size > 1
        self._limits = limits
        self._delay_s = limits.max_queue_delay_us / 1e6
        self._executor = executor
        self._on_error = on_error
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._wakeup = asyncio.Event()
        self._closing = False
        self._worker: asyncio.Task[None] | None = None
        self._last_arrival_s: float | None = None
        self._mean_gap_s = float("inf")
        """Moving average of the time between arrivals; infinite until two have arrived."""
        self._wait_yield = 1.0
        """Moving average of the requests that joined during a wait for company."""
        self._skipped_waits = 0

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._work(), name=self.name)

    async def stop(self) -> None:
        """Refuse new requests, finish every queued one, then end the worker."""
        self._closing = True
        self._wakeup.set()
        if self._worker is not None:
            await self._worker

    async def submit(self, inputs: Tensors, rows: int, timeout_us: int | None,
                     timing: BatchTiming | None = None) -> Tensors:
        """Queue `inputs` (`rows` along the first dimension) and wait for the outputs; `timing`,
        when given, is filled in with the request's queue and batch times."""
        if self._closing:
            raise Unavailable(f"{self.name} is shutting down; retry on another replica")
        if len(self._queue) >= self._limits.max_queue_size:
            raise Unavailable(f"{self.name} has {len(self._queue)} requests queued, its "
                              "max_queue_size; retry shortly")
        key = (merge_key(inputs, rows)
               if self._batchable and rows <= self._limits.max_batch_size else None)
        now = time.perf_counter()
        if self._last_arrival_s is not None:
            gap = min(now - self._last_arrival_s, _GAP_CAP_S)
            self._mean_gap_s = (gap if self._mean_gap_s == float("inf")
                                else self._mean_gap_s + _GAP_WEIGHT * (gap - self._mean_gap_s))
        self._last_arrival_s = now
        deadline = now + timeout_us / 1e6 if timeout_us else None
        future: asyncio.Future[Tensors] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(inputs, rows, key, deadline, future, now, timing))
        self._queued_rows += rows
        self._wakeup.set()
        return await future

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self._worth_waiting():
                before = len(self._queue)
                await self._wait_for_company()
                joined = len(self._queue) - before
                self._wait_yield += _YIELD_WEIGHT * (joined - self._wait_yield)
            batch = self._take_batch()
            if not batch:
                continue
            rows = sum(item.rows for item in batch)
            started = time.perf_counter()
            if self._executor is None and rows <= self._inline_max_rows:
                outcomes = self._execute(batch)
            else:  # the version's thread, or the default pool for a call too big to run inline
                outcomes = await loop.run_in_executor(self._executor, self._execute, batch)
            ended = time.perf_counter()
            if self._observe is not None:
                self._observe(rows, [started - item.enqueued_s for item in batch],
                              ended - started)
            for item, (result, error) in zip(batch, outcomes, strict=True):
                if item.timing is not None:
                    timing = item.timing
                    timing.enqueued_s, timing.started_s, timing.ended_s = (
                        item.enqueued_s, started, ended)
                    timing.rows, timing.requests = rows, len(batch)
                _resolve(item.future, result, error)

    def _worth_waiting(self) -> bool:
        """Wait for company only when it is likely to come within the delay.

        `max_queue_delay_us` is the longest a request may wait, not a toll every request pays: a
        lone request at low load (requests arriving further apart than the delay) runs at once,
        and so does one whose company cannot come (callers that each wait for their answer before
        sending again: recent waits gained nobody; one wait in `_PROBE_EVERY` still tries, to
        notice load coming). Under load the queue gathers company as configured.
        """
        if not (self._batchable and self._queue[0].merge_key is not None
                and self._queued_rows < self._limits.max_batch_size
                and self._mean_gap_s < self._delay_s):
            return False
        if self._wait_yield >= 0.5:
            return True
        self._skipped_waits += 1
        return self._skipped_waits % _PROBE_EVERY == 0

    async def _wait_for_company(self) -> None:
        first = self._queue[0]
        while self._queued_rows < self._limits.max_batch_size and not self._closing:
            remaining = first.enqueued_s + self._delay_s - time.perf_counter()
            if remaining <= 0:
                return
            if remaining < _TIMER_RESOLUTION_S:
                await asyncio.sleep(0)  # one loop pass: reads whatever requests have arrived
                continue
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), remaining - _TIMER_RESOLUTION_S / 2)

    def _take_batch(self) -> list[_Pending]:
        """Pop the next batch: the head, then followers of the same shape while rows fit."""
        batch: list[_Pending] = []
        rows = 0
        now = time.perf_counter()
        while self._queue:
            item = self._queue[0]
            if item.future.done():  # the caller went away
                self._pop()
                continue
            if item.deadline_s is not None and now > item.deadline_s:
                self._pop()
                waited_us = int((now - item.enqueued_s) * 1e6)
                item.future.set_exception(QueueTimeout(
                    f"{self.name}: waited {waited_us} µs in the queue, past the request's "
                    "timeout; raise the timeout or retry later"))
                continue
            if batch and (item.merge_key is None or item.merge_key != batch[0].merge_key
                          or rows + item.rows > self._limits.max_batch_size):
                break
            batch.append(self._pop())
            rows += item.rows
            if item.merge_key is None:
                break
        return batch

    def _pop(self) -> _Pending:
        item = self._queue.popleft()
        self._queued_rows -= item.rows
        return item

    def _execute(self, batch: list[_Pending]) -> list[_Outcome]:
        """One merged call, or one call per request after a failure; touches no future, so it
        can run on any thread."""
        if len(batch) > 1:
            try:
                return [(result, None) for result in self._run_merged(batch)]
            except Exception:
                logger.warning("%s: merged batch of %d failed; retrying one by one",
                               self.name, len(batch), exc_info=True)
        outcomes: list[_Outcome] = []
        for item in batch:
            try:
                outcomes.append((self._run(item.inputs), None))
            except Exception as exc:
                outcomes.append((None, self._on_error(exc)))
        return outcomes

    def _run_merged(self, batch: list[_Pending]) -> list[Tensors]:
        return run_merged(self._run, [item.inputs for item in batch],
                          [item.rows for item in batch])


def _resolve(future: asyncio.Future[Tensors], result: Tensors | None,
             error: Exception | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        assert result is not None
        future.set_result(result)
