from __future__ import annotations

import hashlib
import random
import subprocess
import sys

import pytest

from gateway.routing.decide import (
    FLAG,
    SPLIT,
    choose_version,
    random_version,
    stable_unit,
    sticky_version,
)
from gateway.routing.policy import Flag, ModelPolicy, TrafficEntry
from tests.conftest import ROOT


def traffic(*weights: int) -> tuple[TrafficEntry, ...]:
    return tuple(TrafficEntry(version, weight) for version, weight in enumerate(weights, 1))


def policy(*weights: int, sticky: str | None = "x-user-id",
           flags: tuple[Flag, ...] = ()) -> ModelPolicy:
    return ModelPolicy(traffic(*weights), sticky, flags, ())


def binomial_ok(hits: int, n: int, p: float) -> bool:
    """Within 5 standard deviations of n·p: fails by chance about once in 3 million runs."""
    return abs(hits - n * p) <= 5 * (n * p * (1 - p)) ** 0.5 + 1


def test_stable_unit_is_blake2b_and_the_same_in_every_process() -> None:
    digest = hashlib.blake2b(b"2\0user-7", digest_size=8).digest()
    assert stable_unit("user-7", 2) == (int.from_bytes(digest, "big") + 0.5) / 2**64
    code = "from gateway.routing.decide import stable_unit; print(repr(stable_unit('user-7', 2)))"
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                             text=True, env={"PYTHONHASHSEED": seed, "PATH": ""}, check=True)
        assert float(out.stdout) == stable_unit("user-7", 2)


@pytest.mark.parametrize("weights", [(90, 10), (50, 50), (5, 25, 70), (0, 100)])
def test_sticky_shares_follow_the_weights(weights: tuple[int, ...]) -> None:
    n = 20_000
    chosen = [sticky_version(traffic(*weights), f"user-{i}") for i in range(n)]
    for version, weight in enumerate(weights, 1):
        assert binomial_ok(chosen.count(version), n, weight / 100), (version, weights)


def test_a_growing_canary_only_gains_keys() -> None:
    keys = [f"user-{i}" for i in range(5000)]
    previous: set[str] = set()
    for canary in (0, 5, 25, 50, 100):
        on_canary = {k for k in keys if sticky_version(traffic(100 - canary, canary), k) == 2}
        assert previous <= on_canary, f"keys left the canary at {canary}%"
        previous = on_canary
    assert previous == set(keys)


def test_a_third_version_growing_takes_keys_from_both_others_and_gives_none_back() -> None:
    keys = [f"k{i}" for i in range(3000)]
    before = {k: sticky_version(traffic(60, 40, 0), k) for k in keys}
    after = {k: sticky_version(traffic(45, 30, 25), k) for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert moved and all(after[k] == 3 for k in moved)


def test_random_split_by_cumulative_weight() -> None:
    rng = random.Random(0)
    n = 20_000
    chosen = [random_version(traffic(90, 0, 10), rng.random()) for _ in range(n)]
    assert chosen.count(2) == 0
    assert binomial_ok(chosen.count(3), n, 0.10)
    assert random_version(traffic(90, 10), 0.0) == 1
    assert random_version(traffic(90, 10), 0.999999) == 2


def test_flags_come_first_and_the_first_match_wins() -> None:
    flags = (Flag("beta", "x-beta", None, frozenset({"true"}), 2),
             Flag("cohort", None, "cohort", frozenset({"a", "true"}), 3))
    p = policy(100, 0, 0, flags=flags)
    assert choose_version(p, {"x-beta": "true"}, {"cohort": "a"}).version == 2
    assert choose_version(p, {"x-beta": "no"}, {"cohort": "a"}) == choose_version(
        p, {}, {"cohort": "a"})
    assert choose_version(p, {}, {"cohort": "a"}).route == FLAG
    assert choose_version(p, {}, {"cohort": True}).version == 3  # V2 booleans match "true"
    unflagged = choose_version(p, {"x-user-id": "u1"}, {"cohort": "b"})
    assert unflagged.route == SPLIT and unflagged.version == 1


def test_sticky_key_or_random_draw() -> None:
    p = policy(50, 50)
    assert len({choose_version(p, {"x-user-id": "u9"}, {}).version for _ in range(50)}) == 1
    assert choose_version(p, {}, {}, draw=lambda: 0.2).version == 1
    assert choose_version(p, {}, {}, draw=lambda: 0.7).version == 2
    no_key = policy(50, 50, sticky=None)
    assert choose_version(no_key, {"x-user-id": "u9"}, {}, draw=lambda: 0.7).version == 2
