"""The shadow runner off the request path: results counted by kind, rows counted by their own
agreement, a full queue dropping, mirrors merged into few calls and a failing one counted
alone."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

import numpy as np

from gateway.observability.shadow import ShadowRunner, ShadowVersion
from gateway.routing.shadow import AGREE, DISAGREE, DROPPED, ERROR
from gateway.tensors import Tensors

Run = Callable[[Tensors], Tensors]


def run_shadows(run: Run | None, mirrors: list[tuple[Tensors, Tensors]], max_queue: int = 64,
                batchable: bool = True, rows: Counter[str] | None = None) -> list[str]:
    """Mirror each (inputs, primary outputs) to a shadow running `run` (None: unloaded), all in
    one go as a burst of requests would; what was counted, in order (and the rows by result
    into `rows`)."""
    counted: list[str] = []
    counted_rows = Counter[str]() if rows is None else rows

    async def main() -> None:
        runner = ShadowRunner(
            lambda m, v: ShadowVersion(run, "label", batchable) if run else None,
            lambda m, v, result, n: counted.extend([result] * n), max_queue,
            count_rows=lambda m, v, result, n: counted_rows.update({result: n}))
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


def test_rows_are_counted_by_their_own_agreement_not_their_requests() -> None:
    """The issue's rollout: requests of four rows, 1.8% of rows answered otherwise by the
    shadow, one at a time. Rows agree 98.2%, requests only ~93%: a 0.95 bar must read the
    rows."""
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 2, (1000, 4))
    flip = np.zeros(4000, dtype=bool)
    flip[rng.choice(4000, 72, replace=False)] = True
    flipped = labels ^ flip.reshape(1000, 4)

    def shadow(feeds: Tensors) -> Tensors:
        return {"label": feeds["x"][:, 1].astype(np.int64)}  # the flipped label rides along

    mirrors = [({"x": np.stack([labels[i], flipped[i]], axis=1).astype(np.float64)},
                {"label": labels[i]}) for i in range(1000)]
    rows: Counter[str] = Counter()
    counted = run_shadows(shadow, mirrors, max_queue=2000, rows=rows)
    assert rows == {AGREE: 4000 - 72, DISAGREE: 72}
    assert rows[AGREE] / 4000 == 0.982
    requests_agreeing = int(np.count_nonzero(~flip.reshape(1000, 4).any(axis=1)))
    assert counted.count(AGREE) == requests_agreeing < 950
    assert counted.count(DISAGREE) == 1000 - requests_agreeing


def test_the_rows_of_a_mirror_the_shadow_fails_on_are_errors() -> None:
    def picky(feeds: Tensors) -> Tensors:
        if (feeds["x"] < 0).any():
            raise ValueError("negative input")
        return labels_of(feeds)

    rows: Counter[str] = Counter()
    bad = ({"x": np.full((3, 2), -1.0)}, {"label": np.array([-1, -1, -1])})
    counted = run_shadows(picky, [one_row(1), bad, one_row(1)], rows=rows)
    assert sorted(counted) == [AGREE, AGREE, ERROR]
    assert rows == {AGREE: 2, ERROR: 3}
