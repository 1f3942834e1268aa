"""Triton's read-only repository extension: every model and version of the repository with its
state, as `POST /v2/repository/index` and gRPC `RepositoryIndex` answer it (docs/endpoints.md).

One function over the registry's snapshot, so that both transports answer the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.runtime.registry import Registry

READY = "READY"
UNAVAILABLE = "UNAVAILABLE"
LOADING = "LOADING"


@dataclass(frozen=True)
class IndexRow:
    name: str
    version: str
    state: str
    """READY, UNAVAILABLE or LOADING (Triton's words)."""
    reason: str
    """Why a version is not READY ("" when it is)."""

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "state": self.state,
                "reason": self.reason}


def repository_index(registry: Registry, ready_only: bool = False) -> list[IndexRow]:
    """One row per version folder of the repository, sorted by model and version."""
    rows: list[IndexRow] = []
    for model in sorted(registry.repository):
        loaded = registry.versions_of(model)
        for version, entry in sorted(registry.repository[model].items()):
            deployment = loaded.get(version)
            if deployment is None:
                state = UNAVAILABLE
                reason = entry.problem or ("not loaded: the routing policy does not name it "
                                           "(a traffic entry with weight 0 loads it)")
            elif deployment.ready:
                state, reason = READY, ""
            elif deployment.error is not None:
                state, reason = UNAVAILABLE, deployment.error
            else:
                state, reason = LOADING, "loading"
            if state == READY or not ready_only:
                rows.append(IndexRow(model, str(version), state, reason))
    return rows
