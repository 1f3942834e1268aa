"""The capture line format: every datatype written as V2 JSON tensors with flat data, times in
UTC, file names that sort by time, redaction, feedback as sent."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from gateway.capture.records import feedback_line, file_name, infer_line, utc_text
from gateway.protocol.request import RequestedOutput
from tests.conftest import ECHO_TYPES, echo_values


def test_times_are_utc_with_microseconds() -> None:
    assert utc_text(0.0) == "1970-01-01T00:00:00.000000Z"
    assert utc_text(1796310000.25) == "2026-12-03T15:00:00.250000Z"
    assert utc_text(1796310000.999999) == "2026-12-03T15:00:00.999999Z"
    assert utc_text(1796310001.0) == "2026-12-03T15:00:01.000000Z"  # the cached second moves


def test_file_names_sort_by_time_and_stay_short() -> None:
    names = [file_name("breast-cancer", t) for t in (1796310000.0, 1796310000.5, 1796313600.0)]
    assert names == sorted(names)
    assert names[0] == "capture-breast-cancer-20261203T150000.000000Z.jsonl"
    long = file_name("ü" * 128, 0.0)
    assert len(long.encode()) < 255 and long != file_name("ü" * 127 + "x", 0.0)


@pytest.mark.parametrize("datatype", ECHO_TYPES)
def test_every_datatype_reads_back_as_sent(datatype: str) -> None:
    values = echo_values(datatype)
    if datatype == "BYTES":
        values[0, 1] = b"\xff not utf-8"
    results = {"out": values.copy()}
    line = infer_line(0.0, "r1", "abc", "echo", 1, "pinned", {"in": values}, {"in": datatype},
                      results, None)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    record = orjson.loads(line)
    (tensor,) = record["inputs"]
    assert (tensor["name"], tensor["datatype"], tensor["shape"]) == ("in", datatype, [3, 2])
    assert record["outputs"][0]["datatype"] == datatype
    if datatype == "BYTES":
        assert tensor["data"][:2] == ["r0-ä", "\ufffd not utf-8"]
    else:
        np.testing.assert_array_equal(np.array(tensor["data"], dtype=values.dtype),
                                      values.reshape(-1))


def test_nan_is_written_null_and_a_view_is_written_in_order() -> None:
    values = np.array([[1.5, np.nan], [np.inf, 2.0]], dtype=np.float32)
    record = orjson.loads(infer_line(0.0, None, None, "m", 1, "split", {"x": values.T},
                                     {"x": "FP32"}, {}, None))
    assert record["inputs"][0]["data"] == [1.5, None, None, 2.0]  # transposed: C order
    big_endian = np.arange(4, dtype=">i4").reshape(2, 2)
    record = orjson.loads(infer_line(0.0, None, None, "m", 1, "split", {"x": big_endian},
                                     {"x": "INT32"}, {}, None))
    assert record["inputs"][0]["data"] == [0, 1, 2, 3]


def test_only_the_outputs_asked_for_and_redacted_inputs_without_values() -> None:
    inputs = {"card": np.array([[4111.0]]), "amount": np.array([[12.5]])}
    results = {"label": np.array([1]), "probabilities": np.array([[0.2, 0.8]])}
    record = orjson.loads(infer_line(
        0.0, "r", None, "fraud", 2, "flag", inputs, {"card": "FP64", "amount": "FP64"},
        results, (RequestedOutput("label", None),), redact=frozenset({"card"})))
    assert record["inputs"][0] == {"name": "card", "datatype": "FP64", "shape": [1, 1],
                                   "data": None, "parameters": {"redacted": True}}
    assert record["inputs"][1]["data"] == [12.5]
    assert [o["name"] for o in record["outputs"]] == ["label"]


def test_feedback_lines_keep_the_items_as_sent() -> None:
    body = b'{"feedback": [{"label": 1, "version": 2, "prediction": 0, "id": "r1"}]}'
    record = orjson.loads(feedback_line(0.0, "h1", None, "m", body))
    assert record == {"kind": "feedback", "time": "1970-01-01T00:00:00.000000Z",
                      "request_id": "h1", "trace_id": None, "model": "m",
                      "feedback": [{"label": 1, "version": 2, "prediction": 0, "id": "r1"}]}
