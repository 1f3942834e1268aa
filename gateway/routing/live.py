"""The routing policy in force, and its live reload (docs/routing.md).

One `LivePolicy` per gateway holds the current Policy, an immutable snapshot: a request reads
`live.policy` once and decides on that object, so it sees the old policy or the new, never a
mix. A reload reads the file, parses it whole, loads and warms up the versions it newly needs,
then swaps the one reference; versions no longer named are taken out of lookups at once and
unloaded when the last request holding them has its answer. An invalid policy (unreadable file,
YAML error, bad key, unknown model or version, weights not summing to 100, a newly needed version
that fails to load) is rejected whole: the old policy keeps serving, the reason is logged,
counted and shown by /admin/routing, and nothing it loaded stays. A rejected file is tried again
when the model repository changes (docs/routing.md: a ConfigMap edit and the model sync that brings
its
version do not land together); the once-a-second poll of the watcher compares the repository's
fingerprint while a file stands rejected.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gateway.errors import ConfigError
from gateway.lifecycle import Lifecycle
from gateway.routing.policy import (
    Policy,
    PolicyError,
    default_version,
    needed_versions,
    parse_policy,
    weighted_versions,
)
from gateway.runtime.repository import Fingerprint, repository_fingerprint, scan_repository

logger = logging.getLogger("gateway.routing")


@dataclass(frozen=True)
class ReloadResult:
    result: str
    """success, error, or unchanged (the file's content did not change)."""
    message: str
    at_unix_s: float
    source_sha256: str

    def to_json(self) -> dict[str, object]:
        return {"result": self.result, "message": self.message, "at": self.at_unix_s,
                "source_sha256": self.source_sha256}


class PolicyEvents(Protocol):
    """What the live policy reports as it goes (the gateway's metrics, docs/metrics.md): routing
    tells
    observability, and imports none of it."""

    def set_weights(self, weights: dict[str, dict[int, float]]) -> None: ...
    def set_ready(self, states: dict[tuple[str, int], bool]) -> None: ...
    def show_config_in_force(self) -> None: ...
    def forget_version(self, model: str, version: int) -> None: ...
    def count_reload(self, success: bool) -> None: ...


def read_policy_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the routing policy ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}: the routing policy is not UTF-8 text (byte {exc.start})") \
            from exc


class LivePolicy:
    def __init__(self, path: Path, repository_root: Path, policy: Policy,
                 lifecycle: Lifecycle, metrics: PolicyEvents,
                 on_applied: Callable[[], None] = lambda: None) -> None:
        self.path = path
        self._root = repository_root
        self.policy = policy
        self._lifecycle = lifecycle
        self._registry = lifecycle.registry
        self._metrics = metrics
        self._on_applied = on_applied
        self._lock = asyncio.Lock()
        self._unloads: set[asyncio.Task[None]] = set()
        self._attempt_fingerprint: Fingerprint = ()
        """The repository as it was when the current attempt began."""
        self._rejected_fingerprint: Fingerprint = ()
        """The repository as it was when the last rejected file was tried."""
        self.last_reload = ReloadResult("success", "loaded at start-up", time.time(),
                                        policy.source_sha256)
        self.publish()

    def version_for_model(self, model: str) -> int:
        """The version unversioned metadata and readiness describe: the policy's primary, or
        the highest version of a model the policy does not name."""
        return default_version(self.policy.models.get(model),
                               self._registry.repository[model])

    def out_of_service(self) -> list[str]:
        """One line per model that cannot answer unpinned requests: none of its versions with
        traffic weight > 0 is ready (docs/endpoints.md). A model the policy does not name is served
        at its
        highest version. A failed weight-0, flag or shadow version takes nothing out of service:
        on Kubernetes a canary failing at start-up would otherwise make every new pod unready."""
        lines = []
        for model, versions in self._registry.repository.items():
            weighted = weighted_versions(self.policy.models.get(model), versions)
            if not weighted & self._registry.ready_versions(model):
                lines.append(f"model '{model}': no version with traffic is ready (version"
                             f"{'s' if len(weighted) > 1 else ''} "
                             f"{', '.join(map(str, sorted(weighted)))})")
        return lines

    def publish(self) -> None:
        """Show the policy in force and the versions' readiness in metrics."""
        self._metrics.set_weights({model: {t.version: t.weight for t in p.traffic}
                                   for model, p in self.policy.models.items()})
        self._metrics.set_ready({(d.entry.model, d.entry.version): d.ready
                                 for d in self._registry.all()})
        self._on_applied()

    async def reload(self, force: bool = False) -> ReloadResult:
        """Apply the file if its content changed (or `force`); never raises."""
        async with self._lock:
            try:
                text = read_policy_file(self.path)
            except PolicyError as exc:
                if (not force and self.last_reload.result == "error"
                        and self.last_reload.message == str(exc)):
                    # Still missing or unreadable: said once, not on every poll and event.
                    return ReloadResult("unchanged", "", time.time(), "")
                return self._reject(str(exc), "")
            sha = hashlib.sha256(text.encode()).hexdigest()
            if (not force and sha == self.policy.source_sha256
                    and self.last_reload.result == "error"):
                # A rejected edit undone: the file is the policy in force again.
                self._metrics.show_config_in_force()
                self.last_reload = ReloadResult("success", "the file is back to the policy in "
                                                "force", time.time(), sha)
                logger.info("routing file is back to the policy in force")
                return self.last_reload
            fingerprint = None
            if not force and sha == self.policy.source_sha256:
                return ReloadResult("unchanged", "", time.time(), sha)  # in force already
            if not force and sha == self.last_reload.source_sha256:
                # Rejected already: say it once, not on every poll; but try it again when the
                # repository changed, as the version it named may have arrived since.
                fingerprint = await asyncio.to_thread(repository_fingerprint, self._root)
                if fingerprint == self._rejected_fingerprint:
                    return ReloadResult("unchanged", "", time.time(), sha)
                logger.info("the model repository changed; trying the rejected routing file "
                            "again")
            if fingerprint is None:
                fingerprint = await asyncio.to_thread(repository_fingerprint, self._root)
            self._attempt_fingerprint = fingerprint
            try:
                return await self._apply(text, sha)
            except ConfigError as exc:
                return self._reject(str(exc), sha)
            except Exception as exc:  # a bug must not stop the watcher: reject, say why
                logger.exception("applying the routing policy failed")
                return self._reject(f"unexpected error: {exc!r}", sha)

    async def _apply(self, text: str, sha: str) -> ReloadResult:
        skipped: list[str] = []
        repository = scan_repository(self._root, skipped)
        for note in skipped:
            logger.warning("model repository %s: %s", self._root, note)
        policy = parse_policy(text, repository)
        needed = needed_versions(policy, repository)
        added = await asyncio.to_thread(self._lifecycle.load, needed, repository)
        failed = [d for d in added if d.session is None]
        if failed:
            # Rejected whole, so no trace: the versions that did load go too (they have no
            # batcher yet, so nothing but this table holds them).
            for deployment in added:
                self._registry.remove(deployment.entry.model, deployment.entry.version)
            raise PolicyError("; ".join(f"{d.name} cannot be loaded: {d.error}" for d in failed))
        self._registry.use_repository(repository)
        self._lifecycle.start_batchers()
        self.policy = policy  # the swap: one reference, read once per request
        for deployment in self._registry.all():
            model, version = deployment.entry.model, deployment.entry.version
            if version not in needed.get(model, frozenset()):
                self._registry.remove(model, version)
                self._metrics.forget_version(model, version)
                task = asyncio.create_task(self._lifecycle.unload_when_idle(deployment))
                self._unloads.add(task)
                task.add_done_callback(self._unloads.discard)
        self.publish()
        self._metrics.count_reload(success=True)
        self.last_reload = ReloadResult("success", "applied", time.time(), sha)
        logger.info("routing policy applied (sha256 %s…): %s", sha[:12],
                    {m: {t.version: t.weight for t in p.traffic} for m, p in policy.models.items()})
        return self.last_reload

    def _reject(self, reason: str, sha: str) -> ReloadResult:
        self._rejected_fingerprint = self._attempt_fingerprint
        self._metrics.count_reload(success=False)
        self.last_reload = ReloadResult("error", reason, time.time(), sha)
        logger.error("routing policy rejected, the previous one keeps serving: %s", reason)
        return self.last_reload

    async def stop(self) -> None:
        if self._unloads:
            await asyncio.gather(*self._unloads, return_exceptions=True)
