"""The lifecycle of served versions: load (verify, warm up, time), start (a batcher, maybe a
thread), unload when idle, stop. What is loaded lives in the registry (gateway.runtime.registry).

Which versions: every version the routing policy names, and the highest version of every model the
policy does not name (docs/configuration.md; routing.policy.needed_versions). A version that fails
(checksum mismatch, a file onnxruntime cannot load, a failed sample.json warm-up) is kept with its
reason and answers 503; the others serve.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort

from gateway.batching.batcher import Batcher, BatchingLimits, BatchObserver
from gateway.batching.execution import choose_execution, time_call
from gateway.protocol.sample import SampleError, read_sample
from gateway.protocol.validate import classify_inference_error
from gateway.runtime.providers import choose_providers
from gateway.runtime.registry import Deployment, Registry
from gateway.runtime.repository import Repository, VersionEntry
from gateway.runtime.session import LoadError, ModelSession, load_session, warm_up
from gateway.settings import Settings
from gateway.tensors import Tensors

logger = logging.getLogger("gateway")


class Lifecycle:
    def __init__(self, settings: Settings, registry: Registry,
                 observe_batches: Callable[[str, int], BatchObserver] | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self._observe_batches = observe_batches
        """(model, version) -> the per-batch callback of that version's batcher (metrics)."""
        self._providers = choose_providers(settings.execution_provider,
                                           ort.get_available_providers())

    def load(self, needed: dict[str, frozenset[int]],
             repository: Repository | None = None) -> list[Deployment]:
        """Load every needed version that is not loaded yet (blocking: run off the event loop);
        the new deployments, failed ones included."""
        repository = repository or self.registry.repository
        added = []
        for model, versions in needed.items():
            for version in sorted(versions):
                if not self.registry.has(model, version):
                    deployment = self._load(repository[model][version])
                    self.registry.put(deployment)
                    added.append(deployment)
        return added

    def _load(self, entry: VersionEntry) -> Deployment:
        threads = self.settings.ort_threads
        try:
            session = load_session(entry, self._providers, threads.intra_op, threads.inter_op)
            feeds = warm_up(session, self._sample(entry, session))
            return Deployment(entry, session, batch_call_s=self._time_full_batch(session, feeds))
        except LoadError as exc:
            deployment = Deployment(entry, None, error=str(exc))
            logger.error("%s failed to load: %s", deployment.name, exc)
            return deployment

    def _sample(self, entry: VersionEntry, session: ModelSession) -> Tensors | None:
        """The version's sample.json as arrays, None without one; LoadError when it is bad."""
        if not entry.sample_file.is_file():
            return None
        limits = self.settings.limits
        try:
            return read_sample(entry.sample_file, session.inputs, session.outputs,
                               limits.max_tensor_elements, limits.max_batch_rows)
        except SampleError as exc:
            raise LoadError(str(exc)) from None

    def _time_full_batch(self, session: ModelSession, feeds: Tensors | None) -> float:
        """Median time of a full-batch call on the warm-up's rows repeated; infinite (so: a
        thread) when there are none that worked or the call fails."""
        rows = self.settings.batching.max_batch_size if session.batchable else 1
        if feeds is None:
            return float("inf")
        if session.batchable:
            feeds = {name: np.resize(array, (rows, *array.shape[1:]))
                     for name, array in feeds.items()}
        try:
            return time_call(lambda: session.run(feeds))
        except Exception as exc:  # e.g. a graph that takes one row only
            logger.warning("model '%s' version %d: timing a %d-row call failed (%s); its batches "
                           "will run on a thread", session.model, session.version, rows, exc)
            return float("inf")

    def start_batchers(self) -> None:
        """Give every loaded version its batcher (needs the running event loop)."""
        for deployment in self.registry.all():
            if deployment.session is not None and deployment.batcher is None:
                self._start(deployment, deployment.session)
        self.registry.refresh()

    def _start(self, deployment: Deployment, session: ModelSession) -> None:
        b = self.settings.batching
        model, version = deployment.entry.model, deployment.entry.version
        deployment.execution = choose_execution(b.execution, deployment.batch_call_s)
        if deployment.execution == "thread":
            deployment.thread = ThreadPoolExecutor(1, thread_name_prefix=f"{model}-{version}")
        logger.info("%s: a %d-row call takes %.0f µs; batches run %s (batching.execution: %s)",
                    deployment.name, b.max_batch_size if session.batchable else 1,
                    deployment.batch_call_s * 1e6, "inline on the event loop"
                    if deployment.thread is None else "on a thread of its own", b.execution)
        deployment.batcher = Batcher(
            deployment.name, session.run, session.batchable,
            BatchingLimits(b.max_batch_size, b.max_queue_delay_us, b.max_queue_size),
            deployment.thread, classify_inference_error,
            self._observe_batches(model, version) if self._observe_batches else None,
            # A fixed-shape graph was timed at its only shape.
            None if session.batchable else 1 << 62)
        deployment.batcher.start()

    async def unload_when_idle(self, deployment: Deployment, poll_s: float = 0.05) -> None:
        """Stop a removed version's batcher and thread once no request holds it."""
        # A counter, not an event: the request path only adds and subtracts, and this rare wait
        # polls instead of making every request signal.
        while deployment.inflight:  # noqa: ASYNC110
            await asyncio.sleep(poll_s)
        if deployment.batcher is not None:
            await deployment.batcher.stop()
        if deployment.thread is not None:
            deployment.thread.shutdown(wait=False)
        logger.info("%s unloaded: the routing policy no longer names it", deployment.name)

    async def stop(self) -> None:
        """Finish every queued request, then stop the batchers and their threads."""
        for deployment in self.registry.all():
            if deployment.batcher is not None:
                await deployment.batcher.stop()
            if deployment.thread is not None:
                deployment.thread.shutdown(wait=True)
