"""The registry of served model versions: which are there, which serve, and the lookup of every
request.

A `Deployment` is one version: loaded (its session, and how long its full batch takes) or failed
(the reason), and, once started, its batcher and the thread its batches may run on. The lifecycle
(`gateway.lifecycle`) loads, starts and unloads them; the registry only holds and finds them.

The table is copy-on-write: loading runs on a thread while the event loop iterates the table
(for /metrics, readiness, a reload), so the table and its per-model maps are never changed in
place; a new one replaces the old in one assignment, and readers keep the snapshot they hold.
Writers (a loading thread, the event loop unloading) take a lock, so neither loses the other's
change: each copy starts from the table the previous writer left.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.errors import NotFound, Unavailable, shown
from gateway.runtime.repository import Repository, VersionEntry, label_output_of, version_number
from gateway.runtime.session import ModelSession

if TYPE_CHECKING:  # the batcher is above this layer: referred to, never called from here
    from gateway.batching.batcher import Batcher


def parse_version(text: str) -> int:
    """A version a caller named (URL path, gRPC `model_version`): a positive integer written
    canonically, as version folders are."""
    version = version_number(text)
    if version is None:
        raise NotFound(f"version {shown(text, 20)} is not a version; versions are positive "
                       "integers written in ASCII digits")
    return version


@dataclass(eq=False)
class Deployment:
    """One version: loaded or failed at load, started once, held by requests while they run."""

    entry: VersionEntry
    session: ModelSession | None
    """The loaded graph; None when the version failed to load (`error` says why)."""
    error: str | None = None
    batch_call_s: float = float("inf")
    """Median time of one full-batch call, measured at load (infinite when it failed)."""
    batcher: Batcher | None = None
    """Set when the version starts serving."""
    thread: ThreadPoolExecutor | None = None
    """The version's own thread, when its batches do not run inline."""
    execution: str = ""
    """Where its batches run: inline or thread (see gateway.batching.execution)."""
    inflight: int = 0
    """Requests holding this version between lookup and answer (unload waits for zero)."""

    @property
    def name(self) -> str:
        return f"model '{self.entry.model}' version {self.entry.version}"

    @property
    def ready(self) -> bool:
        return self.session is not None and self.batcher is not None

    @property
    def label_output(self) -> str | None:
        """The output holding the predicted label (classifiers), from the manifest or by name."""
        names = [spec.name for spec in self.session.outputs] if self.session else []
        return label_output_of(self.entry.manifest, names)


class Registry:
    """Table of served versions; `find` answers the lookup of every request."""

    def __init__(self, repository: Repository) -> None:
        self.repository = repository
        """The repository as last scanned: what versions exist (a reload replaces it)."""
        self._table: dict[str, dict[int, Deployment]] = {}
        self._ready: dict[str, frozenset[int]] = {}
        self._input_names: dict[str, dict[str, frozenset[str]]] = {}
        self._writing = threading.Lock()

    def use_repository(self, repository: Repository) -> None:
        """The repository a reload scanned: lookups answer by it from now on."""
        self.repository = repository

    def remove(self, model: str, version: int) -> Deployment | None:
        """Take a version out of the table: new lookups no longer find it."""
        with self._writing:
            removed = self._table.get(model, {}).get(version)
            if removed is not None:
                self._replace(model, version, None)
        return removed

    def put(self, deployment: Deployment) -> None:
        with self._writing:
            self._replace(deployment.entry.model, deployment.entry.version, deployment)

    def _replace(self, model: str, version: int, deployment: Deployment | None) -> None:
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
        self._derive()

    def refresh(self) -> None:
        """Recompute which versions serve (after one starts or goes)."""
        with self._writing:
            self._derive()

    def _derive(self) -> None:
        table = self._table
        self._ready = {model: frozenset(v for v, d in versions.items() if d.ready)
                       for model, versions in table.items()}
        self._input_names = {}
        for model, versions in table.items():
            kinds: dict[str, set[str]] = {}
            for d in versions.values():
                for spec in d.session.inputs if d.session is not None else ():
                    kinds.setdefault(spec.name, set()).add(spec.datatype)
            if any(d.session is not None for d in versions.values()):
                self._input_names[model] = {name: frozenset(datatypes)
                                            for name, datatypes in kinds.items()}

    def all(self) -> list[Deployment]:
        return [d for versions in self._table.values() for d in versions.values()]

    def versions_of(self, model: str) -> dict[int, Deployment]:
        return self._table.get(model, {})

    def has(self, model: str, version: int) -> bool:
        return version in self._table.get(model, {})

    def ready_versions(self, model: str) -> frozenset[int]:
        return self._ready.get(model, frozenset())

    def input_names(self, model: str) -> Mapping[str, frozenset[str]] | None:
        """Every input name of the model's loaded versions, with the datatypes they take it
        in; None when none is loaded."""
        return self._input_names.get(model)

    def inflight_by_model(self) -> dict[str, int]:
        return {model: sum(d.inflight for d in versions.values())
                for model, versions in self._table.items()}

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
