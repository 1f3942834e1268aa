from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.routing.policy import (
    PolicyError,
    default_version,
    needed_versions,
    parse_policy,
    weighted_versions,
)
from gateway.runtime.repository import scan_repository
from tests.conftest import MODEL, MODELS, shipped_bytes, write_echo_model

REPOSITORY = scan_repository(MODELS)

FULL = """
models:
  breast-cancer:
    traffic:
      - {version: 1, weight: 90}
      - {version: 2, weight: 10}
    sticky_key: X-User-Id
    flags:
      - name: beta-testers
        header: X-Beta
        values: [true]
        version: 2
      - {name: by-param, parameter: cohort, values: [a, 7], version: 1}
    shadow:
      - {version: 3, percent: 50}
"""


def test_spec_example_parses() -> None:
    policy = parse_policy(FULL, REPOSITORY)
    model = policy.models[MODEL]
    assert [(t.version, t.weight) for t in model.traffic] == [(1, 90), (2, 10)]
    assert model.sticky_key == "x-user-id"
    assert model.flags[0].header == "x-beta" and model.flags[0].values == {"true"}
    assert model.flags[1].parameter == "cohort" and model.flags[1].values == {"a", "7"}
    assert model.shadow[0].percent == 50.0
    assert model.versions() == {1, 2, 3}
    assert len(policy.source_sha256) == 64


def test_shipped_policy_is_valid() -> None:
    # The committed config/routing.yaml: version 1 serving everything, where the README's
    # rollout walk-through starts.
    policy = parse_policy(shipped_bytes("config/routing.yaml").decode(), REPOSITORY)
    assert [(t.version, t.weight) for t in policy.models[MODEL].traffic] == [(1, 100)]


def test_the_walk_throughs_first_step_applies_to_the_shipped_policy() -> None:
    # Step 1 of "A rollout, step by step": add version 2 at weight 0 and a shadow of it.
    doc = yaml.safe_load(shipped_bytes("config/routing.yaml"))
    doc["models"][MODEL]["traffic"].append({"version": 2, "weight": 0})
    doc["models"][MODEL]["shadow"] = [{"version": 2, "percent": 100}]
    assert parse_policy(yaml.safe_dump(doc), REPOSITORY).models[MODEL].versions() == {1, 2}


def with_model(**changes: object) -> str:
    doc = yaml.safe_load(FULL)
    doc["models"][MODEL].update(changes)
    return yaml.safe_dump(doc)


@pytest.mark.parametrize("text,fragment", [
    ("", "empty"),
    ("models: [", "not valid YAML"),
    ("routes: {}", "unknown key"),
    ("models: 3", "mapping of model name"),
    ("models: {nope: {traffic: [{version: 1, weight: 100}]}}", "no model 'nope'"),
    (with_model(traffic=[{"version": 1, "weight": 50}]), "sum to 50"),
    (with_model(traffic=[{"version": 9, "weight": 100}]), "has no version 9"),
    (with_model(traffic=[]), "at least one"),
    (with_model(traffic=[{"version": 1, "weight": 100}, {"version": 2, "weight": 0},
                         {"version": 2, "weight": 0}]),
     "version 2 of model 'breast-cancer' is listed more than once"),
    (with_model(traffic=[{"version": 1, "weight": 100.0}]), "weight: expected an integer"),
    (with_model(traffic=[{"version": 1, "weight": 100, "share": 1}]), "unknown key"),
    (with_model(flags=[{"name": "f", "values": ["x"], "version": 1}]), "exactly one of"),
    (with_model(flags=[{"name": "f", "header": "h", "parameter": "p", "values": ["x"],
                        "version": 1}]), "exactly one of"),
    (with_model(flags=[{"name": "f", "header": "h", "values": [], "version": 1}]),
     "non-empty list"),
    (with_model(shadow=[{"version": 3, "percent": 150}]), "from 0 to 100"),
    (with_model(sticky_key=5), "header name"),
    (with_model(colour="red"), "unknown key"),
])
def test_invalid_policies_name_the_key_and_the_problem(text: str, fragment: str) -> None:
    with pytest.raises(PolicyError, match=fragment):
        parse_policy(text, REPOSITORY)


def test_missing_traffic_is_named() -> None:
    with pytest.raises(PolicyError, match="models.breast-cancer: needs 'traffic'"):
        parse_policy("models: {breast-cancer: {sticky_key: x}}", REPOSITORY)


def test_the_default_and_the_weighted_versions_of_named_and_unnamed_models() -> None:
    named = parse_policy("models: {breast-cancer: {traffic: [{version: 1, weight: 0}, "
                         "{version: 2, weight: 70}, {version: 3, weight: 30}]}}", REPOSITORY)
    policy = named.models["breast-cancer"]
    assert default_version(policy, [1, 2, 3]) == 2  # the primary, not the highest
    assert weighted_versions(policy, [1, 2, 3]) == {2, 3}
    assert default_version(None, [1, 4, 2]) == 4  # a model the policy does not name
    assert weighted_versions(None, [1, 4, 2]) == {4}


SHADOWED = ("models: {breast-cancer: {traffic: [{version: 1, weight: 100}], "
            "shadow: [{version: 3}]}}")


def test_needed_versions_are_the_policys_plus_the_highest_of_unnamed_models(
        model_repo: Path) -> None:
    write_echo_model(model_repo, version=1)
    write_echo_model(model_repo, version=4)
    repository = scan_repository(model_repo)
    needed = needed_versions(parse_policy(SHADOWED, repository), repository)
    assert needed == {MODEL: {1, 3}, "echo": {4}}
