"""The controller in process, in fake time: its clock and its reader injected, the fleet's real
/metrics text, a real routing file on disk. Whole rollouts run through 100% and past it in a
fraction of a second; people edit the file while it runs; the file is broken under it."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from gateway.rollout.controller import Controller
from gateway.rollout.evidence import parse_metrics
from gateway.rollout.metrics import RolloutMetrics
from gateway.rollout.store import FileStore
from gateway.settings import load_settings
from loadtests.harness import write_gateway_config
from tests.conftest import MODELS
from tests.rollout.fleet import MODEL, Replica

OTHER = "fraud detector"
PLAN = """\
    rollout:
      baseline: 1
      canary: 2
      steps: [5, 25, 50, 100]
      step_s: 300
      max_step_s: 3600
      gates: {accuracy_margin: 0.02}
"""
README_PLAN = f"""\
# The SRE's file: comments and order stay.
models:
  {MODEL}:
    traffic:
      - {{version: 1, weight: 100}}   # in service
      - {{version: 2, weight: 0}}
    sticky_key: x-user-id
{PLAN}"""


class Fleet:
    """Two replicas serving what the file says, with labels at given accuracies."""

    def __init__(self, routing: Path) -> None:
        self.routing = routing
        self.replicas = {"http://a/metrics": Replica(), "http://b/metrics": Replica()}
        self.now = 1_800_000_000.0
        self.accuracy = {1: 0.98, 2: 0.98}
        self.serving: dict[str, dict[int, int]] = {}
        self.weights()

    def weights(self, model: str = MODEL) -> dict[int, int]:
        """The file's weights; while it is broken, those the gateways keep serving."""
        import yaml

        try:
            entry = yaml.safe_load(self.routing.read_text())["models"][model]
            found = {t["version"]: t["weight"] for t in entry["traffic"]}
        except (OSError, yaml.YAMLError, TypeError, KeyError):
            return self.serving[model]
        if sum(found.values()) == 100:
            self.serving[model] = found
        return self.serving[model]

    def status(self, model: str = MODEL) -> dict[str, object] | None:
        import yaml

        found = yaml.safe_load(self.routing.read_text())["models"][model].get("rollout_status")
        return dict(found) if found else None

    def serve(self, seconds: float, per_s: int = 200, model: str = MODEL) -> None:
        """`seconds` of routed traffic and its labels, split by the file's weights."""
        self.now += seconds
        for version, weight in self.weights(model).items():
            n = round(per_s * seconds * weight / 100 / len(self.replicas))
            for replica in self.replicas.values():
                replica.serve(version, n, model=model)
                replica.label(version, n, round(n * self.accuracy[version]), model=model)

    def read(self):  # type: ignore[no-untyped-def]
        return parse_metrics({url: r.text() for url, r in self.replicas.items()})


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """Odd but valid model names: a space in each."""
    root = tmp_path / "models"
    for name in (MODEL, OTHER):
        shutil.copytree(MODELS / "breast-cancer", root / name)
    return root


def controller(tmp_path: Path, repository: Path, routing: str,
               **kwargs: object) -> tuple[Controller, Fleet, io.StringIO]:
    config = write_gateway_config(tmp_path / "config", repository, routing)
    settings = load_settings(config)
    fleet = Fleet(settings.routing)
    out = io.StringIO()
    made = Controller(settings, fleet.read, out=out, clock=lambda: fleet.now, **kwargs)  # type: ignore[arg-type]
    return made, fleet, out


def lines(out: io.StringIO) -> Iterator[dict[str, object]]:
    for line in out.getvalue().splitlines():
        yield json.loads(line)


def test_the_readme_plan_runs_to_100_and_stays_promoted_past_max_step_s(
        tmp_path: Path, repository: Path) -> None:
    """Item 1: an equal canary through [5, 25, 50, 100], checked every 10 s, then two hours
    more: promoted at the end of the 50 step, never rolled back an hour later."""
    ctl, fleet, out = controller(tmp_path, repository, README_PLAN)
    ctl.evaluate()
    assert fleet.weights() == {1: 95, 2: 5}
    seen = []
    for _ in range(3 * 720):  # six hours of checks, 10 s apart
        fleet.serve(10)
        ctl.evaluate()
        seen.append(fleet.weights()[2])
        if fleet.status() and fleet.status()["state"] == "promoted":  # type: ignore[index]
            break
    assert fleet.weights() == {1: 0, 2: 100}
    assert sorted(set(seen)) == [5, 25, 50, 100]
    status = fleet.status()
    assert status is not None and status["state"] == "promoted" and status["canary"] == 2
    text = fleet.routing.read_text()
    assert text.startswith("# The SRE's file") and "- {version: 2, weight: 100}" in text
    for _ in range(2 * 60):  # two hours past it, a check a minute: nothing moves
        fleet.serve(60)
        ctl.evaluate()
    assert fleet.routing.read_text() == text
    assert {line["decision"] for line in list(lines(out))[-120:]} == {"done"}


def test_a_person_who_rolls_back_wins_and_names_the_next_canary(
        tmp_path: Path, repository: Path) -> None:
    """Items 8 and 9: weights set back to 100/0 by hand mid-rollout are recorded as a rollback
    by hand and never undone; naming another canary in the block starts the next release."""
    ctl, fleet, out = controller(tmp_path, repository, README_PLAN)
    ctl.evaluate()
    for _ in range(40):
        fleet.serve(10)
        ctl.evaluate()
    assert fleet.weights()[2] == 25
    fleet.routing.write_text(fleet.routing.read_text()
                             .replace("{version: 1, weight: 75}", "{version: 1, weight: 100}")
                             .replace("{version: 2, weight: 25}", "{version: 2, weight: 0}"))
    for _ in range(50):
        fleet.serve(10)
        ctl.evaluate()
    assert fleet.weights() == {1: 100, 2: 0}
    status = fleet.status()
    assert status is not None and status["state"] == "rolled_back"
    assert "by hand" in str(status["reason"])
    assert [line["decision"] for line in lines(out)][-49:] == ["done"] * 49
    # The next release: a person names version 3 in the block, nothing else.
    fleet.routing.write_text(fleet.routing.read_text()
                             .replace("- {version: 2, weight: 0}", "- {version: 3, weight: 0}")
                             .replace("canary: 2\n", "canary: 3\n"))
    fleet.accuracy[3] = 0.98
    ctl.evaluate()
    assert fleet.weights() == {1: 95, 3: 5}
    status = fleet.status()
    assert status is not None and (status["state"], status["canary"]) == ("progressing", 3)


def test_a_persons_edit_during_an_evaluation_wins_in_a_file_with_two_rollouts(
        tmp_path: Path, repository: Path) -> None:
    """Item 10: the first model's decision is written; then a person edits the second model's
    weights before the controller writes its decision. The second write must fail against the
    bytes the controller itself wrote, and the person's edit stay."""
    two = README_PLAN + README_PLAN.split("models:\n", 1)[1].replace(MODEL, OTHER)
    ctl, fleet, out = controller(tmp_path, repository, two)

    class PersonEditsBetweenWrites(FileStore):
        edits = 0

        def write(self, token: str, text: str) -> str | None:
            stored = super().write(token, text)
            if stored is not None and self.edits == 0:
                self.edits += 1
                now = self.path.read_text()
                head, tail = now.split(f"  {OTHER}:", 1)
                self.path.write_text(head + f"  {OTHER}:" + tail.replace(
                    "weight: 100}", "weight: 90}").replace("weight: 0}", "weight: 10}", 1))
            return stored

    ctl.store = PersonEditsBetweenWrites(fleet.routing)
    ctl.evaluate()
    decisions = {line["model"]: line for line in lines(out)}
    assert decisions[MODEL]["decision"] == "start" and fleet.weights() == {1: 95, 2: 5}
    assert decisions[OTHER]["decision"] == "hold"
    assert "a person's edit wins" in str(decisions[OTHER]["reason"])
    assert decisions[OTHER]["weight"] == 0  # item 12: the weight that stands, not 5
    assert fleet.weights(OTHER) == {1: 90, 2: 10}  # the person's edit stays


def test_the_gauge_reports_the_weight_written_after_a_lost_race(
        tmp_path: Path, repository: Path) -> None:
    ctl, fleet, _ = controller(tmp_path, repository, README_PLAN, metrics=RolloutMetrics())

    class AlwaysRaced(FileStore):
        def write(self, token: str, text: str) -> str | None:
            return None

    ctl.store = AlwaysRaced(fleet.routing)
    ctl.evaluate()
    assert ctl.metrics is not None
    assert ctl.metrics.canary_weight.labels(MODEL)._value.get() == 0


@pytest.mark.parametrize("breakage", [
    "weights summing to 101", "renamed away", "not YAML", "empty", "a folder"])
def test_ordinary_breakage_is_a_hold_and_the_rollout_goes_on_after(
        tmp_path: Path, repository: Path, breakage: str) -> None:
    """Item 14: nothing a person or a sync does to the file makes the controller exit."""
    ctl, fleet, out = controller(tmp_path, repository, README_PLAN)
    ctl.evaluate()
    good = fleet.routing.read_text()
    aside = fleet.routing.with_name("aside.yaml")
    if breakage == "weights summing to 101":
        fleet.routing.write_text(good.replace("weight: 95}", "weight: 96}"))
    elif breakage == "renamed away":
        fleet.routing.rename(aside)
    elif breakage == "not YAML":
        fleet.routing.write_text(good + "  - [unclosed\n")
    elif breakage == "empty":
        fleet.routing.write_text("")
    else:
        fleet.routing.unlink()
        fleet.routing.mkdir()
    ctl.run(10, stop=lambda: fleet.now > 1_800_000_100, sleep=lambda s: fleet.serve(s))
    held = list(lines(out))[-3:]
    assert all(line["decision"] == "hold" for line in held), held
    assert all("routing file not usable now" in str(line["reason"]) for line in held)
    if fleet.routing.is_dir():
        fleet.routing.rmdir()
    if aside.exists():
        aside.rename(fleet.routing)
    else:
        fleet.routing.write_text(good)
    for _ in range(40):
        fleet.serve(10)
        ctl.evaluate()
    assert fleet.weights()[2] == 25  # it went on


def test_with_nothing_to_roll_out_it_idles(tmp_path: Path, repository: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """Item 16: no rollout block is no reason to exit (a Deployment would crash-loop)."""
    ctl, fleet, out = controller(
        tmp_path, repository, {"models": {MODEL: {"traffic": [{"version": 1, "weight": 100}]}}})
    with caplog.at_level("INFO", logger="gateway.rollout"):
        ctl.run(10, stop=lambda: fleet.now > 1_800_000_060, sleep=lambda s: fleet.serve(s))
    assert out.getvalue() == ""
    said = [r for r in caplog.records if "no model" in r.getMessage()]
    assert len(said) == 1  # said once


def test_with_its_own_metrics_nothing_it_reads_stops_it(tmp_path: Path,
                                                        repository: Path) -> None:
    """Review finding 1: with --port (as shipped on Kubernetes) a file that could not be read
    made a line without a weight, which the controller's gauges choked on, and it exited."""
    ctl, fleet, _out = controller(tmp_path, repository, README_PLAN, metrics=RolloutMetrics())
    ctl.evaluate()
    aside = fleet.routing.with_name("aside.yaml")
    fleet.routing.rename(aside)
    ctl.run(10, stop=lambda: fleet.now > 1_800_000_050, sleep=lambda s: fleet.serve(s))
    aside.rename(fleet.routing)
    ctl.run(10, stop=lambda: fleet.now > 1_800_000_100, sleep=lambda s: fleet.serve(s))
    assert ctl.metrics is not None
    text = generate_latest(ctl.metrics.registry).decode()
    assert f'gateway_rollout_decisions_total{{decision="hold",model="{MODEL}"}}' in text
    # Review finding 2: every decision's series exists at 0 from the model's first line, so
    # increase() sees the first rollback.
    assert (f'gateway_rollout_decisions_total{{decision="rollback",model="{MODEL}"}} 0.0'
            in text)


def test_after_a_lost_write_no_later_decision_is_logged_as_written(
        tmp_path: Path, repository: Path) -> None:
    """Review finding 5: the first model's write loses a race; the second model's start must
    not be logged (nor counted) as if written."""
    two = README_PLAN + README_PLAN.split("models:\n", 1)[1].replace(MODEL, OTHER)
    ctl, fleet, out = controller(tmp_path, repository, two, metrics=RolloutMetrics())

    class RacedOnce(FileStore):
        def write(self, token: str, text: str) -> str | None:
            return None

    ctl.store = RacedOnce(fleet.routing)
    ctl.evaluate()
    decisions = {line["model"]: line for line in lines(out)}
    assert [decisions[m]["decision"] for m in (MODEL, OTHER)] == ["hold", "hold"]
    assert decisions[OTHER]["weight"] == 0 and "not written" in str(decisions[OTHER]["reason"])
    assert ctl.metrics is not None
    assert ctl.metrics.canary_weight.labels(OTHER)._value.get() == 0


def test_a_rollback_by_git_checkout_stands_too(tmp_path: Path, repository: Path) -> None:
    """Review findings 7 and 15: the person restores the file as committed (canary 0, no
    status) after the canary reached step 2 by hand; recorded as a rollback by hand at step 2,
    never started again."""
    ctl, fleet, _out = controller(tmp_path, repository, README_PLAN)
    original = fleet.routing.read_text()
    ctl.evaluate()
    assert fleet.weights() == {1: 95, 2: 5}
    fleet.routing.write_text(fleet.routing.read_text().replace("weight: 95}", "weight: 75}")
                             .replace("weight: 5}", "weight: 25}"))
    fleet.serve(10)
    ctl.evaluate()
    fleet.routing.write_text(original)  # git checkout -- config/routing.yaml
    for _ in range(5):
        fleet.serve(10)
        ctl.evaluate()
    assert fleet.weights() == {1: 100, 2: 0}
    status = fleet.status()
    assert status is not None and (status["state"], status["step"]) == ("rolled_back", 2)


def test_unreadable_metrics_still_show_every_gate(tmp_path: Path, repository: Path) -> None:
    """Review finding 11: --once --dry-run with metrics out of reach showed "(no gate set)"."""
    routing = README_PLAN.replace("gates: {accuracy_margin: 0.02}",
                                  "gates: {accuracy_margin: 0.02, max_p99_ratio: 1.5}")
    ctl, _fleet, out = controller(tmp_path, repository, routing, dry_run=True)

    def unreachable():  # type: ignore[no-untyped-def]
        raise OSError("connection refused")

    ctl.read = unreachable
    ctl.evaluate()
    line = next(lines(out))
    assert [g["gate"] for g in line["gates"]] == ["latency", "accuracy"]  # type: ignore[index]
    assert "connection refused" in str(line["reason"])
