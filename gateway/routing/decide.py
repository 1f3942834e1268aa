"""The routing decision for one unpinned request: a matching flag, else the weighted split.

Pure functions over the policy and the request's headers and parameters; no I/O.

Sticky assignment uses weighted rendezvous hashing: each version scores a key as
`weight / -ln(u)`, with `u` a stable hash of (version, key) mapped into (0, 1), and the highest
score wins. A version wins a key with probability proportional to its weight, the hash is the
same in every process and replica (BLAKE2b, never Python's `hash()`), and raising one version's
weight raises only its own scores: keys move into it and never out, so no key flips back and forth
while a canary grows.

Versions that are not ready (failed to load) are passed over: a flag naming one does not match,
and the split is taken among the ready versions by their weights, so a broken canary costs its
share of traffic no errors. Only when no version with weight is ready does the decision name a
broken one (and the request gets its 503).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from functools import lru_cache
from hashlib import blake2b
from math import log
from typing import Any

from gateway.routing.policy import Flag, ModelPolicy, TrafficEntry

SPLIT, FLAG, PINNED = "split", "flag", "pinned"


@dataclass(slots=True)  # per request; not frozen: see gateway.inference.Answer
class Decision:
    version: int
    route: str
    """split, flag or pinned."""


def stable_unit(key: str, version: int) -> float:
    """A number in (0, 1) from (version, key), the same in every process and on every machine."""
    return _unit(f"{version}\0".encode(), key.encode())


def _unit(prefix: bytes, key: bytes) -> float:
    digest = blake2b(prefix + key, digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / 2**64


@lru_cache(maxsize=1024)
def _prefix(version: int) -> bytes:
    return f"{version}\0".encode()


def sticky_version(traffic: tuple[TrafficEntry, ...], key: str) -> int:
    """The version `key` sticks to: weighted rendezvous hashing over the split (`stable_unit`
    per version, its prefix encoded once per version and the key once per request)."""
    best_version, best_score = traffic[0].version, -1.0
    raw = key.encode()
    for entry in traffic:
        if entry.weight:
            score = entry.weight / -log(_unit(_prefix(entry.version), raw))
            if score > best_score:
                best_version, best_score = entry.version, score
    return best_version


def random_version(traffic: tuple[TrafficEntry, ...], draw: float) -> int:
    """The version a uniform `draw` in [0, 1) lands on, by cumulative weight."""
    point = draw * 100
    for entry in traffic:
        point -= entry.weight
        if point < 0:
            return entry.version
    return next(e.version for e in reversed(traffic) if e.weight)


def _flag_matches(flag: Flag, headers: Mapping[str, str], parameters: Mapping[str, Any]) -> bool:
    if flag.header is not None:
        value = headers.get(flag.header)
        return value is not None and value in flag.values
    assert flag.parameter is not None
    raw = parameters.get(flag.parameter)
    if raw is None:
        return False
    return (str(raw).lower() if isinstance(raw, bool) else str(raw)) in flag.values


class _Everything:
    def __contains__(self, item: object) -> bool:
        return True


ALL_READY: Container[int] = _Everything()


def choose_version(policy: ModelPolicy, headers: Mapping[str, str],
                   parameters: Mapping[str, Any], ready: Container[int] = ALL_READY,
                   draw: Callable[[], float] = random.random) -> Decision:
    """Flags in order (the first match wins), else the split: sticky by key, or at random."""
    for flag in policy.flags:
        if flag.version in ready and _flag_matches(flag, headers, parameters):
            return Decision(flag.version, FLAG)
    traffic = policy.traffic
    if not all(t.version in ready for t in traffic if t.weight):
        serving = tuple(t for t in traffic if t.weight and t.version in ready)
        if serving:
            total = sum(t.weight for t in serving)
            traffic = tuple(TrafficEntry(t.version, t.weight * 100 / total) for t in serving)
    key = headers.get(policy.sticky_key) if policy.sticky_key else None
    if key is not None:
        return Decision(sticky_version(traffic, key), SPLIT)
    return Decision(random_version(traffic, draw()), SPLIT)
