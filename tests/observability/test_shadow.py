"""The shadow runner off the request path: results counted by kind, a full queue dropping,
mirrors merged into few calls and a failing one counted alone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np

from gateway.observability.shadow import ShadowRunner, ShadowVersion
from gateway.routing.shadow import AGREE, DISAGREE, DROPPED, ERROR
from gateway.tensors import Tensors

Run = Callable[[Tensors], Tensors]


def run_shadows(run: Run | None, mirrors: list[tuple[Tensors, Tensors]], max_queue: int = 64,
                batchable: bool = True) -> list[str]:
    """Mirror each (inputs, primary outputs) to a shadow running `run` (None: unloaded), all in
    one go as a burst of requests would; what was counted, in order."""
    counted: list[str] = []

    async def main() -> None:
        runner = ShadowRunner(
            lambda m, v: ShadowVersion(run, "label", batchable) if run else None,
            lambda m, v, result, n: counted.extend([result] * n), max_queue)
        runner.start()
        for inputs, primary in mirrors:
            runner.mirror("m", [2], inputs, primary, len(next(iter(inputs.values()))))
        deadline = time.monotonic() + 5
        while len(counted) < len(mirrors) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await runner.stop()

    asyncio.run(main())
    return counted


def one_row(label: int = 1) -> tuple[Tensors, Tensors]:
    return {"x": np.full((1, 2), float(label))}, {"label": np.array([label])}


def labels_of(feeds: Tensors) -> Tensors:
    return {"label": feeds["x"][:, 0].astype(np.int64)}


def test_results_are_counted_by_kind() -> None:
    assert run_shadows(lambda feeds: {"label": np.ones(len(feeds["x"]), np.int64)},
                       [one_row()] * 3) == [AGREE] * 3
    assert run_shadows(lambda feeds: {"label": np.zeros(len(feeds["x"]), np.int64)},
                       [one_row()] * 2) == [DISAGREE] * 2

    def fail(feeds: Tensors) -> Tensors:
        raise RuntimeError("shadow broke")

    assert run_shadows(fail, [one_row()] * 2) == [ERROR] * 2
    # Unloaded while its mirrors waited (the policy dropped it): not the shadow's error.
    assert run_shadows(None, [one_row()]) == [DROPPED]


def test_a_full_queue_drops_and_counts_instead_of_waiting() -> None:
    def slow(feeds: Tensors) -> Tensors:
        time.sleep(0.05)
        return labels_of(feeds)

    counted = run_shadows(slow, [one_row()] * 10, max_queue=2)
    assert counted.count(DROPPED) >= 7
    assert len(counted) == 10


def test_mirrors_that_waited_together_run_as_one_call_each_compared_with_its_own() -> None:
    calls: list[int] = []

    def shadow(feeds: Tensors) -> Tensors:
        calls.append(len(feeds["x"]))
        x = feeds["x"][:, 0].astype(np.int64)
        return {"label": np.where(x == 1, 0, x)}  # disagrees where the primary said 1

    mirrors = [one_row(i % 3) for i in range(30)]
    mirrors.append(({"x": np.full((3, 2), 2.0)}, {"label": np.array([2, 2, 2])}))
    counted = run_shadows(shadow, mirrors)
    assert counted.count(AGREE) == 21 and counted.count(DISAGREE) == 10
    assert calls == [33]


def test_only_the_mirror_the_shadow_fails_on_counts_as_its_error() -> None:
    def picky(feeds: Tensors) -> Tensors:
        if (feeds["x"] < 0).any():
            raise ValueError("negative input")
        return labels_of(feeds)

    mirrors = [one_row(1)] * 5 + [({"x": np.full((1, 2), -1.0)}, {"label": np.array([-1])})]
    counted = run_shadows(picky, mirrors + [one_row(1)] * 5)
    assert counted.count(ERROR) == 1 and counted.count(AGREE) == 10


def test_mirrors_of_other_shapes_or_an_unbatchable_shadow_run_apart() -> None:
    calls: list[int] = []

    def shadow(feeds: Tensors) -> Tensors:
        calls.append(len(feeds["x"]))
        return {"label": np.ones(len(feeds["x"]), np.int64)}

    wide = ({"x": np.ones((2, 5))}, {"label": np.array([1, 1])})
    counted = run_shadows(shadow, [one_row(1), one_row(1), wide, one_row(1)])
    assert counted == [AGREE] * 4 and calls == [2, 2, 1]
    calls.clear()
    assert run_shadows(shadow, [one_row(1)] * 3, batchable=False) == [AGREE] * 3
    assert calls == [1, 1, 1]
