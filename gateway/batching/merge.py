"""Requests merged along their first (batch) dimension into one call, and the outputs split back:
what the batcher does with a batch, and the shadow runner with the mirrors of one tick."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np

from gateway.tensors import Tensors

MergeKey = tuple[tuple[str, str, tuple[int, ...]], ...]
"""Each input's name, dtype and shape past the first dimension: requests with equal keys merge."""


def merge_key(inputs: Tensors, rows: int) -> MergeKey | None:
    """The key `inputs` merge by, or None when one has no first dimension of `rows`."""
    key = []
    for name, array in inputs.items():
        shape = array.shape
        if not shape or shape[0] != rows:
            return None
        key.append((name, array.dtype.str, shape[1:]))
    return tuple(key)


def concatenate(inputs: Sequence[Tensors]) -> Tensors:
    """Every request's inputs (equal merge keys) joined along the first dimension."""
    names = inputs[0].keys()
    return {name: np.concatenate([item[name] for item in inputs]) for name in names}


def run_concatenated(run: Callable[[Tensors], Tensors], merged: Tensors, total: int) -> Tensors:
    """One call of `run` on merged inputs of `total` rows; ValueError when an output's first
    dimension is not those rows."""
    results = run(merged)
    if any(not r.ndim or r.shape[0] != total for r in results.values()):
        raise ValueError("an output's first dimension is not the batch dimension")
    return results


def run_merged(run: Callable[[Tensors], Tensors], inputs: Sequence[Tensors],
               rows: Sequence[int]) -> list[Tensors]:
    """`run_concatenated`, and each request's outputs split back by its rows."""
    results = run_concatenated(run, concatenate(inputs), sum(rows))
    # Plain slices (views): np.split's Python loop cost more than the model for a cheap one.
    ends = list(itertools.accumulate(rows))
    return [{name: r[start:end] for name, r in results.items()}
            for start, end in zip([0, *ends[:-1]], ends, strict=True)]
