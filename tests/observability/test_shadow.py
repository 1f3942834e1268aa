"""The shadow runner off the request path: results counted by kind, a full queue dropping."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from gateway.observability.shadow import ShadowRunner
from gateway.routing.shadow import AGREE, DISAGREE, DROPPED, ERROR
from gateway.tensors import Tensors


def run_shadows(run: object, mirrors: int, max_queue: int = 64) -> list[str]:
    counted: list[str] = []

    async def main() -> None:
        runner = ShadowRunner(lambda m, v: (run, "label") if run else None,  # type: ignore
                              lambda m, v, result: counted.append(result), max_queue)
        runner.start()
        primary: Tensors = {"label": np.array([1])}
        for _ in range(mirrors):
            runner.mirror("m", [2], {"x": np.zeros((1, 2))}, primary)
        deadline = time.monotonic() + 5
        while len(counted) < mirrors and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await runner.stop()

    asyncio.run(main())
    return counted


def test_results_are_counted_by_kind() -> None:
    assert run_shadows(lambda feeds: {"label": np.array([1])}, 3) == [AGREE] * 3
    assert run_shadows(lambda feeds: {"label": np.array([0])}, 2) == [DISAGREE] * 2

    def fail(feeds: Tensors) -> Tensors:
        raise RuntimeError("shadow broke")

    assert run_shadows(fail, 2) == [ERROR] * 2
    # Unloaded while its mirrors waited (the policy dropped it): not the shadow's error.
    assert run_shadows(None, 1) == [DROPPED]


def test_a_full_queue_drops_and_counts_instead_of_waiting() -> None:
    def slow(feeds: Tensors) -> Tensors:
        time.sleep(0.05)
        return {"label": np.array([1])}

    counted = run_shadows(slow, 10, max_queue=2)
    assert counted.count(DROPPED) >= 7
    assert len(counted) == 10
