"""A model's rollout block in the routing policy (docs/routing.md): its types and its validation.

The gateway validates the block like every other key of the policy (a bad block rejects the
whole edit) and otherwise ignores it: serving never depends on the rollout controller, which
reads the same file (`gateway rollout`) and writes back only the model's weights and its
`rollout_status`.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from gateway.errors import ConfigError

ROLLOUT_KEYS = {"baseline", "canary", "steps", "step_s", "max_step_s", "alpha", "gates"}
GATE_KEYS = {"max_error_rate_increase", "max_p99_ratio", "min_requests", "accuracy_margin",
             "min_shadow_agreement", "max_prediction_psi"}
STATUS_KEYS = {"state", "canary", "step", "since", "reason"}
STATES = ("progressing", "promoted", "rolled_back")


class RolloutError(ConfigError):
    """The rollout block is invalid; the message says where and why."""


@dataclass(frozen=True)
class Gates:
    """Each gate is checked only when set (None: not checked)."""

    max_error_rate_increase: float | None = None
    max_p99_ratio: float | None = None
    min_requests: int = 0
    accuracy_margin: float | None = None
    min_shadow_agreement: float | None = None
    max_prediction_psi: float | None = None


@dataclass(frozen=True)
class RolloutPlan:
    baseline: int
    canary: int
    steps: tuple[int, ...]
    """The canary's weight at each step; the baseline gets the rest."""
    step_s: float
    max_step_s: float
    alpha: float
    gates: Gates


@dataclass(frozen=True)
class RolloutStatus:
    """Written by the controller, never by hand."""

    state: str
    step: int | None
    since: str | None
    reason: str | None
    canary: int | None = None
    """The canary this status belongs to (None in a status written before it was recorded: it
    is then taken to be the block's canary)."""


def _number(value: Any, where: str, low: float, high: float, *, open_low: bool = False) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not (low < value if open_low else low <= value) or not value <= high):
        bound = f"above {low}" if open_low else f"from {low}"
        raise RolloutError(f"{where}: expected a number {bound} to {high}, got {value!r}")
    return float(value)


def mapping_of(value: Any, where: str, keys: set[str],
               error: type[ConfigError]) -> dict[str, Any]:
    """`value` if it is a mapping of only `keys`, else `error` naming what is wrong (the policy
    file and its rollout blocks read alike)."""
    if not isinstance(value, dict):
        raise error(f"{where}: expected a mapping, got {type(value).__name__}")
    unknown = sorted(str(k) for k in set(value) - keys)
    if unknown:
        raise error(f"{where}: unknown key(s) {', '.join(unknown)}; known keys: "
                    f"{', '.join(sorted(keys))}")
    return value


def _mapping(value: Any, where: str, keys: set[str]) -> dict[str, Any]:
    return mapping_of(value, where, keys, RolloutError)


def _gates(raw: Any, where: str) -> Gates:
    item = _mapping(raw if raw is not None else {}, where, GATE_KEYS)
    minimum = item.get("min_requests", 0)
    if isinstance(minimum, bool) or not isinstance(minimum, int) or minimum < 0:
        raise RolloutError(f"{where}.min_requests: expected a non-negative integer, "
                           f"got {minimum!r}")

    def optional(key: str, low: float, high: float, open_low: bool = False) -> float | None:
        value = item.get(key)
        return None if value is None else _number(value, f"{where}.{key}", low, high,
                                                  open_low=open_low)

    return Gates(optional("max_error_rate_increase", 0, 1),
                 optional("max_p99_ratio", 0, 1000, open_low=True), minimum,
                 optional("accuracy_margin", 0, 1), optional("min_shadow_agreement", 0, 1),
                 optional("max_prediction_psi", 0, 100, open_low=True))


def parse_rollout(raw: Any, where: str, traffic: dict[int, int]) -> RolloutPlan:
    """The block of one model, checked against its `traffic` (version -> weight): the baseline
    and canary must be in it, and every step must fit beside the weights of the other versions,
    which a rollout never moves."""
    item = _mapping(raw, where, ROLLOUT_KEYS)
    traffic_versions = list(traffic)
    versions = {}
    for key in ("baseline", "canary"):
        value = item.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value not in traffic_versions:
            raise RolloutError(f"{where}.{key}: expected a version listed in traffic "
                               f"({', '.join(map(str, traffic_versions))}), got {value!r}")
        versions[key] = value
    if versions["baseline"] == versions["canary"]:
        raise RolloutError(f"{where}: baseline and canary are both version "
                           f"{versions['baseline']}; a rollout moves traffic between two")
    steps = item.get("steps")
    if (not isinstance(steps, list) or not steps
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in steps)):
        raise RolloutError(f"{where}.steps: expected a list of integer weights, e.g. "
                           f"[5, 25, 50, 100], got {steps!r}")
    if not all(1 <= s <= 100 for s in steps) or any(b <= a for a, b in pairwise(steps)):
        raise RolloutError(f"{where}.steps: weights must increase, each from 1 to 100; got "
                           f"{steps}")
    others = {v: w for v, w in traffic.items() if v not in versions.values()}
    held = sum(others.values())
    if held and steps[-1] + held > 100:
        named = ", ".join(f"version {v} at {w}" for v, w in sorted(others.items()) if w)
        raise RolloutError(f"{where}.steps: step {steps[-1]} cannot fit beside {named} (a "
                           f"rollout never moves other versions): keep the steps at or below "
                           f"{100 - held}, or set the other versions' weights to 0 first")
    step_s = _number(item.get("step_s", 300), f"{where}.step_s", 0, 30 * 86400, open_low=True)
    max_step_s = _number(item.get("max_step_s", 3600), f"{where}.max_step_s", 0, 30 * 86400,
                         open_low=True)
    if max_step_s < step_s:
        raise RolloutError(f"{where}.max_step_s: {max_step_s:g} s is shorter than step_s "
                           f"{step_s:g} s; no step could ever be promoted")
    alpha = _number(item.get("alpha", 0.05), f"{where}.alpha", 0, 0.5, open_low=True)
    return RolloutPlan(versions["baseline"], versions["canary"], tuple(steps), step_s,
                       max_step_s, alpha, _gates(item.get("gates"), f"{where}.gates"))


def parse_status(raw: Any, where: str) -> RolloutStatus:
    item = _mapping(raw, where, STATUS_KEYS)
    state = item.get("state")
    if state not in STATES:
        raise RolloutError(f"{where}.state: expected one of {', '.join(STATES)}, got {state!r}")
    step = item.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
        raise RolloutError(f"{where}.step: expected a step index, got {step!r}")
    canary = item.get("canary")
    if canary is not None and (isinstance(canary, bool) or not isinstance(canary, int)):
        raise RolloutError(f"{where}.canary: expected a version number, got {canary!r}")
    since, reason = item.get("since"), item.get("reason")
    return RolloutStatus(state, step, None if since is None else str(since),
                         None if reason is None else str(reason), canary)
