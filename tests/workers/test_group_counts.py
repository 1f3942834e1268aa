"""The group's windows are the sum of its workers' (gateway.workers.group): a report made from
one worker's window plus its peers' published counts is the report of one window that took
every row, statistics and all; feedback windows add up the same way."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
from sklearn.datasets import load_breast_cancer

from gateway.observability.drift import DriftMonitor
from gateway.observability.drift.window import ValueWindow
from tests.conftest import MODEL, MODELS

REFERENCE = MODELS / MODEL / "1" / "reference.json"


def outputs(rows: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(MODELS / MODEL / "1" / "model.onnx"))
    label, probabilities = session.run(None, {"input": rows.astype(np.float32)})
    return {"label": label, "probabilities": probabilities}


def test_a_report_with_the_peers_counts_is_the_report_of_every_row() -> None:
    data = load_breast_cancer().data
    data = np.concatenate([data[:300], data[300:] * 1.3])  # some drift for the tests to see
    whole = DriftMonitor.from_reference_file(REFERENCE, window_rows=1000)
    whole.ingest(data, outputs(data))
    workers = [DriftMonitor.from_reference_file(REFERENCE, window_rows=1000) for _ in range(3)]
    for i, worker in enumerate(workers):  # rows dealt out as a kernel might: unevenly
        mine = data[i::3] if i else data[0::3][:50]
        worker.ingest(mine, outputs(mine))
    workers[0].ingest(data[0::3][50:], outputs(data[0::3][50:]))
    # What a worker publishes goes through JSON, as the group's files do.
    published = [json.loads(json.dumps([[f[0].tolist(), f[1]],
                                        None if o is None else [o[0].tolist(), o[1]]]))
                 for f, o in (w.counts() for w in workers[1:])]
    peers = [((np.asarray(f[0]), f[1]), None if o is None else (np.asarray(o[0]), o[1]))
             for f, o in published]
    assert workers[0].report(peers=peers) == whole.report()
    assert workers[0].report()["window_rows"] < len(data)  # alone, it is not the group's


def test_live_accuracy_of_the_group_is_the_mean_over_every_workers_window() -> None:
    scores = np.random.default_rng(3).integers(0, 2, 700).astype(np.float64)
    whole = ValueWindow(1000)
    whole.add(scores)
    mine, peer = ValueWindow(1000), ValueWindow(1000)
    mine.add(scores[:200])
    peer.add(scores[200:])
    assert mine.mean([peer.sum_rows()]) == whole.mean()
    assert mine.mean() == scores[:200].mean()
