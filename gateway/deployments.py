"""The model versions a gateway serves: each loaded one with its session and batcher, each failed
one with the reason it failed.

Which versions: every version the routing policy names, and the highest version of every model the
policy does not name (SPEC section 2). A version that fails (checksum mismatch, a file onnxruntime
cannot load, a failed warm-up) is kept with its reason and answers 503; the others serve.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from gateway.batching.batcher import Batcher, BatchingLimits, BatchObserver
from gateway.batching.execution import choose_execution, time_call
from gateway.errors import (
    BadRequest,
    GatewayError,
    InferenceFailed,
    NotFound,
    Unavailable,
    shown,
)
from gateway.protocol.sample import SampleError, read_sample
from gateway.routing.policy import Policy, default_version
from gateway.runtime.providers import choose_providers
from gateway.runtime.repository import Repository, VersionEntry, version_number
from gateway.runtime.session import LoadError, ModelSession, load_session, warm_up
from gateway.settings import Settings
from gateway.tensors import Tensors

logger = logging.getLogger("gateway")

# onnxruntime's error for inputs it rejects; anything else it raises is the model's fault.
_ORT_INVALID_ARGUMENT = getattr(ort.capi.onnxruntime_pybind11_state, "InvalidArgument", ValueError)


@dataclass
class Deployment:
    entry: VersionEntry
    session: ModelSession | None = None
    batcher: Batcher | None = None
    error: str | None = None
    batch_call_s: float = 0.0
    """Median time of one full-batch call, measured at load."""
    execution: str = ""
    """Where its batches run: inline or thread (see gateway.batching.execution)."""
    thread: ThreadPoolExecutor | None = None
    inflight: int = 0
    """Requests holding this deployment between lookup and answer (unload waits for zero)."""

    @property
    def name(self) -> str:
        return f"model '{self.entry.model}' version {self.entry.version}"

    @property
    def ready(self) -> bool:
        return self.session is not None and self.batcher is not None

    @property
    def label_output(self) -> str | None:
        """The output holding the predicted label (classifiers), from the manifest or by name."""
        outputs = self.entry.manifest.get("outputs")
        if isinstance(outputs, dict) and isinstance(outputs.get("label"), str):
            return str(outputs["label"])
        names = [spec.name for spec in self.session.outputs] if self.session else []
        return "label" if "label" in names else None


def needed_versions(policy: Policy, repository: Repository) -> dict[str, frozenset[int]]:
    """Model -> versions to load: those the policy names, else the model's highest version."""
    needed = {model: p.versions() for model, p in policy.models.items()}
    for model, versions in repository.items():
        needed.setdefault(model, frozenset({default_version(None, versions)}))
    return needed


def parse_version(text: str) -> int:
    """A version from a URL: a positive integer written canonically, as version folders are."""
    version = version_number(text)
    if version is None:
        raise NotFound(f"version {shown(text, 20)} is not a version; versions are positive "
                       "integers written in ASCII digits")
    return version


def classify_inference_error(exc: Exception) -> GatewayError:
    if isinstance(exc, _ORT_INVALID_ARGUMENT):
        return BadRequest(f"onnxruntime rejected the inputs: {exc}")
    return InferenceFailed(f"inference failed: {exc}")


class Deployments:
    """Table of served versions; `find` answers the lookup of every request."""

    def __init__(self, settings: Settings, repository: Repository,
                 observe_batches: Callable[[str, int], BatchObserver] | None = None) -> None:
        self.settings = settings
        self._observe_batches = observe_batches
        """(model, version) -> the per-batch callback of that version's batcher (metrics)."""
        self.repository = repository
        self._table: dict[str, dict[int, Deployment]] = {}
        self._ready: dict[str, frozenset[int]] = {}
        self._input_names: dict[str, frozenset[str]] = {}
        self._providers = choose_providers(settings.execution_provider,
                                           ort.get_available_providers())

    def load(self, needed: dict[str, frozenset[int]],
             repository: Repository | None = None) -> list[Deployment]:
        """Load every needed version that is not loaded yet (blocking: run off the event loop);
        the new deployments, failed ones included."""
        repository = repository or self.repository
        threads = self.settings.ort_threads
        added = []
        for model, versions in needed.items():
            for version in sorted(versions):
                if version in self._table.get(model, {}):
                    continue
                deployment = Deployment(repository[model][version])
                try:
                    session = load_session(deployment.entry, self._providers,
                                           threads.intra_op, threads.inter_op)
                    feeds = warm_up(session, self._sample(deployment.entry, session))
                    deployment.batch_call_s = self._time_full_batch(session, feeds)
                    deployment.session = session
                except LoadError as exc:
                    deployment.error = str(exc)
                    logger.error("%s failed to load: %s", deployment.name, exc)
                self._put(model, version, deployment)
                added.append(deployment)
        return added

    def _put(self, model: str, version: int, deployment: Deployment | None) -> None:
        """Copy on write: `load` runs on a thread while the event loop iterates the table (for
        /metrics, readiness, a reload), so the table and its per-model maps are never changed
        in place; a new one replaces the old in one assignment, and readers keep the snapshot
        they hold."""
        versions = dict(self._table.get(model, {}))
        if deployment is None:
            versions.pop(version, None)
        else:
            versions[version] = deployment
        table = dict(self._table)
        if versions:
            table[model] = versions
        else:
            table.pop(model, None)
        self._table = table

    def use_repository(self, repository: Repository) -> None:
        """The repository a reload scanned: lookups answer by it from now on."""
        self.repository = repository

    def remove(self, model: str, version: int) -> Deployment | None:
        """Take a version out of the table: new lookups no longer find it."""
        removed = self._table.get(model, {}).get(version)
        self._put(model, version, None)
        self._refresh_ready()
        return removed

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
        b = self.settings.batching
        limits = BatchingLimits(b.max_batch_size, b.max_queue_delay_us, b.max_queue_size)
        for deployment in self.all():
            if deployment.session is None or deployment.batcher is not None:
                continue
            key = (deployment.entry.model, deployment.entry.version)
            deployment.execution = choose_execution(b.execution, deployment.batch_call_s)
            if deployment.execution == "thread":
                deployment.thread = ThreadPoolExecutor(
                    1, thread_name_prefix=f"{deployment.entry.model}-{deployment.entry.version}")
            logger.info("%s: a %d-row call takes %.0f µs; batches run %s (batching.execution: "
                        "%s)", deployment.name,
                        b.max_batch_size if deployment.session.batchable else 1,
                        deployment.batch_call_s * 1e6,
                        "inline on the event loop" if deployment.thread is None
                        else "on a thread of its own", b.execution)
            deployment.batcher = Batcher(deployment.name, deployment.session.run,
                                         deployment.session.batchable, limits,
                                         deployment.thread, classify_inference_error,
                                         self._observe_batches(*key) if self._observe_batches
                                         else None,
                                         # A fixed-shape graph was timed at its only shape.
                                         None if deployment.session.batchable else 1 << 62)
            deployment.batcher.start()
        self._refresh_ready()

    async def stop(self) -> None:
        """Finish every queued request, then stop the batchers and their threads."""
        for deployment in self.all():
            if deployment.batcher is not None:
                await deployment.batcher.stop()
            if deployment.thread is not None:
                deployment.thread.shutdown(wait=True)

    def all(self) -> list[Deployment]:
        return [d for versions in self._table.values() for d in versions.values()]

    def inflight_by_model(self) -> dict[str, int]:
        return {model: sum(d.inflight for d in versions.values())
                for model, versions in self._table.items()}

    def ready_versions(self, model: str) -> frozenset[int]:
        return self._ready.get(model, frozenset())

    def input_names(self, model: str) -> frozenset[str] | None:
        """Every input name of the model's loaded versions; None when none is loaded."""
        return self._input_names.get(model)

    def _refresh_ready(self) -> None:
        table = self._table
        self._ready = {model: frozenset(v for v, d in versions.items() if d.ready)
                       for model, versions in table.items()}
        self._input_names = {
            model: frozenset(spec.name for d in versions.values() if d.session is not None
                             for spec in d.session.inputs)
            for model, versions in table.items()
            if any(d.session is not None for d in versions.values())}

    def versions_of(self, model: str) -> dict[int, Deployment]:
        return self._table.get(model, {})

    def check_model(self, model: str) -> dict[int, VersionEntry]:
        """The model's versions in the repository; NotFound when it has none (any more)."""
        versions = self.repository.get(model)
        if versions is None:
            raise NotFound(f"unknown model {shown(model, 100)}; this gateway serves "
                           f"{', '.join(repr(m) for m in self.repository) or 'no models'}")
        return versions

    def find(self, model: str, version: int) -> Deployment:
        """The deployment a request names; NotFound or Unavailable with the reason otherwise."""
        versions = self.check_model(model)
        if version not in versions:
            raise NotFound(f"model '{model}' has no version {version}; it has "
                           f"{', '.join(str(v) for v in versions)}")
        deployment = self._table.get(model, {}).get(version)
        if deployment is None:
            raise NotFound(f"model '{model}' version {version} is in the repository but not "
                           "loaded; name it in the routing policy (e.g. a traffic entry with "
                           "weight 0) to load it")
        if not deployment.ready:
            raise Unavailable(f"{deployment.name} is not ready: "
                              f"{deployment.error or 'still loading'}", retry_after_s=5)
        return deployment

    def problems(self) -> list[str]:
        """One line per version that was needed but is not serving."""
        return [f"{d.name}: {d.error or 'not loaded'}" for d in self.all() if d.session is None]
