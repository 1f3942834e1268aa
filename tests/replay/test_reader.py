"""Reading captures: chunks of one model's requests, labels by id, lines that are not records,
and the batch decoder that must decode exactly as the one-by-one decoder does."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import orjson
import pytest

from gateway.capture.records import infer_line
from gateway.replay.reader import (
    CaptureError,
    CaptureStats,
    Redacted,
    capture_files,
    decode_batch,
    decode_tensors,
    read_capture,
)
from tests.conftest import ECHO_TYPES, echo_values


def record(request_id: str, rows: int, model: str = "m", version: int = 1) -> bytes:
    x = np.arange(rows * 3, dtype=np.float32).reshape(rows, 3) + len(request_id)
    return infer_line(0.0, request_id, None, model, version, "split", {"x": x}, {"x": "FP32"},
                      {"label": np.arange(rows), "p": x[:, :2].astype(np.float64)}, None)


def test_batch_decoding_equals_one_by_one() -> None:
    docs = [orjson.loads(record(f"r{i}", rows)) for i, rows in enumerate([1, 3, 2, 1])]
    for field in ("inputs", "outputs"):
        batch, rows = decode_batch(docs, field) or ({}, [])
        assert rows == [1, 3, 2, 1]
        one_by_one = [decode_tensors(doc[field])[0] for doc in docs]
        for name, array in batch.items():
            expected = np.concatenate([tensors[name] for tensors in one_by_one])
            np.testing.assert_array_equal(array, expected)
            assert array.dtype == expected.dtype


@pytest.mark.parametrize("datatype", [t for t in ECHO_TYPES if t != "BYTES"])
def test_every_datatype_decodes_in_a_batch_as_one_by_one_and_as_sent(datatype: str) -> None:
    """NaN (written null) reads back as NaN, FP16 as FP16, INT64's and UINT64's extremes
    exactly, by the JSON tensor codec both ways."""
    docs = []
    for i, rows in enumerate([1, 3, 2]):
        values = np.resize(echo_values(datatype, 3), (rows, 2))
        if values.dtype.kind == "f":
            values[0, i % 2] = np.nan
        docs.append(orjson.loads(infer_line(0.0, f"r{i}", None, "m", 1, "split", {"x": values},
                                            {"x": datatype}, {"y": values}, None)))
    batch, rows = decode_batch(docs, "inputs") or ({}, [])
    assert rows == [1, 3, 2]
    one_by_one = [decode_tensors(doc["inputs"]) for doc in docs]
    assert all(datatypes == {"x": datatype} for _, datatypes in one_by_one)
    expected = np.concatenate([np.resize(echo_values(datatype, 3), (n, 2)) for n in rows])
    if expected.dtype.kind == "f":
        expected[[0, 1, 4], [0, 1, 0]] = np.nan
    for got in (batch["x"], np.concatenate([tensors["x"] for tensors, _ in one_by_one])):
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(("datatype", "data"), [("INT64", [1.5, 2.0, 3.0]),
                                                ("FP32", ["1", 2.0, 3.0]),
                                                ("FP16", [1.0, 2.0, 7e4])])
def test_a_record_a_request_would_be_refused_for_is_not_cast(datatype: str,
                                                             data: list[object]) -> None:
    """The request path's checks (gateway.protocol.json_tensor): the old decoder cast 1.5 to 1,
    "1" to 1.0 and 70000 to FP16's infinity."""
    docs = [orjson.loads(record("a", 1)), orjson.loads(record("b", 1))]
    for doc in docs:
        doc["inputs"][0]["datatype"] = datatype
    docs[0]["inputs"][0]["data"] = [1, 2, 3]
    docs[1]["inputs"][0]["data"] = data
    assert decode_tensors(docs[0]["inputs"])[0]["x"].tolist() == [[1, 2, 3]]
    assert decode_batch(docs, "inputs") is None
    assert decode_batch(docs[:1] * 2, "inputs") is not None
    with pytest.raises(ValueError, match=f"{datatype} data must be|outside the {datatype}"):
        decode_tensors(docs[1]["inputs"])


def test_unlike_or_redacted_requests_are_decoded_one_by_one() -> None:
    docs = [orjson.loads(record("a", 1)), orjson.loads(record("b", 1))]
    docs[1]["inputs"][0]["shape"] = [1, 3, 1]
    assert decode_batch(docs, "inputs") is None
    docs[1] = orjson.loads(record("b", 1))
    docs[1]["inputs"][0]["data"] = None
    assert decode_batch(docs, "inputs") is None
    with pytest.raises(Redacted):
        decode_tensors(docs[1]["inputs"])
    docs[1]["inputs"][0]["data"] = [1.0, 2.0]  # fewer values than its shape
    assert decode_batch(docs, "inputs") is None
    with pytest.raises(ValueError):
        decode_tensors(docs[1]["inputs"])


def test_chunks_hold_one_models_requests_and_labels_join_by_id(tmp_path: Path) -> None:
    feedback = orjson.dumps({"kind": "feedback", "model": "m", "feedback": [
        {"label": 1, "id": "a"}, {"label": 0, "id": "a"}, {"label": 1}]}) + b"\n"
    lines = [record("a", 2), record("z", 1, model="other"), feedback, b"{broken\n",
             b"[1, 2]\n", record("b", 1)]
    (tmp_path / "capture-m-20261203T000000.000000Z.jsonl.gz").write_bytes(
        gzip.compress(b"".join(lines)))
    (tmp_path / "unrelated.txt").write_text("skipped")
    files = capture_files(tmp_path)
    assert [f.name for f in files] == ["capture-m-20261203T000000.000000Z.jsonl.gz"]
    stats = CaptureStats()
    chunks = list(read_capture(files, "m", stats, lambda n: None))
    assert [doc["request_id"] for chunk in chunks for doc in chunk] == ["a", "b"]
    assert (stats.lines, stats.corrupt_lines, stats.feedback_rows) == (6, 2, 3)
    assert stats.other_models == {"other": 1}
    assert stats.labels == {"a": [1, 0]}


def test_a_gzip_file_cut_short_keeps_what_came_before(tmp_path: Path) -> None:
    data = gzip.compress(b"".join(record(f"r{i}", 1) for i in range(200)))
    (tmp_path / "capture-m-20261203T000000.000000Z.jsonl.gz").write_bytes(data[:len(data) // 2])
    stats = CaptureStats()
    docs = [d for c in read_capture(capture_files(tmp_path), "m", stats, lambda n: None)
            for d in c]
    assert 0 < len(docs) < 200 and stats.corrupt_lines >= 1


def test_a_folder_without_captures_says_so(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="holds no capture files"):
        capture_files(tmp_path)
    with pytest.raises(CaptureError, match="is not a folder"):
        capture_files(tmp_path / "missing")


def test_a_file_still_being_written_is_read_as_it_stood_at_the_start(tmp_path: Path) -> None:
    """The snapshot (SPEC 10): lines appended after the start, a line the writer was in the
    middle of, and files made after the start are not read; a file cut short is."""
    live = tmp_path / "capture-m-20261203T000000.000000Z.jsonl"
    whole = b"".join(record(f"r{i}", 1) for i in range(3))
    half = record("r3", 1)[:40]
    live.write_bytes(whole + half)
    files = capture_files(tmp_path)
    with open(live, "ab") as writer:  # the gateway goes on writing, as replay reads
        writer.write(record("r3", 1)[40:] + record("r4", 1))
    (tmp_path / "capture-m-20261203T010000.000000Z.jsonl").write_bytes(record("new", 1))
    stats = CaptureStats()
    docs = [d for c in read_capture(files, "m", stats, lambda n: None) for d in c]
    assert [d["request_id"] for d in docs] == ["r0", "r1", "r2"]
    assert (stats.files, stats.lines, stats.corrupt_lines) == (1, 3, 0)
    # Not growing any more, the same half line is a file cut short: read, and unreadable.
    live.write_bytes(whole + half)
    stats = CaptureStats()
    docs = [d for c in read_capture(capture_files(tmp_path)[:1], "m", stats, lambda n: None)
            for d in c]
    assert len(docs) == 3 and stats.corrupt_lines == 1


def test_a_file_gzipped_or_deleted_after_the_start_is_read_from_its_gzip_or_counted(
        tmp_path: Path) -> None:
    live = tmp_path / "capture-m-20261203T000000.000000Z.jsonl"
    live.write_bytes(record("a", 1) + record("b", 2))
    old = tmp_path / "capture-m-20261202T000000.000000Z.jsonl.gz"
    old.write_bytes(gzip.compress(record("old", 1)))
    files = capture_files(tmp_path)
    # The capture closes the file (more lines first), gzips it and deletes the plain one;
    # retention deletes the oldest.
    gzipped = live.with_name(live.name + ".gz")
    gzipped.write_bytes(gzip.compress(live.read_bytes() + record("c", 1)))
    live.unlink()
    old.unlink()
    stats = CaptureStats()
    docs = [d for c in read_capture(files, "m", stats, lambda n: None) for d in c]
    assert [d["request_id"] for d in docs] == ["a", "b"]
    assert (stats.files, stats.missing_files) == (1, 1)


def test_a_file_both_plain_and_gzipped_is_read_once(tmp_path: Path) -> None:
    """Between the gzip's rename and the plain file's deletion both are there: one snapshot."""
    plain = tmp_path / "capture-m-20261203T000000.000000Z.jsonl"
    plain.write_bytes(record("a", 1))
    plain.with_name(plain.name + ".gz").write_bytes(gzip.compress(record("a", 1)))
    assert [f.name for f in capture_files(tmp_path)] == [plain.name + ".gz"]
