"""Build a `reference.json` profile from training data: the bins the drift monitor compares live
rows with (README "Drift monitor"). models/train.py writes its profiles with these functions;
anyone writing their own `reference.json` should too, to get the same bins.

A numeric column gets a bin per tenth of its rows, at its deciles, and every value that holds at
least `POINT_MASS_SHARE` of the rows a bin of its own (exactly that value): a column that is 93%
zeros is then the bin {0} and bins at the deciles of the rest, so a window that is 50% zeros is
drift. Plain deciles would repeat 0 as every edge and put the column in one bin, where no
change can ever show.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

BINS = 10
POINT_MASS_SHARE = 0.1
"""A value holding at least this share of a column's finite rows gets a bin of its own."""


def _rounded(values: np.ndarray, digits: int) -> np.ndarray:
    """`values` to `digits` significant digits (correctly rounded decimal formatting: the same on
    every CPU for the same input)."""
    return np.array([float(f"{v:.{digits - 1}e}") for v in values], dtype=np.float64)


POINT_TOLERANCE = 2.0**-22
"""A point mass's bin holds every value within this share of it (four of float32's rounding
steps): a model served in float32 sees 0.1 as 0.100000001 (a relative error under 6e-8), which
a bin one float wide would miss, reading every such row as drift."""


def point_bin(value: float) -> tuple[float, float]:
    """The edges [low, high) of a point mass's own bin: the value and every value within
    POINT_TOLERANCE of it (float32's rounding of it included)."""
    spread = abs(value) * POINT_TOLERANCE
    if spread == 0.0:
        return value, float(np.nextafter(value, np.inf))
    return value - spread, value + spread


def _point_edges(value: float, digits: int | None) -> tuple[float, float]:
    """The edges of a point mass's own bin, [low, high): the value and its float32 rounding
    (`point_bin`), or with `digits`, every value that rounds to it at that many significant
    digits."""
    if digits is None:
        return point_bin(value)
    half = 0.5 * 10.0 ** (np.floor(np.log10(abs(value))) - (digits - 1)) if value else 1e-300
    low, high = _rounded(np.array([value - half, value + half]), digits + 2)
    return float(low), float(high)


def numeric_profile(name: str, values: np.ndarray, edge_digits: int | None = None,
                    bins: int = BINS) -> dict[str, Any]:
    """One numeric column's profile: `edges` (a value's bin is the count of edges at or below
    it), the training rows' `counts` per bin and its `nan` count. `edge_digits`: the values come
    out of a model's float arithmetic, which differs in the last bits from CPU to CPU, so edges
    are rounded to that many significant digits and a point mass is every value rounding to
    it."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[~np.isnan(values)]
    grouped = finite if edge_digits is None else _rounded(finite, edge_digits)
    distinct, counts = np.unique(grouped, return_counts=True)
    points = distinct[counts >= POINT_MASS_SHARE * max(len(finite), 1)]
    rest = finite[~np.isin(grouped, points)]
    spans = [_point_edges(float(v), edge_digits) for v in points]
    edges: list[float] = [e for span in spans for e in span]
    if len(rest):
        rest_bins = max(1, round(bins * len(rest) / len(finite)))
        quantiles = np.quantile(rest, np.linspace(0, 1, rest_bins + 1)[1:-1])
        if edge_digits is not None:
            quantiles = _rounded(quantiles, edge_digits)
        edges += [float(q) for q in quantiles
                  if not any(low <= q <= high for low, high in spans)]
    inner = np.unique(np.array(edges, dtype=np.float64))
    counts_per_bin = np.bincount(np.searchsorted(inner, finite, side="right"),
                                 minlength=len(inner) + 1)
    return {"name": name, "kind": "numeric", "edges": [float(e) for e in inner],
            "counts": [int(c) for c in counts_per_bin], "nan": int(np.isnan(values).sum())}


def categorical_profile(name: str, values: np.ndarray,
                        categories: Sequence[float | int | str]) -> dict[str, Any]:
    """One categorical column's profile: its categories and the training rows' count of each."""
    values = np.asarray(values)
    return {"name": name, "kind": "categorical", "categories": list(categories),
            "counts": [int((values == c).sum()) for c in categories]}


def build_profile(features: np.ndarray, names: Sequence[str],
                  categories: dict[str, Sequence[float | int]] | None = None,
                  outputs: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """A whole `reference.json`: `features` is the training rows × features in `names`' order;
    a feature named in `categories` is categorical with those categories; `outputs` are
    profiles of the model's outputs on the same rows (`numeric_profile` or
    `categorical_profile`, named `label` or `probabilities[1]`, say)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[1] != len(names):
        raise ValueError(f"features have shape {list(features.shape)}; expected rows × "
                         f"{len(names)} (one column per name)")
    categories = categories or {}
    profiles = [categorical_profile(name, features[:, j], categories[name])
                if name in categories else numeric_profile(name, features[:, j])
                for j, name in enumerate(names)]
    return {"rows": int(features.shape[0]), "features": profiles, "outputs": list(outputs)}
