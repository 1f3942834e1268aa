"""The rollout block (SPEC 9) is validated with the rest of the policy: a bad block rejects the
edit with the key and the reason; a good one is parsed and serving ignores it."""

from __future__ import annotations

import pytest

from gateway.routing.policy import PolicyError, parse_policy
from gateway.runtime.repository import scan_repository
from tests.conftest import MODELS

REPOSITORY = scan_repository(MODELS)
HEAD = """
models:
  breast-cancer:
    traffic: [{version: 1, weight: 100}, {version: 2, weight: 0}]
    sticky_key: x-user-id
"""
BLOCK = """    rollout:
      baseline: 1
      canary: 2
      steps: [5, 25, 50, 100]
      step_s: 300
      max_step_s: 3600
      alpha: 0.05
      gates: {max_error_rate_increase: 0.01, max_p99_ratio: 1.5, min_requests: 200,
              accuracy_margin: 0.02, min_shadow_agreement: 0.95, max_prediction_psi: 0.2}
"""


def test_the_specs_block_parses_and_changes_nothing_served() -> None:
    policy = parse_policy(HEAD + BLOCK + "    rollout_status: {state: progressing, step: 1, "
                          "since: '2026-12-03T10:00:00Z', reason: promoted}\n", REPOSITORY)
    model = policy.models["breast-cancer"]
    plan = model.rollout
    assert plan is not None and (plan.baseline, plan.canary, plan.steps) == (1, 2, (5, 25, 50, 100))
    assert plan.gates.min_requests == 200 and plan.gates.accuracy_margin == 0.02
    assert model.rollout_status is not None and model.rollout_status.step == 1
    assert model.versions() == parse_policy(HEAD, REPOSITORY).models["breast-cancer"].versions()
    minimal = parse_policy(HEAD + "    rollout: {baseline: 1, canary: 2, steps: [10, 100]}\n",
                           REPOSITORY).models["breast-cancer"].rollout
    assert minimal is not None and minimal.gates.max_p99_ratio is None and minimal.alpha == 0.05


@pytest.mark.parametrize("change,fragment", [
    (("canary: 2", "canary: 3"), "rollout.canary: expected a version listed in traffic (1, 2)"),
    (("baseline: 1", "baseline: 2"), "baseline and canary are both version 2"),
    (("steps: [5, 25, 50, 100]", "steps: [5, 50, 25, 100]"), "weights must increase"),
    (("steps: [5, 25, 50, 100]", "steps: [5, 25, 50, 120]"), "each from 1 to 100"),
    (("steps: [5, 25, 50, 100]", "steps: []"), "expected a list of integer weights"),
    (("min_requests: 200", "min_request: 200"), "gates: unknown key(s) min_request"),
    (("alpha: 0.05", "alpha: 0"), "rollout.alpha: expected a number above 0"),
    (("max_step_s: 3600", "max_step_s: 60"), "shorter than step_s"),
    (("step_s: 300", "step_s: soon"), "rollout.step_s: expected a number"),
    (("max_p99_ratio: 1.5", "max_p99_ratio: -1"), "max_p99_ratio: expected a number above 0"),
])
def test_a_bad_block_names_its_key_and_rejects_the_policy(change: tuple[str, str],
                                                          fragment: str) -> None:
    with pytest.raises(PolicyError) as error:
        parse_policy(HEAD + BLOCK.replace(*change), REPOSITORY)
    assert fragment in str(error.value)
    assert str(error.value).startswith("models.breast-cancer.rollout")


def test_an_unknown_state_in_the_status_is_refused() -> None:
    with pytest.raises(PolicyError, match="rollout_status.state: expected one of progressing"):
        parse_policy(HEAD + "    rollout_status: {state: done}\n", REPOSITORY)
