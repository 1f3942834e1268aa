"""Agreement of two answers, row by row: the one definition (docs/routing.md) that the shadow, the
rollout's shadow gate (through `gateway_shadow_rows_total`) and `gateway replay` all count by.

Two answers agree on a row when every output both have is equal on that row: integers, booleans
and text exactly; floats within `ABSOLUTE_TOLERANCE` or within `RELATIVE_TOLERANCE` of the larger
magnitude (so 1e-6 and 2e-6 agree, and 1,000,000 and 1,000,500 do), NaN equal to NaN and an
infinity equal to itself. Outputs only one side has are not compared (a version may answer more
outputs than another); answers with no output in common agree nowhere, since nothing in them is
the same. Counted per row, not per request: a request of four rows with one that differs is
three agreeing rows and one that is not, whatever the request sizes callers send.

All of it is a few array operations per output, whatever the number of rows.
"""

from __future__ import annotations

import math

import numpy as np

from gateway.tensors import Tensors

ABSOLUTE_TOLERANCE = 1e-3
RELATIVE_TOLERANCE = 1e-3
_TEXT_KINDS = "OUS"
_EXACT_KINDS = "biu"


def agreeing_rows(first: Tensors, second: Tensors, rows: int) -> np.ndarray:
    """One bool per row of two answers of `rows` rows (their outputs concatenated along the
    batch dimension, or one request's): True where they agree (see the module's docstring).

    An output whose first dimension is not `rows` (a scalar, a model without a batch dimension)
    is compared whole, and its verdict holds for every row; an output of another shape on each
    side agrees on no row."""
    agree = np.ones(rows, dtype=bool)
    common = [name for name in first if name in second]
    if not common:
        agree[:] = False
        return agree
    for name in common:
        a, b = np.asarray(first[name]), np.asarray(second[name])
        if a.shape != b.shape:
            agree[:] = False
            continue
        same = equal_values(a, b)
        if a.ndim and a.shape[0] == rows:
            agree &= same.reshape(rows, math.prod(a.shape[1:])).all(axis=1)
        elif not same.all():
            agree[:] = False
    return agree


def equal_values(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element by element, for two arrays of one shape: equal by the rules of agreement."""
    text_a, text_b = a.dtype.kind in _TEXT_KINDS, b.dtype.kind in _TEXT_KINDS
    if text_a or text_b:
        if not (text_a and text_b):  # text against a number is never the same answer
            return np.zeros(a.shape, dtype=bool)
        return np.asarray(a.astype(str) == b.astype(str))
    if a.dtype.kind in _EXACT_KINDS and b.dtype.kind in _EXACT_KINDS:
        return np.asarray(a == b)
    x, y = a.astype(np.float64), b.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        difference = np.abs(x - y)
        scale = np.maximum(np.abs(x), np.abs(y))
        return np.asarray((x == y) | (difference <= ABSOLUTE_TOLERANCE)
                          | ((difference <= RELATIVE_TOLERANCE * scale)
                             & np.isfinite(difference))
                          | (np.isnan(x) & np.isnan(y)))
