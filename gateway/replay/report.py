"""`gateway replay`: send a capture's requests to a version and report, per served version, how
often it agrees with what was served, how accurate both were on labelled rows, and how fast it
answered (SPEC 10).

The report (`--json` prints it as is):

    {"model": "breast-cancer", "version": 3, "target": "in-process (CPUExecutionProvider)",
     "files": 2, "lines": 10512, "corrupt_lines": 0, "feedback_rows": 500,
     "redacted_requests": 0, "failed_requests": 0, "failures": [],
     "rows": 10000, "agreement": 0.981,
     "served_versions": [{"version": 2, "requests": 10000, "rows": 10000, "agreement": 0.981,
        "disagreeing_rows": 190, "labelled_rows": 500, "measure": "accuracy",
        "served": {"value": 0.95, "low": 0.93, "high": 0.97},
        "replayed": {"value": 0.96, "low": 0.94, "high": 0.97},
        "latency_ms": {"p50": 0.011, "p99": 0.05}}]}

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
from pathlib import Path
from typing import Any

import numpy as np

from gateway.replay.compare import (
    Estimate,
    accuracy,
    agreeing_rows,
    mean_absolute_error,
    predictions,
)
from gateway.replay.reader import (
    Captured,
    CaptureError,
    CaptureStats,
    Redacted,
    decode_batch,
    decode_tensors,
    read_capture,
)
from gateway.replay.targets import ReplayFailed, Target
from gateway.tensors import Tensors

MAX_FAILURES_SHOWN = 5


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

    def add(self, requests: list[Captured], rows: list[int], seconds: np.ndarray,
            served: Tensors, replayed: Tensors, label: str | None) -> None:
        total = sum(rows)
        self.versions += [request["version"] for request in requests]
        self.ids += [request.get("request_id") for request in requests]
        self.rows += rows
        self.seconds.append(seconds)
        self.agree.append(agreeing_rows(served, replayed, total, label))
        self.served.append(predictions(served, total, label))
        self.replayed.append(predictions(replayed, total, label))


def replay(files: list[Path], model: str, version: int, target: Target,
           progress: Callable[[int], None]) -> dict[str, Any]:
    """Replay every answered request of `model` in `files` on `target`; the report."""
    stats = CaptureStats()
    done = _Replayed()
    skipped: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    collecting = gc.isenabled()
    gc.disable()  # a capture is many small acyclic documents: the collector would rescan them
    try:
        for chunk in read_capture(files, model, stats, progress):
            if chunk and not _merged(chunk, target, done):
                _one_by_one(chunk, target, done, skipped, failures)
    finally:
        if collecting:
            gc.enable()
    stats.corrupt_lines += skipped["corrupt"]
    if not done.rows and not failures and not skipped["redacted"]:
        if stats.other_models:
            raise CaptureError(f"the capture holds no request of model {model!r}, only of "
                               f"{', '.join(repr(m) for m in sorted(stats.other_models))}")
        raise CaptureError(f"the capture holds no answered request of model {model!r} "
                           f"({stats.lines} lines, {stats.corrupt_lines} unreadable)")
    reports = _version_reports(done, stats.labels, target.label is not None)
    rows = sum(r["rows"] for r in reports)
    agreeing = sum(r["rows"] - r["disagreeing_rows"] for r in reports)
    return {
        "model": model, "version": version, "target": target.name, "files": stats.files,
        "lines": stats.lines, "corrupt_lines": stats.corrupt_lines,
        "feedback_rows": stats.feedback_rows, "redacted_requests": skipped["redacted"],
        "failed_requests": sum(failures.values()),
        "failures": [f"{n} x {why}" for why, n in failures.most_common(MAX_FAILURES_SHOWN)],
        "rows": rows, "agreement": agreeing / rows if rows else math.nan,
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
                skipped: Counter[str], failures: Counter[str]) -> None:
    for request, outcome in zip(chunk, target.run(chunk), strict=True):
        if isinstance(outcome, ReplayFailed):
            failures[str(outcome)] += 1
            continue
        if isinstance(outcome, Exception):
            skipped["redacted" if isinstance(outcome, Redacted) else "corrupt"] += 1
            continue
        replayed, seconds = outcome
        try:
            served, _ = decode_tensors(request["outputs"])
            shape = request["inputs"][0]["shape"] if request["inputs"] else []
            rows = int(shape[0]) if shape else 1
        except (ValueError, KeyError, TypeError, IndexError, Redacted):
            skipped["corrupt"] += 1
            continue
        done.add([request], [rows], np.array([seconds]), served, replayed, target.label)


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
    if not done.rows:
        return []
    versions = np.array(done.versions)
    row_versions = np.repeat(versions, done.rows)
    seconds = np.concatenate(done.seconds)
    agree = np.concatenate(done.agree)
    served = np.concatenate(done.served)
    replayed = np.concatenate(done.replayed)
    truth = _labels_by_row(done, labels)
    rows = np.array(done.rows)
    return [_version_report(int(v), versions == v, row_versions == v, rows, seconds, agree,
                            served, replayed, truth, has_label)
            for v in np.unique(versions)]


def _version_report(version: int, requests: np.ndarray, mask: np.ndarray, rows: np.ndarray,
                    seconds: np.ndarray, agree: np.ndarray, served: np.ndarray,
                    replayed: np.ndarray, truth: np.ndarray,
                    has_label: bool) -> dict[str, Any]:
    latencies_ms = seconds[requests] * 1e3
    mine = agree[mask]
    report: dict[str, Any] = {
        "version": version, "requests": int(np.count_nonzero(requests)),
        "rows": int(rows[requests].sum()),
        "agreement": float(mine.mean()) if len(mine) else math.nan,
        "disagreeing_rows": int(np.count_nonzero(~mine)),
        "labelled_rows": 0, "measure": None, "served": None, "replayed": None,
        "latency_ms": {"p50": float(np.percentile(latencies_ms, 50)),
                       "p99": float(np.percentile(latencies_ms, 99))},
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


def table(report: dict[str, Any]) -> str:
    """The report for a terminal: a line of totals, then one row per served version."""
    lines = [f"{report['model']}: {report['rows']} rows replayed on version {report['version']}"
             f" ({report['target']}); agreement {report['agreement']:.4%}",
             f"  {report['files']} files, {report['lines']} lines, {report['corrupt_lines']} "
             f"unreadable, {report['redacted_requests']} redacted and "
             f"{report['failed_requests']} failed requests, {report['feedback_rows']} labels"]
    lines += [f"  failed: {why}" for why in report["failures"]]
    v = report["version"]
    rows = [["served", "requests", "rows", "agreement", "labelled", "served version",
             f"version {v}", f"v{v} p50 ms", f"v{v} p99 ms"]]
    for r in report["served_versions"]:
        rows.append([str(r["version"]), str(r["requests"]), str(r["rows"]),
                     f"{r['agreement']:.4%}", str(r["labelled_rows"]),
                     _shown(r["measure"], r["served"]), _shown(r["measure"], r["replayed"]),
                     f"{r['latency_ms']['p50']:.3f}", f"{r['latency_ms']['p99']:.3f}"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
              for row in rows]
    return "\n".join(lines)


def _shown(measure: str | None, estimate: dict[str, float] | None) -> str:
    if measure is None or estimate is None:
        return "-"
    return (f"{measure} {estimate['value']:.4g} "
            f"[{estimate['low']:.3g}, {estimate['high']:.3g}]")
