"""The controller's edit of routing.yaml: only the weights and rollout_status change, every
other byte stays; a concurrent edit wins."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.rollout.store import replace_if_unchanged
from gateway.rollout.writer import EditError, with_decision
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


# --- files as people and tools write them (issue 25, items 13-15) ---------------------------

STATUS = {"state": "progressing", "canary": 2, "step": 2, "since": "2026-12-03T10:00:00Z",
          "reason": 'gate "errors": p=0.01\nsecond line, café, 😀, tab\there'}
REPOSITORY = {"breast-cancer": {1: None, 2: None}, "other-model": {1: None}}


def expected(text: str, model: str, weights: dict[int, int],
             status: dict[str, Any] | None) -> Any:
    """What the gateway must read after the edit: the old document, only weights and status
    changed."""
    doc = yaml.safe_load(text)
    for item in doc["models"][model]["traffic"]:
        if item["version"] in weights:
            item["weight"] = weights[item["version"]]
    if status is not None:
        doc["models"][model]["rollout_status"] = status
    return doc


def edited(text: str, model: str = "breast-cancer", weights: dict[int, int] | None = None,
           status: dict[str, Any] | None = STATUS) -> str:
    """The edit, checked the way the gateway reads the file (PyYAML, the policy's rules)."""
    weights = {1: 75, 2: 25} if weights is None else weights
    after = with_decision(text, model, weights, status)
    assert yaml.safe_load(after) == expected(text, model, weights, status)
    parse_policy(after.replace("\r\n", "\n"), REPOSITORY)  # type: ignore[arg-type]
    return after


def test_a_file_without_a_final_newline_gets_the_status_on_a_line_of_its_own() -> None:
    text = SRE_FILE.replace("  other-model:\n    traffic:\n      - version: 1\n"
                            "        weight: 100\n", "")
    assert text.endswith("min_requests: 200\n")
    after = edited(text.rstrip("\n"))
    assert after.endswith('        min_requests: 200\n    rollout_status: {state: "progressing", '
                          'canary: 2, step: 2, since: "2026-12-03T10:00:00Z", reason: "gate '
                          '\\"errors\\": p=0.01\\nsecond line, café, 😀, tab\\there"}')
    assert edited(text.rstrip("\n"), "breast-cancer", {1: 50, 2: 50}, None) \
        == text.rstrip("\n").replace("weight: 95", "weight: 50").replace("weight: 5}",
                                                                         "weight: 50}")


def test_document_markers_and_closing_comments_stay_outside_the_entry() -> None:
    for tail in ("...\n", "...", "# closing comment\n...\n# after the end\n", "\n\n# c\n"):
        text = "---\n" + SRE_FILE + tail
        after = edited(text, "other-model", {1: 100})
        assert after.startswith("---\n# Live routing policy")
        assert after.endswith("        weight: 100\n    rollout_status: " +
                              after.split("rollout_status: ", 1)[1].split("\n")[0] + "\n" + tail)


def test_crlf_stays_crlf_and_a_byte_order_mark_stays() -> None:
    text = "\ufeff" + SRE_FILE.replace("\n", "\r\n")
    for model, weights in (("breast-cancer", {1: 75, 2: 25}), ("other-model", {1: 100})):
        for ending in (text, text.rstrip("\r\n")):
            after = edited(ending, model, weights)
            assert after.startswith("\ufeff# Live")
            assert "\n" not in after.replace("\r\n", ""), "a bare LF was added"
            assert after.endswith("\r\n") == ending.endswith("\r\n")
            assert after.count("\r\n") == ending.count("\r\n") + 1


def test_the_status_names_its_canary_and_any_reason_reads_back_exactly() -> None:
    for reason in ('quote " and \\ and colon: x', "line\nbreak\r\nand\ttab", "naïve — 日本 😀",
                   "\x85\u2028\u2029\ufeff\x7f\x00 end", "", "#not a comment", "'single'"):
        status = {"state": "rolled_back", "canary": 3, "step": 1, "since": None,
                  "reason": reason}
        edited(SRE_FILE, status=status)
    floats = {"state": "promoted", "canary": 2, "step": 4, "since": "x", "reason": "r",
              "small": 1e-05, "big": 1e300, "nan": float("nan"), "inf": float("-inf")}
    after = with_decision(SRE_FILE, "breast-cancer", {}, floats)
    status = yaml.safe_load(after)["models"]["breast-cancer"]["rollout_status"]
    assert status["small"] == 1e-05 and status["big"] == 1e300 and status["inf"] < 0
    assert list(status) == list(floats)  # the keys in the order given


def test_an_existing_status_in_any_style_is_replaced_where_it_stands() -> None:
    head = SRE_FILE.split("  other-model:")[0]
    tail = "  other-model:" + SRE_FILE.split("  other-model:")[1]
    for old in ("    rollout_status: {state: progressing, step: 1}\n",
                "    rollout_status: {state: progressing,\n      step: 1, reason: 'a: b'}\n",
                "    rollout_status:\n      state: progressing\n      step: 1   # note\n"
                "      reason: >\n        folded\n        text\n\n",
                "    rollout_status:\n", "    rollout_status: null\n",
                "    rollout_status: {state: promoted, canary: 2}  # written by the controller\n"):
        text = head + old + tail
        after = edited(text)
        assert after.count("rollout_status") == 1
        assert after.endswith(tail)


def test_a_flow_style_model_entry_is_edited_inside_its_braces() -> None:
    text = ("models:\n  breast-cancer: {traffic: [{version: 1, weight: 95}, {version: 2, "
            "weight: 5}],\n    rollout: {baseline: 1, canary: 2, steps: [5, 25]}}  # flow\n"
            "  other-model: {traffic: [{version: 1, weight: 100}], }\n")
    after = edited(text)
    assert after.splitlines()[2].startswith("    rollout: {baseline: 1, canary: 2, steps: "
                                            "[5, 25]}, rollout_status: {state:")
    assert after.splitlines()[2].endswith("}}  # flow")
    edited(text, "other-model", {1: 100})
    edited(edited(text), status={"state": "promoted", "canary": 2})  # replaced inside too


def test_duplicate_keys_edit_the_occurrence_the_gateway_reads() -> None:
    stale = SRE_FILE.replace("models:\n", "models:\n  breast-cancer:\n    traffic:\n"
                             "      - {version: 1, weight: 50}\n      - {version: 2, weight: "
                             "50}\n", 1)
    after = edited(stale)
    assert "weight: 50}" in after  # the stale entry PyYAML ignores is left as it was
    twice = SRE_FILE.replace("{version: 2, weight: 5}", "{version: 2, weight: 7, weight: 5}")
    assert "weight: 7, weight: 25}" in edited(twice)
    traffic = SRE_FILE.replace("    sticky_key", "    traffic: [{version: 1, weight: 90}, "
                               "{version: 2, weight: 10}]\n    sticky_key")
    after = edited(traffic)
    assert "weight: 95}" in after and "weight: 5}" in after
    assert "traffic: [{version: 1, weight: 75}, {version: 2, weight: 25}]" in after


def test_an_anchor_on_a_weight_is_kept_and_an_alias_is_refused() -> None:
    anchored = SRE_FILE.replace("weight: 5}", "weight: &canary 5}")
    assert "{version: 2, weight: &canary 25}" in edited(anchored)
    tagged = SRE_FILE.replace("weight: 5}", "weight: !!int 5}")
    assert "weight: !!int 25}" in edited(tagged)
    aliased = anchored.replace("min_requests: 200", "min_requests: *canary")
    with pytest.raises(EditError, match=r"models\.breast-cancer \(line 3\): the weight of "
                                        r"version 2 on line 6 is an alias"):
        with_decision(aliased, "breast-cancer", {1: 75, 2: 25}, STATUS)
    alias = SRE_FILE.replace("weight: 95}", "weight: &most 95}").replace(
        "weight: 100\n", "weight: *most\n").replace("weight: 5}", "weight: 5}  # ")
    with pytest.raises(EditError, match="write it out where it is used"):
        with_decision(alias, "other-model", {1: 100}, STATUS)
    shared = SRE_FILE.replace("    traffic:                 #", "    traffic: &split        #")
    shared = shared.replace("  other-model:\n    traffic:\n      - version: 1\n        weight: "
                            "100\n", "  other-model:\n    traffic: *split\n")
    with pytest.raises(EditError, match="the traffic list on line 4"):
        with_decision(shared, "breast-cancer", {1: 75, 2: 25}, None)


def test_what_cannot_be_edited_exactly_is_an_edit_error_naming_the_model() -> None:
    cases = {
        "models:\n  breast-cancer:\n\ttraffic: []\n": "not YAML the gateway reads",
        "models: {breast-cancer: {<<: {traffic: [{version: 1, weight: 100}]}}}\n": "merge key",
        "models:\n  breast-cancer:\n    traffic:\n      - {version: 1, weight: '100'}\n":
            "not a plain number",
        "models:\n  other:\n    traffic: []\n": "no such model",
        "models:\n  breast-cancer: [1]\n": "expected a mapping",
        "": "the routing file is empty",
        "# only a comment\n": "the routing file is empty",
        "models:\n  breast-cancer:\n    rollout: {}\n": "has no 'traffic'",
        "a: 1\n---\nb: 2\n": "not YAML the gateway reads",
    }
    for text, problem in cases.items():
        with pytest.raises(EditError, match=problem) as caught:
            with_decision(text, "breast-cancer", {1: 100}, STATUS)
        assert "models.breast-cancer" in str(caught.value)
