"""Shadow mode's decisions, pure: which shadows a request is mirrored to, which rows of a
shadow's answers agree with the primary's (the one definition of gateway.protocol.agreement),
and the results they are counted by. The runner that mirrors off the request path is
gateway.observability.shadow.

Rows are what agreement is counted in (`gateway_shadow_rows_total`, the rollout's shadow gate);
a mirrored request, counted in `gateway_shadow_requests_total`, agrees when every one of its
rows agrees, so with requests of several rows the request count reads lower than the row count.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np

from gateway.protocol.agreement import agreeing_rows
from gateway.routing.policy import ModelPolicy
from gateway.tensors import Tensors

AGREE, DISAGREE, ERROR, DROPPED = "agree", "disagree", "error", "dropped"


def choose_shadows(policy: ModelPolicy, draw: Callable[[], float] = random.random) -> list[int]:
    """The shadow versions this request is mirrored to (each by its percent)."""
    return [s.version for s in policy.shadow if draw() * 100 < s.percent]


def compare_mirrors(primaries: Sequence[Tensors], shadow: Tensors,
                    rows: Sequence[int]) -> np.ndarray:
    """Agreement of every row of the mirrors, in order: each primary's answer (of `rows` rows)
    against its rows of one shadow call made on all their inputs concatenated.

    When the primaries answered the same outputs, one per row, this is one comparison of their
    answers concatenated; else (mirrors of one shadow from two primary versions, an output
    without a batch dimension) one comparison per mirror."""
    total = sum(rows)
    names = tuple(primaries[0])
    if all(tuple(p) == names for p in primaries) and _stackable(primaries, rows):
        merged = {name: np.concatenate([p[name] for p in primaries]) for name in names}
        return agreeing_rows(merged, shadow, total)
    starts = np.concatenate(([0], np.cumsum(rows)))
    per_mirror = []
    for primary, start, end in zip(primaries, starts[:-1], starts[1:], strict=True):
        own = (shadow if len(primaries) == 1
               else {n: r[start:end] if r.ndim and r.shape[0] == total else r
                     for n, r in shadow.items()})
        per_mirror.append(agreeing_rows(primary, own, int(end - start)))
    return np.concatenate(per_mirror) if per_mirror else np.ones(0, dtype=bool)


def _stackable(primaries: Sequence[Tensors], rows: Sequence[int]) -> bool:
    """Every output of every primary has its mirror's rows first, and the same shape after."""
    for name, array in primaries[0].items():
        tail = array.shape[1:]
        for primary, n in zip(primaries, rows, strict=True):
            shape = primary[name].shape
            if not shape or shape[0] != n or shape[1:] != tail:
                return False
    return True


def request_results(agree: np.ndarray, rows: Sequence[int]) -> list[str]:
    """Each mirrored request's result from its rows' agreement (`agree` holds the rows of all,
    in order): agree when every one of its rows agrees (a request of no rows agrees: nothing
    in it differed), else disagree."""
    disagreeing = np.concatenate(([0], np.cumsum(~agree)))
    ends = np.cumsum(rows)
    starts = ends - np.asarray(rows, dtype=ends.dtype)
    return [AGREE if n == 0 else DISAGREE for n in (disagreeing[ends] - disagreeing[starts])]


def row_results(agree: np.ndarray) -> dict[str, int]:
    """Rows by result, as `gateway_shadow_rows_total` counts them."""
    agreeing = int(np.count_nonzero(agree))
    return {AGREE: agreeing, DISAGREE: len(agree) - agreeing}

