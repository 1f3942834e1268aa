"""`gateway replay`: send a capture's requests to a version and report, per served version, how
often it agrees with what was served, how accurate both were on labelled rows, and how fast it
answered (README "Prediction capture and replay").

The report (`--json` prints it as is):

    {"model": "breast-cancer", "version": 3, "target": "in-process (CPUExecutionProvider)",
     "files": 2, "missing_files": 0, "lines": 10512, "corrupt_lines": 0, "feedback_rows": 500,
     "redacted_requests": 2, "redacted_rows": 4, "redacted_inputs": {"input": 2},
     "failed_requests": 1, "failed_rows": 1, "failures": ["1 x 400 input 'input' has ..."],
     "rows": 10000, "agreeing_rows": 9810, "agreement": 0.9805,
     "served_versions": [{"version": 2, "requests": 10000, "rows": 10000,
        "failed_rows": 1, "redacted_rows": 4, "agreement": 0.9805,
        "disagreeing_rows": 190, "labelled_rows": 500, "measure": "accuracy",
        "served": {"value": 0.95, "low": 0.93, "high": 0.97},
        "replayed": {"value": 0.96, "low": 0.94, "high": 0.97},
        "latency_ms": {"p50": 0.011, "p99": 0.05}}]}

`rows` are the rows replayed and compared (of `requests`); agreement is agreeing rows over every
captured row of the model, so a row whose request failed or was redacted counts against it
(README "Prediction capture and replay"): a replay where most requests failed, or all were
redacted, does not read as agreeing.
A row agrees by the one definition the shadow and the rollout use (gateway.protocol.agreement).

Accuracy is for a label output of classes (integers, booleans or text); a float label output is a
regressor's value, measured by mean absolute error ("measure": "mae"). A version with no label
output has no per-row prediction, so only agreement is reported.
"""

from __future__ import annotations

import gc
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gateway.protocol.agreement import agreeing_rows
from gateway.replay.compare import (
    Estimate,
    accuracy,
    mean_absolute_error,
    predictions,
)
from gateway.replay.reader import (
    Captured,
    CaptureError,
    CaptureFile,
    CaptureStats,
    Redacted,
    decode_batch,
    decode_tensors,
    read_capture,
)
from gateway.replay.targets import ReplayFailed, Target
from gateway.tensors import Tensors

MAX_FAILURES_SHOWN = 5
FAILED, REDACTED = "failed", "redacted"


@dataclass
class _Replayed:
    """What the replayed requests gave, in capture order: per request its served version, id,
    rows and latency; per row its agreement and both predictions."""

    versions: list[int] = field(default_factory=list)
    ids: list[str | None] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    seconds: list[np.ndarray] = field(default_factory=list)
    agree: list[np.ndarray] = field(default_factory=list)
    served: list[np.ndarray] = field(default_factory=list)
    replayed: list[np.ndarray] = field(default_factory=list)
    lost_rows: Counter[tuple[int, str]] = field(default_factory=Counter)
    """Rows not replayed, by served version and why (FAILED or REDACTED)."""
    lost_requests: Counter[str] = field(default_factory=Counter)
    """Requests not replayed, by why."""
    redacted_inputs: Counter[str] = field(default_factory=Counter)
    """Requests by the name of an input they had redacted."""

    def add(self, requests: list[Captured], rows: list[int], seconds: np.ndarray,
            served: Tensors, replayed: Tensors, label: str | None) -> None:
        total = sum(rows)
        self.versions += [request["version"] for request in requests]
        self.ids += [request.get("request_id") for request in requests]
        self.rows += rows
        self.seconds.append(seconds)
        self.agree.append(agreeing_rows(served, replayed, total))
        self.served.append(predictions(served, total, label))
        self.replayed.append(predictions(replayed, total, label))

    def lose(self, request: Captured, why: str) -> None:
        """A request that was not replayed (FAILED, REDACTED): its rows count against
        agreement."""
        self.lost_requests[why] += 1
        self.lost_rows[request["version"], why] += _rows_of(request)
        if why == REDACTED:
            self.redacted_inputs.update({entry["name"] for entry in request["inputs"]
                                         if entry.get("data") is None})


def replay(files: list[CaptureFile], model: str, version: int, target: Target,
           progress: Callable[[int], None]) -> dict[str, Any]:
    """Replay every answered request of `model` in `files` on `target`; the report."""
    stats = CaptureStats()
    done = _Replayed()
    corrupt = [0]
    failures: Counter[str] = Counter()
    collecting = gc.isenabled()
    gc.disable()  # a capture is many small acyclic documents: the collector would rescan them
    try:
        for chunk in read_capture(files, model, stats, progress):
            if chunk and not _merged(chunk, target, done):
                _one_by_one(chunk, target, done, corrupt, failures)
    finally:
        if collecting:
            gc.enable()
    stats.corrupt_lines += corrupt[0]
    if not done.rows and not done.lost_requests:
        if stats.other_models:
            raise CaptureError(f"the capture holds no request of model {model!r}, only of "
                               f"{', '.join(repr(m) for m in sorted(stats.other_models))}")
        raise CaptureError(f"the capture holds no answered request of model {model!r} "
                           f"({stats.lines} lines, {stats.corrupt_lines} unreadable)")
    reports = _version_reports(done, stats.labels, target.label is not None)
    rows = sum(r["rows"] for r in reports)
    agreeing = sum(r["rows"] - r["disagreeing_rows"] for r in reports)
    failed_rows = sum(r["failed_rows"] for r in reports)
    redacted_rows = sum(r["redacted_rows"] for r in reports)
    captured_rows = rows + failed_rows + redacted_rows
    return {
        "model": model, "version": version, "target": target.name, "files": stats.files,
        "missing_files": stats.missing_files, "lines": stats.lines,
        "corrupt_lines": stats.corrupt_lines, "feedback_rows": stats.feedback_rows,
        "redacted_requests": done.lost_requests[REDACTED], "redacted_rows": redacted_rows,
        "redacted_inputs": dict(done.redacted_inputs.most_common()),
        "failed_requests": done.lost_requests[FAILED], "failed_rows": failed_rows,
        "failures": [f"{n} x {why}" for why, n in failures.most_common(MAX_FAILURES_SHOWN)],
        "rows": rows, "agreeing_rows": agreeing,
        "agreement": agreeing / captured_rows if captured_rows else math.nan,
        "served_versions": reports,
    }


def _merged(chunk: list[Captured], target: Target, done: _Replayed) -> bool:
    """Decode, run and compare the chunk as a whole (when its requests are alike and the target
    merges them); False to take it one by one."""
    inputs = decode_batch(chunk, "inputs")
    served = decode_batch(chunk, "outputs") if inputs is not None else None
    if inputs is None or served is None or served[1] != inputs[1]:
        return False
    ran = target.run_merged(chunk, *inputs)
    if ran is None:
        return False
    replayed, seconds = ran
    done.add(chunk, inputs[1], seconds, served[0], replayed, target.label)
    return True


def _one_by_one(chunk: list[Captured], target: Target, done: _Replayed,
                corrupt: list[int], failures: Counter[str]) -> None:
    for request, outcome in zip(chunk, target.run(chunk), strict=True):
        try:
            if isinstance(outcome, ReplayFailed):
                done.lose(request, FAILED)
                failures[str(outcome)] += 1
                continue
            if isinstance(outcome, Redacted):
                done.lose(request, REDACTED)
                continue
            if isinstance(outcome, Exception):
                corrupt[0] += 1
                continue
            replayed, seconds = outcome
            served, _ = decode_tensors(request["outputs"])
            rows = _rows_of(request)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError, Redacted):
            corrupt[0] += 1
            continue
        done.add([request], [rows], np.array([seconds]), served, replayed, target.label)


def _rows_of(request: Captured) -> int:
    """A request's rows: its first input's first dimension (1 without one); a redacted input
    keeps its shape."""
    shape = request["inputs"][0]["shape"] if request["inputs"] else []
    return int(shape[0]) if shape else 1


def _labels_by_row(done: _Replayed, labels: dict[str, list[Any]]) -> np.ndarray:
    """Each request's rows take the labels of its `id` in order; rows without one get None."""
    taken: Counter[str] = Counter()
    by_row: list[Any] = []
    for request_id, rows in zip(done.ids, done.rows, strict=True):
        got: list[Any] = []
        if request_id is not None and request_id in labels:
            start = taken[request_id]
            got = labels[request_id][start:start + rows]
            taken[request_id] += rows
        by_row += got
        by_row += [None] * (rows - len(got))
    return np.array(by_row, dtype=object)


def _version_reports(done: _Replayed, labels: dict[str, list[Any]],
                     has_label: bool) -> list[dict[str, Any]]:
    versions = np.array(done.versions, dtype=np.int64)
    row_versions = np.repeat(versions, done.rows)
    seconds = np.concatenate(done.seconds) if done.seconds else np.zeros(0)
    agree = np.concatenate(done.agree) if done.agree else np.zeros(0, dtype=bool)
    served = np.concatenate(done.served) if done.served else np.zeros(0, dtype=object)
    replayed = np.concatenate(done.replayed) if done.replayed else np.zeros(0, dtype=object)
    truth = _labels_by_row(done, labels)
    rows = np.array(done.rows, dtype=np.int64)
    reports = []
    for v in sorted({*done.versions, *(version for version, _ in done.lost_rows)}):
        report = _version_report(int(v), versions == v, row_versions == v, rows, seconds,
                                 agree, served, replayed, truth, has_label)
        failed, redacted = done.lost_rows[v, FAILED], done.lost_rows[v, REDACTED]
        report["failed_rows"], report["redacted_rows"] = failed, redacted
        agreeing = report["rows"] - report["disagreeing_rows"]
        total = report["rows"] + failed + redacted
        report["agreement"] = agreeing / total if total else math.nan
        reports.append(report)
    return reports


def _version_report(version: int, requests: np.ndarray, mask: np.ndarray, rows: np.ndarray,
                    seconds: np.ndarray, agree: np.ndarray, served: np.ndarray,
                    replayed: np.ndarray, truth: np.ndarray,
                    has_label: bool) -> dict[str, Any]:
    latencies_ms = seconds[requests] * 1e3
    mine = agree[mask]
    report: dict[str, Any] = {
        "version": version, "requests": int(np.count_nonzero(requests)),
        "rows": int(rows[requests].sum()), "failed_rows": 0, "redacted_rows": 0,
        "agreement": math.nan, "disagreeing_rows": int(np.count_nonzero(~mine)),
        "labelled_rows": 0, "measure": None, "served": None, "replayed": None,
        "latency_ms": ({"p50": float(np.percentile(latencies_ms, 50)),
                        "p99": float(np.percentile(latencies_ms, 99))} if len(latencies_ms)
                       else {"p50": math.nan, "p99": math.nan}),
    }
    # Rows with a label, and a prediction per row to score against it.
    scored = mask & (truth != None) & (served != None)  # noqa: E711 - elementwise
    report["labelled_rows"] = int(np.count_nonzero(scored))
    if not has_label or not scored.any():
        return report
    classes = np.array(served[scored].tolist()).dtype.kind != "f"
    measure = accuracy if classes else mean_absolute_error
    report["measure"] = "accuracy" if classes else "mae"
    report["served"] = _estimate(measure(served[scored], truth[scored]))
    report["replayed"] = _estimate(measure(replayed[scored], truth[scored]))
    return report


def _estimate(estimate: Estimate) -> dict[str, float]:
    return {"value": estimate.value, "low": estimate.low, "high": estimate.high}
