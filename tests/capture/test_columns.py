"""Alike requests written together must be byte for byte what one-by-one encoding writes; any
difference between requests (a shape, a dtype, a name, text, no rows) falls back."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.capture.columns import alike_lines, runs
from gateway.capture.records import infer_line
from gateway.protocol.request import InferRequest, RequestedOutput
from tests.conftest import ECHO_TYPES, echo_values


def one_by_one(group: list[tuple], datatypes: dict[str, str]) -> list[bytes]:
    return [infer_line(t, rid, tid, "m", 3, "flag", inputs, datatypes, results, None)
            for t, rid, tid, inputs, results in group]


@pytest.mark.parametrize("datatype", [t for t in ECHO_TYPES if t != "BYTES"])
def test_alike_requests_are_written_byte_for_byte_as_one_by_one(datatype: str) -> None:
    rng = np.random.default_rng(0)
    group = []
    for i, rows in enumerate([1, 3, 1, 2]):
        values = np.resize(echo_values(datatype, 3), (rows, 2))
        scores = rng.random((rows, 2, 3)).astype(np.float32)
        scores[0, 0, 0] = np.nan
        group.append((1796310000.0 + i / 7, f'r"{i}', None if i % 2 else "abc",
                      {"in": values, "aux": rng.random((rows, 1))},
                      {"label": np.arange(rows), "scores": scores}))
    datatypes = {"in": datatype, "aux": "FP64"}
    assert alike_lines("m", 3, "flag", datatypes, group) == one_by_one(group, datatypes)


@pytest.mark.parametrize("change", ["shape", "dtype", "name", "text", "no rows", "width 0"])
def test_requests_not_alike_fall_back(change: str) -> None:
    first = {"x": np.zeros((1, 3), np.float32)}
    second = {"x": np.ones((2, 3), np.float32)}
    if change == "shape":
        second = {"x": np.ones((2, 4), np.float32)}
    elif change == "dtype":
        second = {"x": np.ones((2, 3), np.float64)}
    elif change == "name":
        second = {"y": np.ones((2, 3), np.float32)}
    elif change == "text":
        first = {"x": np.array([["a", "b", "c"]], dtype=object)}
    elif change == "no rows":
        second = {"x": np.ones((0, 3), np.float32)}
    else:
        first, second = {"x": np.zeros((1, 0))}, {"x": np.zeros((2, 0))}
    group = [(0.0, "a", None, first, {"y": np.zeros(1)}),
             (0.0, "b", None, second, {"y": np.zeros(len(second["x"]) if "x" in second
                                                    else 2)})]
    assert alike_lines("m", 1, "split", {"x": "FP32", "y": "FP32"}, group) is None


def test_runs_keep_order_and_set_apart_what_cannot_be_written_together() -> None:
    def infer(version: int, outputs: tuple[RequestedOutput, ...] | None = None,
              model: str = "m") -> tuple[object, ...]:
        request = InferRequest(None, {}, {"x": np.zeros((1, 1))}, {"x": "FP64"}, outputs, False)
        return (0.0, model, 1, "id", None, version, "split", request, {"y": np.zeros(1)})

    feedback = (0.0, "m", 1, "id", None, b"{}")
    records = [infer(1), infer(1), infer(2), feedback, infer(2),
               infer(2, (RequestedOutput("y", None),)), infer(1, model="secret")]
    found = [(alike, [next(i for i, x in enumerate(records) if x is r) for r in run])
             for alike, run in runs(records, {"secret": frozenset({"x"})})]
    assert found == [(True, [0, 1]), (True, [2]), (False, [3]), (True, [4]), (False, [5]),
                     (False, [6])]
