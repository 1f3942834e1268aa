"""The controller's edit of routing.yaml: only the weights and rollout_status change, every
other byte stays; a concurrent edit wins."""

from __future__ import annotations

import difflib
from pathlib import Path

from gateway.rollout.writer import replace_if_unchanged, with_decision
from gateway.routing.policy import parse_policy
from gateway.runtime.repository import scan_repository
from tests.conftest import MODELS, ROOT

SRE_FILE = """\
# Live routing policy: edited by people and by `gateway rollout`.
models:
  breast-cancer:
    traffic:                 # weighted split of unpinned requests
      - {version: 1, weight: 95}   # the baseline
      - {version: 2, weight: 5}
    sticky_key: x-user-id    # same user, same version
    rollout:
      baseline: 1
      canary: 2
      steps: [5, 25, 50, 100]
      gates:
        accuracy_margin: 0.02   # labels decide
        min_requests: 200
  other-model:
    traffic:
      - version: 1
        weight: 100
"""


def changed_lines(before: str, after: str) -> list[str]:
    return [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(),
                                                  lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_only_the_weights_and_the_status_change() -> None:
    after = with_decision(SRE_FILE, "breast-cancer", {1: 75, 2: 25},
                          {"state": "progressing", "step": 1,
                           "since": "2026-12-03T10:00:00Z", "reason": "promoted"})
    assert changed_lines(SRE_FILE, after) == [
        "-      - {version: 1, weight: 95}   # the baseline",
        "-      - {version: 2, weight: 5}",
        "+      - {version: 1, weight: 75}   # the baseline",
        "+      - {version: 2, weight: 25}",
        '+    rollout_status: {state: "progressing", step: 1, since: "2026-12-03T10:00:00Z", '
        'reason: "promoted"}',
    ]
    again = with_decision(after, "breast-cancer", {1: 100, 2: 0},
                          {"state": "rolled_back", "step": 1, "reason": "gate failed: x"})
    assert len(changed_lines(after, again)) == 6  # two weights and the status, each - and +
    policy = parse_policy(again, {"breast-cancer": {1: None, 2: None},  # type: ignore[dict-item]
                                  "other-model": {1: None}})
    status = policy.models["breast-cancer"].rollout_status
    assert status is not None and status.state == "rolled_back"


def test_the_shipped_routing_file_round_trips_byte_for_byte() -> None:
    text = (ROOT / "config" / "routing.yaml").read_text()
    assert with_decision(text, "breast-cancer", {}, None) == text
    repository = scan_repository(MODELS)
    assert parse_policy(with_decision(text, "breast-cancer", {1: 10, 2: 90}, None), repository)


def test_a_concurrent_edit_wins(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(SRE_FILE)
    decided = with_decision(SRE_FILE, "breast-cancer", {1: 75, 2: 25}, None)
    path.write_text(SRE_FILE.replace("weight: 95", "weight: 90").replace("weight: 5}",
                                                                         "weight: 10}"))
    assert not replace_if_unchanged(path, SRE_FILE, decided)
    assert "weight: 90" in path.read_text()
    path.write_text(SRE_FILE)
    assert replace_if_unchanged(path, SRE_FILE, decided)
    assert path.read_text() == decided
    assert [p.name for p in tmp_path.iterdir()] == ["routing.yaml"]  # nothing left beside it


def test_the_status_goes_at_the_end_of_its_own_entry_before_what_follows() -> None:
    text = SRE_FILE + "# a closing comment of the file\n"
    after = with_decision(text, "other-model", {}, {"state": "promoted", "step": 0})
    assert after.endswith('        weight: 100\n    rollout_status: {state: "promoted", '
                          'step: 0}\n# a closing comment of the file\n')
    first = with_decision(text, "breast-cancer", {}, {"state": "progressing"})
    assert '        min_requests: 200\n    rollout_status: {state: "progressing"}\n' \
           '  other-model:\n' in first
