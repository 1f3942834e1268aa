"""The batcher with a real onnxruntime session: merging, splitting, overload, timeouts, faults."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from gateway.batching.batcher import Batcher, BatchingLimits, BatchTiming
from gateway.errors import InferenceFailed, QueueTimeout, Unavailable
from gateway.protocol.validate import classify_inference_error
from gateway.runtime.repository import scan_repository
from gateway.runtime.session import ModelSession, load_session
from gateway.tensors import Tensors
from tests.conftest import MODEL, MODELS, sample_rows

SESSION = load_session(scan_repository(MODELS)[MODEL][1], ["CPUExecutionProvider"], 1, 1)


class Recorder:
    """Wraps the real session's run to record the rows of every call; can be told to fail."""

    def __init__(self, session: ModelSession = SESSION,
                 fail_when: Callable[[Tensors], bool] = lambda feeds: False) -> None:
        self.session = session
        self.calls: list[int] = []
        self.fail_when = fail_when

    def __call__(self, feeds: Tensors) -> Tensors:
        self.calls.append(feeds["input"].shape[0])
        if self.fail_when(feeds):
            raise RuntimeError("model fault")
        return self.session.run(feeds)


Runner = Callable[[Callable[[Tensors], Tensors], BatchingLimits, Callable[[Batcher], object]],
                  Coroutine[Any, Any, Any]]


@pytest.fixture(params=["thread", "inline"])
def run_batcher(request: pytest.FixtureRequest) -> Runner:
    """Runs `body` against a started batcher; every test runs both ways a batch can run."""

    async def run(recorder: Callable[[Tensors], Tensors], limits: BatchingLimits,
                  body: Callable[[Batcher], object]) -> Any:
        with ThreadPoolExecutor(1) as thread:
            executor = thread if request.param == "thread" else None
            batcher = Batcher("test", recorder, True, limits, executor, classify_inference_error)
            batcher.start()
            try:
                return await body(batcher)  # type: ignore[misc]
            finally:
                await batcher.stop()

    return run


def submit_all(batcher: Batcher, parts: list[np.ndarray],
               timeout_us: int | None = None) -> asyncio.Future[list[object]]:
    return asyncio.gather(*(batcher.submit({"input": p}, len(p), timeout_us) for p in parts),
                          return_exceptions=True)


def test_concurrent_requests_merge_into_one_call_and_split_back(run_batcher: Runner) -> None:
    recorder = Recorder()
    parts = [sample_rows(n, seed=n) for n in (1, 2, 3, 4)]

    async def body(batcher: Batcher) -> list[object]:
        return await submit_all(batcher, parts)

    results = asyncio.run(run_batcher(recorder, BatchingLimits(32, 50_000, 64), body))
    assert recorder.calls == [10]
    for part, result in zip(parts, results, strict=True):
        expected = SESSION.run({"input": part})
        assert isinstance(result, dict)
        np.testing.assert_allclose(result["probabilities"], expected["probabilities"], atol=1e-6)
        np.testing.assert_array_equal(result["label"], expected["label"])


def test_batches_respect_max_batch_size_and_big_requests_run_alone(run_batcher: Runner) -> None:
    recorder = Recorder()
    parts = [sample_rows(3, seed=i) for i in range(5)] + [sample_rows(9)]

    async def body(batcher: Batcher) -> list[object]:
        return await submit_all(batcher, parts)

    results = asyncio.run(run_batcher(recorder, BatchingLimits(8, 50_000, 64), body))
    assert all(isinstance(r, dict) for r in results)
    # 3-row requests pair up (a third would pass 8); the 9-row one exceeds 8 and runs alone.
    assert recorder.calls == [6, 6, 3, 9]


def test_batching_off_runs_each_request_alone(run_batcher: Runner) -> None:
    recorder = Recorder()

    async def body(batcher: Batcher) -> list[object]:
        return await submit_all(batcher, [sample_rows(2, seed=i) for i in range(4)])

    asyncio.run(run_batcher(recorder, BatchingLimits(1, 50_000, 64), body))
    assert recorder.calls == [2, 2, 2, 2]


def test_a_full_queue_refuses_at_once(run_batcher: Runner) -> None:
    async def body(batcher: Batcher) -> list[object]:
        return await submit_all(batcher, [sample_rows(1, seed=i) for i in range(5)])

    results = asyncio.run(run_batcher(Recorder(), BatchingLimits(32, 200_000, 3), body))
    refused = [r for r in results if isinstance(r, Unavailable)]
    assert len(refused) == 2 and "max_queue_size" in refused[0].message
    assert sum(isinstance(r, dict) for r in results) == 3


def test_a_request_past_its_deadline_gets_504_and_others_are_served(run_batcher: Runner) -> None:
    async def body(batcher: Batcher) -> list[object]:
        slow = batcher.submit({"input": sample_rows(1)}, 1, 1_000)  # 1 ms, queue waits 100 ms
        fine = batcher.submit({"input": sample_rows(1)}, 1, None)
        return list(await asyncio.gather(slow, fine, return_exceptions=True))

    timed_out, served = asyncio.run(run_batcher(Recorder(), BatchingLimits(32, 100_000, 8), body))
    assert isinstance(timed_out, QueueTimeout) and "timeout" in timed_out.message
    assert isinstance(served, dict)


def test_a_failing_merged_call_is_retried_one_by_one(run_batcher: Runner) -> None:
    poison = np.full((1, 30), 666.0, np.float32)
    recorder = Recorder(fail_when=lambda feeds: bool((feeds["input"] == 666.0).any()))
    parts = [sample_rows(1, seed=1), poison, sample_rows(2, seed=2)]

    async def body(batcher: Batcher) -> list[object]:
        return await submit_all(batcher, parts)

    results = asyncio.run(run_batcher(recorder, BatchingLimits(32, 50_000, 8), body))
    assert recorder.calls == [4, 1, 1, 2]
    assert isinstance(results[0], dict) and isinstance(results[2], dict)
    assert isinstance(results[1], InferenceFailed) and "model fault" in results[1].message


def test_stop_finishes_queued_requests_and_then_refuses(run_batcher: Runner) -> None:
    async def body(batcher: Batcher) -> tuple[list[object], object]:
        queued = submit_all(batcher, [sample_rows(1, seed=i) for i in range(6)])
        await asyncio.sleep(0)
        await batcher.stop()
        late = await asyncio.gather(batcher.submit({"input": sample_rows(1)}, 1, None),
                                    return_exceptions=True)
        return await queued, late[0]

    results, late = asyncio.run(run_batcher(Recorder(), BatchingLimits(4, 1_000_000, 64),
                                            body))  # type: ignore[misc]
    assert all(isinstance(r, dict) for r in results)
    assert isinstance(late, Unavailable) and "shutting down" in late.message


def test_a_cancelled_caller_does_not_block_the_queue(run_batcher: Runner) -> None:
    recorder = Recorder()

    async def body(batcher: Batcher) -> object:
        gone = asyncio.ensure_future(batcher.submit({"input": sample_rows(1)}, 1, None))
        await asyncio.sleep(0)
        gone.cancel()
        return await batcher.submit({"input": sample_rows(2)}, 2, None)

    result = asyncio.run(run_batcher(recorder, BatchingLimits(32, 20_000, 8), body))
    assert isinstance(result, dict)
    assert recorder.calls == [2]


@pytest.mark.parametrize("rows", [0, 1])
def test_empty_and_single_rows(rows: int, run_batcher: Runner) -> None:
    async def body(batcher: Batcher) -> object:
        return await batcher.submit({"input": sample_rows(rows)}, rows, None)

    result = asyncio.run(run_batcher(Recorder(), BatchingLimits(32, 1_000, 8), body))
    assert isinstance(result, dict) and result["label"].shape == (rows,)


def test_no_request_starves_behind_later_ones(run_batcher: Runner) -> None:
    """Mixed sizes that cannot share a batch are still answered in arrival order."""
    recorder = Recorder()
    sizes = [1 if i % 2 else 31 for i in range(40)]
    finished: list[int] = []

    async def body(batcher: Batcher) -> None:
        async def one(i: int, rows: int) -> None:
            await batcher.submit({"input": sample_rows(rows, seed=i)}, rows, None)
            finished.append(i)

        await asyncio.gather(*(one(i, n) for i, n in enumerate(sizes)))

    asyncio.run(run_batcher(recorder, BatchingLimits(32, 1_000, 64), body))
    assert finished == list(range(40))
    assert sum(recorder.calls) == sum(sizes) and max(recorder.calls) <= 32


@pytest.mark.parametrize("output_shape", [(), (4,), (3, 2)])
def test_outputs_of_any_rank_split_back_per_request(output_shape: tuple[int, ...],
                                                    run_batcher: Runner) -> None:
    """A batch-major output of any rank is split by rows; each caller gets its own rows."""

    calls: list[int] = []

    def run(feeds: Tensors) -> Tensors:
        rows = feeds["input"].shape[0]
        calls.append(rows)
        base = feeds["input"][:, :1].reshape((rows,) + (1,) * len(output_shape))
        return {"y": np.broadcast_to(base, (rows, *output_shape)).copy()}

    parts = [sample_rows(n, seed=n) for n in (1, 3, 2)]

    async def body(batcher: Batcher) -> list[object]:
        return await submit_all(batcher, parts)

    results = asyncio.run(run_batcher(run, BatchingLimits(32, 20_000, 8), body))
    assert calls == [6]  # one merged call
    for part, result in zip(parts, results, strict=True):
        assert isinstance(result, dict)
        assert result["y"].shape == (len(part), *output_shape)
        np.testing.assert_array_equal(result["y"].reshape(len(part), -1)[:, 0], part[:, 0])



def test_a_lone_request_at_low_load_does_not_wait_for_company(run_batcher: Runner) -> None:
    """No arrivals to expect company from: a 10-second delay is not paid."""

    timing = BatchTiming()

    async def body(batcher: Batcher) -> object:
        return await asyncio.wait_for(
            batcher.submit({"input": sample_rows(1)}, 1, None, timing), 5.0)

    result = asyncio.run(run_batcher(Recorder(), BatchingLimits(32, 10_000_000, 8), body))
    assert result["label"].shape == (1,)  # type: ignore[index]
    waited_s = timing.started_s - timing.enqueued_s
    assert 0 <= waited_s < 1.0, f"waited {waited_s:.3f} s for company that could not come"
    assert timing.requests == 1


def test_under_load_a_request_waits_for_company_that_arrives_within_the_delay(
        run_batcher: Runner) -> None:
    recorder = Recorder()

    async def body(batcher: Batcher) -> None:
        await submit_all(batcher, [sample_rows(1, seed=i) for i in range(4)])  # a burst
        first = asyncio.ensure_future(batcher.submit({"input": sample_rows(1)}, 1, None))
        await asyncio.sleep(0.01)
        await batcher.submit({"input": sample_rows(2)}, 2, None)
        await first

    asyncio.run(run_batcher(recorder, BatchingLimits(32, 200_000, 8), body))
    assert recorder.calls == [4, 3]  # the late one joined the waiting one


def test_sub_millisecond_delays_are_honoured(run_batcher: Runner) -> None:
    """Event-loop timers have millisecond resolution; an 800 µs wait must not round to zero."""

    async def body(batcher: Batcher) -> float:
        await submit_all(batcher, [sample_rows(1, seed=i) for i in range(4)])
        start = time.perf_counter()
        await batcher.submit({"input": sample_rows(1)}, 1, None)
        return time.perf_counter() - start

    async def measure() -> float:
        return await run_batcher(Recorder(), BatchingLimits(32, 800, 8), body)  # type: ignore

    import uvloop

    for runner in (asyncio.run, uvloop.run):
        elapsed = runner(measure())
        assert elapsed >= 0.0008


def test_a_caller_that_waits_for_each_answer_stops_paying_the_delay(
        run_batcher: Runner) -> None:
    """One closed-loop caller arrives faster than the delay, but no company can ever come:
    after a few fruitless waits the batcher stops waiting (40 waits would take 2 s)."""

    rows = sample_rows(40)

    async def body(batcher: Batcher) -> float:
        start = time.perf_counter()
        for i in range(40):
            await batcher.submit({"input": rows[i:i + 1]}, 1, None)
        return time.perf_counter() - start

    elapsed = asyncio.run(run_batcher(Recorder(), BatchingLimits(32, 50_000, 8), body))
    assert isinstance(elapsed, float) and elapsed < 1.0


@pytest.mark.parametrize("executor", ["thread", "inline"])
def test_every_batch_is_reported_and_a_caller_can_ask_for_its_timing(executor: str) -> None:
    recorder = Recorder()
    reported: list[tuple[int, list[float], float]] = []
    parts = [sample_rows(n, seed=n) for n in (1, 2, 3)]
    timings = [BatchTiming() for _ in parts]

    async def main() -> None:
        with ThreadPoolExecutor(1) as thread:
            batcher = Batcher("test", recorder, True, BatchingLimits(32, 50_000, 64),
                              thread if executor == "thread" else None,
                              classify_inference_error,
                              lambda rows, waits, run_s: reported.append((rows, waits, run_s)))
            batcher.start()
            before = time.perf_counter()
            await asyncio.gather(*(batcher.submit({"input": p}, len(p), None, t)
                                   for p, t in zip(parts, timings, strict=True)))
            after = time.perf_counter()
            await batcher.stop()
        assert recorder.calls == [6]
        [(rows, waits, run_s)] = reported
        assert rows == 6 and len(waits) == 3 and all(w >= 0 for w in waits) and run_s > 0
        for timing, wait in zip(timings, waits, strict=True):
            assert before <= timing.enqueued_s <= timing.started_s <= timing.ended_s <= after
            assert timing.started_s - timing.enqueued_s == pytest.approx(wait)
            assert (timing.rows, timing.requests) == (6, 3)

    asyncio.run(main())


def test_inline_runs_only_what_was_timed_inline_and_a_bigger_call_on_a_thread() -> None:
    """`inline` was chosen from a timing of `max_batch_size` rows: a single request of more
    rows (up to limits.max_batch_rows) must not stall the event loop for its whole call."""
    threads: list[str] = []

    def run(feeds: Tensors) -> Tensors:
        threads.append(threading.current_thread().name)
        return SESSION.run(feeds)

    async def body() -> None:
        limits = BatchingLimits(max_batch_size=32, max_queue_delay_us=0, max_queue_size=8)
        batcher = Batcher("test", run, True, limits, None, classify_inference_error)
        batcher.start()
        try:
            for rows in (32, 8192, 1):
                result = await batcher.submit({"input": sample_rows(rows)}, rows, None)
                assert result["label"].shape == (rows,)
        finally:
            await batcher.stop()

    asyncio.run(body())
    loop_thread = threading.current_thread().name
    assert threads[0] == loop_thread and threads[2] == loop_thread
    assert threads[1] != loop_thread
