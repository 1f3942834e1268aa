"""The data plane in-process, with real onnxruntime sessions and no server or socket: decisions
by pin, flag and split, serving, validation, drift and shadows; and `infer(call)`, the one door
both transports use: it looks up, has the call decoded and encoded, captures, counts and traces
every outcome."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import orjson
import pytest

from gateway.capture.service import NoCapture
from gateway.errors import BadRequest, NotFound
from gateway.inference import Answer, InferCall, InferencePipeline
from gateway.lifecycle import Lifecycle
from gateway.observability.drift.service import DriftService
from gateway.observability.metrics import GatewayMetrics
from gateway.observability.shadow import ShadowRunner, ShadowVersion
from gateway.observability.tracing import NO_TRACE
from gateway.protocol.request import InferRequest, decode_request
from gateway.routing.decide import FLAG, PINNED, SPLIT
from gateway.routing.live import LivePolicy
from gateway.routing.policy import needed_versions, parse_policy
from gateway.runtime.registry import Registry
from gateway.runtime.repository import scan_repository
from gateway.settings import DriftSettings, Settings
from gateway.tensors import Tensors
from tests.conftest import MODEL, MODELS, sample_rows

POLICY = """
models:
  breast-cancer:
    traffic: [{version: 1, weight: 100}, {version: 2, weight: 0}]
    flags: [{name: beta, header: x-beta, values: ["1"], version: 2}]
    shadow: [{version: 3, percent: 100}]
"""


def infer_request(rows: np.ndarray) -> InferRequest:
    body = orjson.dumps({"inputs": [{"name": "input", "shape": list(rows.shape),
                                     "datatype": "FP32", "data": rows.tolist()}]})
    return decode_request(body, None, 1 << 20)


def direct(version: int, rows: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(MODELS / MODEL / str(version) / "model.onnx"))
    return np.asarray(session.run(["label"], {"input": rows})[0])


def test_decide_and_serve_in_process(tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = Settings(model_repository=MODELS, drift=DriftSettings(report_interval_s=0.05))
        repository = scan_repository(MODELS)
        policy = parse_policy(POLICY, repository)
        registry = Registry(repository)
        lifecycle = Lifecycle(settings, registry)
        lifecycle.load(needed_versions(policy, repository))
        lifecycle.start_batchers()
        live = LivePolicy(tmp_path / "routing.yaml", MODELS, policy, lifecycle, GatewayMetrics())
        drift = DriftService(settings.drift)
        drift.sync({(d.entry.model, d.entry.version): (d.entry.reference_file, d.session.inputs)
                    for d in registry.all() if d.session is not None})
        mirrored: list[tuple[int, str]] = []

        def target(model: str, version: int) -> ShadowVersion:
            session = registry.versions_of(model)[version].session
            assert session is not None
            return ShadowVersion(session.run, "label", session.batchable)

        shadow = ShadowRunner(target, lambda m, v, result, n: mirrored.extend([(v, result)] * n))
        shadow.start()
        drift.start()
        pipeline = InferencePipeline(registry, settings, live, drift, shadow, GatewayMetrics(),
                                     NoCapture())
        rows = sample_rows(3)
        try:
            assert pipeline.input_names(MODEL) == {"input": frozenset({"FP32"})}
            flagged = pipeline.decide(MODEL, None, {"x-beta": "1"}, {})
            assert (flagged.version, flagged.route, flagged.version_label) == (2, FLAG, "2")
            served = await pipeline.serve(flagged, infer_request(rows), NO_TRACE)
            np.testing.assert_array_equal(served.results["label"], direct(2, rows))
            split = pipeline.decide(MODEL, None, {}, {})
            assert (split.version, split.route) == (1, SPLIT)
            await pipeline.serve(split, infer_request(rows), NO_TRACE)
            pinned = pipeline.decide(MODEL, 3, {}, {})
            assert (pinned.version, pinned.route) == (3, PINNED)
            served = await pipeline.serve(pinned, infer_request(rows), NO_TRACE)
            np.testing.assert_array_equal(served.results["label"], direct(3, rows))
            # A pinned number the repository does not have: no metric series, a 404.
            missing = pipeline.decide(MODEL, 9, {}, {})
            assert missing.version_label == "_none"
            with pytest.raises(NotFound, match="has no version 9"):
                await pipeline.serve(missing, infer_request(rows), NO_TRACE)
            with pytest.raises(NotFound, match="unknown model"):
                pipeline.decide("nope", None, {}, {})
            # Validation refuses before the batcher; the version is held no longer.
            with pytest.raises(BadRequest, match="has shape"):
                await pipeline.serve(split, infer_request(rows[:, :5]), NO_TRACE)
            assert registry.inflight_by_model() == {MODEL: 0}
            # Shadows: the two routed requests were mirrored to version 3, the pinned one not.
            await _until(lambda: len(mirrored) == 2)
            assert [v for v, _ in mirrored] == [3, 3]
            # Drift saw every served row, by the version that served it.
            await _until(lambda: drift_rows(drift, 1) == 3 and drift_rows(drift, 2) == 3)
        finally:
            await shadow.stop()
            await drift.stop()
            await lifecycle.stop()

    asyncio.run(scenario())


def drift_rows(drift: DriftService, version: int) -> int:
    tracked = {(t.model, t.version): t for t in drift.tracked_reports()}[(MODEL, version)]
    return 0 if tracked.report is None else int(tracked.report["window_rows"])


async def _until(condition: object, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.02)



class Kept(NoCapture):
    """A capture that keeps what it is given, to read back."""

    def __init__(self) -> None:
        self.records: list[tuple[str, int, str, str | None, int]] = []

    def infer(self, model: str, version: int, route: str, request: InferRequest,
              results: Tensors, header_id: str | None, trace_id: str | None,
              body_bytes: int) -> None:
        self.records.append((model, version, route, header_id, body_bytes))


def test_infer_is_the_whole_request_counted_captured_and_traced_once(tmp_path: Path) -> None:
    """Every way a call ends is counted under gateway_requests_total's labels: served (with its
    capture record), refused before the body is read (decode never called), refused by decode,
    refused by validation, and cancelled (499)."""
    async def scenario() -> None:
        settings = Settings(model_repository=MODELS)
        repository = scan_repository(MODELS)
        policy = parse_policy(POLICY, repository)
        registry = Registry(repository)
        lifecycle = Lifecycle(settings, registry)
        lifecycle.load(needed_versions(policy, repository))
        lifecycle.start_batchers()
        metrics = GatewayMetrics()
        live = LivePolicy(tmp_path / "routing.yaml", MODELS, policy, lifecycle, metrics)
        drift = DriftService(settings.drift)
        shadow = ShadowRunner(lambda m, v: None, lambda m, v, result, n: None)
        kept = Kept()
        pipeline = InferencePipeline(registry, settings, live, drift, shadow, metrics, kept)
        rows = sample_rows(4)
        decoded: list[frozenset[str] | None] = []

        def call(model: str, pinned: str | None, headers: dict[str, str],
                 request: InferRequest | None = None,
                 wait: asyncio.Event | None = None) -> InferCall[Answer]:
            async def decode(names: frozenset[str] | None) -> tuple[InferRequest, int]:
                decoded.append(names)
                if wait is not None:
                    await wait.wait()
                return request or infer_request(rows), 123
            return InferCall(model, pinned, headers, "req-1", NO_TRACE, time.perf_counter(),
                             decode, lambda answer: answer)

        def count(model: str, version: str, route: str, code: str) -> float:
            value = metrics.registry.get_sample_value("gateway_requests_total", {
                "model": model, "version": version, "route": route, "code": code})
            return value or 0.0

        try:
            answer = await pipeline.infer(call(MODEL, None, {"x-beta": "1"}))
            assert (answer.version_label, answer.route) == ("2", FLAG)
            np.testing.assert_array_equal(answer.results["label"], direct(2, rows))
            answer = await pipeline.infer(call(MODEL, "3", {}))
            assert (answer.version_label, answer.route) == ("3", PINNED)
            assert decoded == [{"input": frozenset({"FP32"})}] * 2
            assert kept.records == [(MODEL, 2, FLAG, "req-1", 123), (MODEL, 3, PINNED, "req-1",
                                                                     123)]
            with pytest.raises(NotFound, match="unknown model"):
                await pipeline.infer(call("nope", None, {}))
            with pytest.raises(NotFound, match="has no version 9"):
                await pipeline.infer(call(MODEL, "9", {}))
            with pytest.raises(NotFound, match="is not a version"):
                await pipeline.infer(call(MODEL, "01", {}))
            assert len(decoded) == 2  # refused before the body was read
            with pytest.raises(BadRequest, match="has shape"):
                await pipeline.infer(call(MODEL, None, {}, infer_request(rows[:, :5])))
            wait = asyncio.Event()
            task = asyncio.create_task(pipeline.infer(call(MODEL, None, {}, wait=wait)))
            await _until(lambda: len(decoded) == 4)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert count(MODEL, "2", FLAG, "200") == 1
            assert count(MODEL, "3", PINNED, "200") == 1
            assert count("_unknown", "_none", SPLIT, "404") == 1
            assert count(MODEL, "_none", PINNED, "404") == 2
            assert count(MODEL, "1", SPLIT, "400") == 1
            assert count(MODEL, "_none", SPLIT, "499") == 1
            assert len(kept.records) == 2  # only answered requests are kept
            assert registry.inflight_by_model() == {MODEL: 0}
        finally:
            await lifecycle.stop()

    asyncio.run(scenario())
