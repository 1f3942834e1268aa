"""The routing policy (`config/routing.yaml`): a typed, validated, immutable model of the file.

A policy is parsed whole or rejected whole: every error names the model, the key and the problem.
A reload builds a new Policy and swaps one reference; nothing mutates a policy in use.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from gateway.errors import ConfigError
from gateway.routing.rollout import (
    RolloutError,
    RolloutPlan,
    RolloutStatus,
    mapping_of,
    parse_rollout,
    parse_status,
)
from gateway.runtime.repository import Repository

_MODEL_KEYS = {"traffic", "sticky_key", "flags", "shadow", "rollout", "rollout_status"}
_FLAG_KEYS = {"name", "header", "parameter", "values", "version"}


class PolicyError(ConfigError):
    """The routing policy is invalid; the message says where and why."""


@dataclass(frozen=True)
class TrafficEntry:
    version: int
    weight: float
    """Share of unpinned traffic: integers summing to 100 in a policy file (renormalised over
    the ready versions when one is down)."""


@dataclass(frozen=True)
class Flag:
    name: str
    header: str | None
    """Request header to match (lower case), or None when `parameter` is used."""
    parameter: str | None
    """V2 request parameter to match, or None when `header` is used."""
    values: frozenset[str]
    version: int


@dataclass(frozen=True)
class ShadowEntry:
    version: int
    percent: float
    """Share of the model's answered requests mirrored to this version, 0 to 100."""


@dataclass(frozen=True)
class ModelPolicy:
    traffic: tuple[TrafficEntry, ...]
    sticky_key: str | None
    flags: tuple[Flag, ...]
    shadow: tuple[ShadowEntry, ...]
    rollout: RolloutPlan | None = None
    """docs/routing.md: validated here, read by `gateway rollout`, ignored by serving."""
    rollout_status: RolloutStatus | None = None

    def versions(self) -> frozenset[int]:
        """Every version this policy needs loaded: traffic (weight 0 too), flags, shadows."""
        return frozenset({t.version for t in self.traffic} | {f.version for f in self.flags}
                         | {s.version for s in self.shadow})


@dataclass(frozen=True)
class Policy:
    models: dict[str, ModelPolicy]
    source_sha256: str
    """sha256 of the file text this policy was parsed from."""


def _integer(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PolicyError(f"{where}: expected an integer from {low} to {high}, got {value!r}")
    return value


def _version(value: Any, where: str, model: str, repository: Repository) -> int:
    version = _integer(value, where, 1, 2**31)
    if version not in repository.get(model, {}):
        known = ", ".join(str(v) for v in repository.get(model, {}))
        raise PolicyError(f"{where}: model '{model}' has no version {version} in the repository "
                          f"(it has {known})")
    return version


def _mapping(value: Any, where: str, keys: set[str]) -> dict[str, Any]:
    return mapping_of(value, where, keys, PolicyError)


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise PolicyError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _traffic(raw: Any, where: str, model: str, repository: Repository) -> tuple[TrafficEntry, ...]:
    items = _list(raw, where)
    if not items:
        raise PolicyError(f"{where}: needs at least one {{version, weight}} entry")
    entries = []
    for i, item in enumerate(items):
        at = f"{where}[{i}]"
        item = _mapping(item, at, {"version", "weight"})
        entries.append(TrafficEntry(_version(item.get("version"), f"{at}.version", model,
                                             repository),
                                    _integer(item.get("weight"), f"{at}.weight", 0, 100)))
    versions = [e.version for e in entries]
    if len(set(versions)) != len(versions):
        twice = next(v for v in versions if versions.count(v) > 1)
        raise PolicyError(f"{where}: version {twice} of model '{model}' is listed more than "
                          "once; give each version one entry (change its weight to move traffic)")
    total = sum(e.weight for e in entries)
    if total != 100:
        raise PolicyError(f"{where}: weights sum to {total}; they must sum to 100")
    return tuple(entries)


def _flag(raw: Any, where: str, model: str, repository: Repository) -> Flag:
    item = _mapping(raw, where, _FLAG_KEYS)
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise PolicyError(f"{where}.name: expected a non-empty string")
    header, parameter = item.get("header"), item.get("parameter")
    if (header is None) == (parameter is None):
        raise PolicyError(f"{where}: give exactly one of 'header' or 'parameter'")
    for key, value in (("header", header), ("parameter", parameter)):
        if value is not None and (not isinstance(value, str) or not value):
            raise PolicyError(f"{where}.{key}: expected a non-empty string")
    values = _list(item.get("values"), f"{where}.values")
    if not values or not all(isinstance(v, (str, int, bool)) for v in values):
        raise PolicyError(f"{where}.values: expected a non-empty list of strings")
    # YAML reads `true` and `1` as non-strings; requests carry text, so compare as text.
    text = frozenset(str(v).lower() if isinstance(v, bool) else str(v) for v in values)
    return Flag(name, header.lower() if header else None, parameter, text,
                _version(item.get("version"), f"{where}.version", model, repository))


def _shadow(raw: Any, where: str, model: str, repository: Repository) -> ShadowEntry:
    item = _mapping(raw, where, {"version", "percent"})
    percent = item.get("percent", 100)
    if (isinstance(percent, bool) or not isinstance(percent, (int, float))
            or not 0 <= percent <= 100):
        raise PolicyError(f"{where}.percent: expected a number from 0 to 100, got {percent!r}")
    return ShadowEntry(_version(item.get("version"), f"{where}.version", model, repository),
                       float(percent))


def _model_policy(raw: Any, model: str, repository: Repository) -> ModelPolicy:
    where = f"models.{model}"
    if model not in repository:
        raise PolicyError(f"{where}: no model '{model}' in the repository (it has "
                          f"{', '.join(repository) or 'none'})")
    item = _mapping(raw, where, _MODEL_KEYS)
    if "traffic" not in item:
        raise PolicyError(f"{where}: needs 'traffic', a list of {{version, weight}}")
    sticky = item.get("sticky_key")
    if sticky is not None and (not isinstance(sticky, str) or not sticky):
        raise PolicyError(f"{where}.sticky_key: expected a header name")
    flags = tuple(_flag(f, f"{where}.flags[{i}]", model, repository)
                  for i, f in enumerate(_list(item.get("flags", []), f"{where}.flags")))
    shadow = tuple(_shadow(s, f"{where}.shadow[{i}]", model, repository)
                   for i, s in enumerate(_list(item.get("shadow", []), f"{where}.shadow")))
    traffic = _traffic(item["traffic"], f"{where}.traffic", model, repository)
    try:
        rollout = (parse_rollout(item["rollout"], f"{where}.rollout",
                                 {t.version: int(t.weight) for t in traffic})
                   if "rollout" in item else None)
        status = (parse_status(item["rollout_status"], f"{where}.rollout_status")
                  if item.get("rollout_status") is not None else None)
    except RolloutError as exc:
        raise PolicyError(str(exc)) from None
    return ModelPolicy(traffic, sticky.lower() if sticky else None, flags, shadow, rollout,
                       status)


def parse_policy(text: str, repository: Repository) -> Policy:
    """Parse and validate a routing file's text against the repository; PolicyError if invalid."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"not valid YAML: {exc}") from None
    if raw is None:
        raise PolicyError("the file is empty; it needs a 'models' mapping")
    raw = _mapping(raw, "top level", {"models"})
    models = raw.get("models")
    if not isinstance(models, dict):
        raise PolicyError("models: expected a mapping of model name to its policy")
    parsed = {str(name): _model_policy(value, str(name), repository)
              for name, value in models.items()}
    return Policy(parsed, hashlib.sha256(text.encode()).hexdigest())


def describe_policy(policy: Policy) -> dict[str, Any]:
    """The policy as plain JSON data (for /admin/routing)."""
    return {model: {
        "traffic": [{"version": t.version, "weight": t.weight} for t in p.traffic],
        "sticky_key": p.sticky_key,
        "flags": [{"name": f.name, **({"header": f.header} if f.header else
                                      {"parameter": f.parameter}),
                   "values": sorted(f.values), "version": f.version} for f in p.flags],
        "shadow": [{"version": s.version, "percent": s.percent} for s in p.shadow],
    } for model, p in policy.models.items()}


def primary_version(policy: ModelPolicy) -> int:
    """The version with the most traffic (the higher version on a tie)."""
    return max(policy.traffic, key=lambda t: (t.weight, t.version)).version


def default_version(policy: ModelPolicy | None, versions: Iterable[int]) -> int:
    """The version unversioned requests and metadata mean: the policy's primary, or the highest
    version of a model the policy does not name (docs/configuration.md: it is served at its
    highest)."""
    return primary_version(policy) if policy is not None else max(versions)


def weighted_versions(policy: ModelPolicy | None, versions: Iterable[int]) -> frozenset[int]:
    """The versions that take unpinned traffic: weight > 0, or the default of an unnamed model."""
    if policy is None:
        return frozenset({default_version(None, versions)})
    return frozenset(t.version for t in policy.traffic if t.weight > 0)


def needed_versions(policy: Policy, repository: Repository) -> dict[str, frozenset[int]]:
    """Model -> versions to load: those the policy names, else the model's highest version."""
    needed = {model: p.versions() for model, p in policy.models.items()}
    for model, versions in repository.items():
        needed.setdefault(model, frozenset({default_version(None, versions)}))
    return needed
