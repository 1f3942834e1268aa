"""The controller's edit of routing.yaml: only the weights and rollout_status change, every
other byte stays; a concurrent edit wins."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gateway.rollout.store import replace_if_unchanged
from gateway.rollout.writer import EditError, with_decision
from gateway.routing.policy import parse_policy
from gateway.runtime.repository import scan_repository
from tests.conftest import MODELS, shipped_bytes

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
    text = shipped_bytes("config/routing.yaml").decode()
    assert with_decision(text, "breast-cancer", {}, None) == text
    repository = scan_repository(MODELS)
    assert parse_policy(with_decision(text, "breast-cancer", {1: 100}, STATUS), repository)


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


# --- property: every variant round-trips exactly or is an EditError ------------------------

@st.composite
def routing_files(draw: st.DrawFn) -> tuple[str, str, bool]:
    """A routing file as editors, people and ConfigMaps write it; its line ending; and whether
    the writer must refuse it (an alias on the way to a weight)."""
    nl = draw(st.sampled_from(["\n", "\r\n"]))
    p = " " * draw(st.sampled_from([2, 3, 4]))
    alias = draw(st.sampled_from(["none"] * 4 + ["alias_weight", "aliased_weight"]))
    canary = draw(st.sampled_from(["5", "&w 5", "!!int 5", "0x5", "05", "+5"]))
    baseline = "95"
    if alias == "aliased_weight":
        canary = "&w 5"
    if alias == "alias_weight":
        canary, baseline = "0", "*full"
    stale_weight = "weight: 9, " if draw(st.booleans()) else ""
    comment = draw(st.sampled_from(["", "  # a comment", "   #\ttab in a comment"]))
    items = draw(st.sampled_from(["flow", "block", "flowlist"]))
    key = draw(st.sampled_from(["traffic", '"traffic"', "'traffic'"]))
    if items == "flowlist":
        traffic = [f"{p}{key}: [{{version: 1, weight: {baseline}}},{comment and nl + p * 2} "
                   f"{{version: 2, {stale_weight}weight: {canary}}}]"]
    elif items == "flow":
        traffic = [f"{p}{key}:{comment}", f"{p * 2}- {{version: 1, weight: {baseline}}}{comment}",
                   f"{p * 2}- {{version: 2, {stale_weight}weight: {canary}}}"]
    else:
        traffic = [f"{p}{key}:", f"{p * 2}- version: 1", f"{p * 2}  weight: {baseline}{comment}",
                   f"{p * 2}- weight: {canary}", f"{p * 2}  version: 2"]
    gates = "min_requests: *w" if alias == "aliased_weight" else "accuracy_margin: 0.02"
    rollout = [f"{p}rollout:", f"{p * 2}baseline: 1", f"{p * 2}canary: 2",
               f"{p * 2}steps: [5, 25, 50, 100]", f"{p * 2}gates: {{{gates}}}"]
    old_status = draw(st.sampled_from([
        [], [f"{p}rollout_status: {{state: progressing, canary: 2, step: 1}}"],
        [f"{p}rollout_status:", f"{p * 2}state: progressing", f"{p * 2}reason: |",
         f"{p * 3}two", f"{p * 3}lines", ""],
        [f"{p}rollout_status: {{state: progressing,", f"{p * 2}reason: 'a: b'}}{comment}"],
        [f"{p}rollout_status: ~"]]))
    parts = draw(st.permutations([traffic, [f"{p}sticky_key: \"x-user\\tid\"{comment}"],
                                  rollout, old_status]))
    if alias == "aliased_weight":  # an alias follows its anchor
        parts = sorted(parts, key=lambda part: part is not traffic)
    entry = [f"{p}breast-cancer:"] + [f"{p}{line}" if line else line
                                      for part in parts for line in part]
    if draw(st.booleans()) and alias == "none":  # one flow-style entry
        joiner = "," + nl + p * 3 if draw(st.booleans()) else ", "
        entry = [f"{p}breast-cancer: {{traffic: [{{version: 1, weight: {baseline}}}, "
                 f"{{version: 2, {stale_weight}weight: {canary}}}]{joiner}rollout: "
                 f"{{baseline: 1, canary: 2, steps: [5, 25]}}}}{comment}"]
    other = [f"{p}other-model:", f"{p * 2}traffic:", f"{p * 3}- version: 1",
             f"{p * 3}  weight: {'&full ' if alias == 'alias_weight' else ''}100"]
    models = other + [""] * draw(st.integers(0, 2)) + entry
    if alias != "alias_weight" and draw(st.booleans()):
        models = [*entry, "# between the models", *other]
    if draw(st.booleans()):  # a stale duplicate the gateway ignores (the last one wins)
        models = [f"{p}breast-cancer: {{traffic: [{{version: 1, weight: 100}}]}}", *models]
    lines = (["# routing\t(tab)"] * draw(st.booleans()) + ["---"] * draw(st.booleans())
             + ["models:"] + models + ["# the end"] * draw(st.booleans())
             + ["..."] * draw(st.booleans()))
    text = nl.join(lines) + nl * draw(st.booleans())
    return ("\ufeff" if draw(st.booleans()) else "") + text, nl, alias != "none"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(routing_files(), st.integers(0, 100), st.text(max_size=40),
       st.sampled_from(["breast-cancer", "other-model"]))
def test_every_variant_round_trips_exactly_or_is_refused(
        variant: tuple[str, str, bool], weight: int, reason: str, model: str) -> None:
    text, nl, refuse = variant
    parse_policy(text, REPOSITORY)  # type: ignore[arg-type]  # the gateway takes it
    weights = {1: 100 - weight, 2: weight} if model == "breast-cancer" else {1: 100}
    status = {"state": "progressing", "canary": 2, "step": 1, "since": "2026-12-03T10:00:00Z",
              "reason": reason}
    # an alias refuses the edits that touch it: both models share `&full` in alias_weight
    refuse = refuse and (model == "breast-cancer" or "*full" in text)
    try:
        after = with_decision(text, model, weights, status)
    except EditError as exc:
        assert refuse, f"refused a file it can edit: {exc}"
        event("refused")
        return
    event("edited")
    assert not refuse, "edited through an alias"
    assert yaml.safe_load(after) == expected(text, model, weights, status)
    parse_policy(after, REPOSITORY)  # type: ignore[arg-type]
    assert after.startswith("\ufeff") == text.startswith("\ufeff")
    assert after.endswith(nl) == text.endswith(nl)
    if nl == "\r\n":
        assert "\n" not in after.replace("\r\n", "")
    for line in changed_lines(text, after):
        assert line.startswith("+") or "weight" in line or line.startswith(
            "-" + " " * 4) or "rollout_status" in line, line


BASE = SRE_FILE.replace("      - version: 1\n        weight: 100\n",
                        "      - {version: 1, weight: &full 100}  # 'quoted' \"x\"\n") + "...\n"
TOKENS = [" ", "  ", "\t", "\n", "\r\n", "#", " # c", "&a ", "*a", "*full", "!!int ", "'", '"',
          "{", "}", "[", "]", ",", ": ", "- ", "? ", "|", ">", "...", "---", "\ufeff", "é",
          "<<: ", "~", "0", "rollout_status: {state: promoted}", "weight: 5"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(BASE)), st.sampled_from(TOKENS)), max_size=3),
       st.sampled_from(["breast-cancer", "other-model"]), st.booleans())
def test_any_file_the_gateway_accepts_is_edited_exactly_or_refused_never_crashes(
        inserts: list[tuple[int, str]], model: str, with_status: bool) -> None:
    text = BASE
    for at, token in sorted(inserts, reverse=True):
        text = text[:at] + token + text[at:]
    try:
        parse_policy(text, REPOSITORY)  # type: ignore[arg-type]
    except Exception:
        event("the gateway rejects it")
        return  # the gateway rejects it too; the controller holds on its parse
    weights = {1: 75, 2: 25} if model == "breast-cancer" else {1: 100}
    status = STATUS if with_status else None
    try:
        after = with_decision(text, model, weights, status)
    except EditError as exc:
        event(f"refused: {str(exc).split(': ', 1)[1][:30]}")
        return
    event("edited")
    assert yaml.safe_load(after) == expected(text, model, weights, status)
