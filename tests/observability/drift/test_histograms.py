from __future__ import annotations

import numpy as np

from gateway.observability.drift.histograms import Binner, column_from_profile


def numeric(name: str, edges: list[float]) -> dict[str, object]:
    return {"name": name, "kind": "numeric", "edges": edges, "counts": [1] * (len(edges) + 1)}


def test_numeric_columns_of_different_bin_counts_match_searchsorted() -> None:
    profiles = [numeric("a", [0.0, 1.0, 2.0]), numeric("b", [-5.0, 5.0]),
                numeric("c", [0.5, 0.5, 3.0, 4.0])]  # duplicate edges, as deciles can be
    binner = Binner([column_from_profile(p) for p in profiles])
    values = np.random.default_rng(0).uniform(-8, 8, (500, 3))
    values[::7, 0] = 1.0  # values on an edge fall in the bin above it
    counts = binner.count(values)
    expected = np.concatenate([
        np.bincount(np.searchsorted(np.array(p["edges"]), values[:, i], side="right"),
                    minlength=len(p["edges"]) + 1)  # type: ignore[arg-type]
        for i, p in enumerate(profiles)])
    np.testing.assert_array_equal(counts.bins, expected)
    assert counts.rows == 500


def test_nan_and_unseen_categories_are_counted_apart() -> None:
    binner = Binner([column_from_profile(numeric("x", [0.0])),
                     column_from_profile({"name": "colour", "kind": "categorical",
                                          "categories": [3, 1, 2], "counts": [1, 1, 1]})])
    values = np.array([[-1.0, 1], [np.nan, 2], [1.0, 7], [2.0, np.nan], [0.0, 3]])
    counts = binner.count(values)
    # x: bins [<0, >=0]; colour: bins in the profile's order 3, 1, 2.
    np.testing.assert_array_equal(counts.bins, [1, 3, 1, 1, 1])
    np.testing.assert_array_equal(counts.nan, [1, 1])
    np.testing.assert_array_equal(counts.unseen, [0, 1])


def test_infinities_land_in_the_end_bins() -> None:
    binner = Binner([column_from_profile(numeric("x", [0.0, 1.0]))])
    counts = binner.count(np.array([[-np.inf], [np.inf], [0.5]]))
    np.testing.assert_array_equal(counts.bins, [1, 1, 1])
    assert counts.nan[0] == 0


def test_huge_and_tiny_values_keep_their_bins() -> None:
    """Values far apart in scale, in columns binned at once, each land in their own bin: one
    comparison per edge position against the edge matrix moves none across an edge."""
    binner = Binner([column_from_profile(numeric("a", [1e-9, 2e-9])),
                     column_from_profile(numeric("b", [1e6, 1e9]))])
    values = np.array([[1.5e-9, 1e12], [0.0, 1e6], [3e-9, 5e8], [1e-9, -1e12]])
    np.testing.assert_array_equal(binner.count(values).bins, [1, 2, 1, 1, 2, 1])
