from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from gateway.deployments import Deployments, needed_versions, parse_version
from gateway.errors import NotFound, Unavailable
from gateway.routing.policy import parse_policy
from gateway.runtime.repository import scan_repository
from gateway.settings import BatchingSettings, Settings
from tests.conftest import MODEL, MODELS, write_echo_model

POLICY = "models: {breast-cancer: {traffic: [{version: 1, weight: 100}], shadow: [{version: 3}]}}"


def test_needed_versions_are_the_policys_plus_the_highest_of_unnamed_models(
        model_repo: Path) -> None:
    write_echo_model(model_repo, version=1)
    write_echo_model(model_repo, version=4)
    repository = scan_repository(model_repo)
    needed = needed_versions(parse_policy(POLICY, repository), repository)
    assert needed == {MODEL: {1, 3}, "echo": {4}}


@pytest.fixture
def deployments(model_repo: Path) -> Deployments:
    path = model_repo / MODEL / "3" / "model.onnx"
    path.write_bytes(path.read_bytes() + b"\0")
    repository = scan_repository(model_repo)
    table = Deployments(Settings(execution_provider="cpu"), repository)
    table.load(needed_versions(parse_policy(POLICY, repository), repository))
    return table


def test_lookups_answer_with_the_reason(deployments: Deployments) -> None:
    assert deployments.versions_of(MODEL)[1].session is not None
    with pytest.raises(NotFound, match="unknown model 'x'; this gateway serves 'breast-cancer'"):
        deployments.find("x", 1)
    with pytest.raises(NotFound, match="has no version 7; it has 1, 2, 3"):
        deployments.find(MODEL, 7)
    with pytest.raises(NotFound, match="not loaded; name it in the routing policy"):
        deployments.find(MODEL, 2)
    with pytest.raises(Unavailable, match="sha256"):
        deployments.find(MODEL, 3)
    assert deployments.problems() == [
        f"model '{MODEL}' version 3: " + str(deployments.versions_of(MODEL)[3].error)]


def test_versions_in_urls_are_canonical_positive_integers() -> None:
    assert parse_version("12") == 12
    assert parse_version("9" * 18) == int("9" * 18)  # fits an int64, as Triton's versions
    for text in ("0", "01", "-1", "1.0", "one", "9" * 19, "³", "١٢", "1\n", "٣", "²"):
        with pytest.raises(NotFound):
            parse_version(text)


def test_shipped_repository_loads_with_the_default_settings() -> None:
    repository = scan_repository(MODELS)
    table = Deployments(Settings(), repository)
    table.load({MODEL: frozenset({1})})
    assert table.problems() == []



def test_the_table_is_read_safely_while_a_thread_loads_into_it(tmp_path: Path) -> None:
    """A reload loads versions on a thread while the event loop iterates the table for
    /metrics, readiness and the reload itself: readers must never see it change under them."""
    for i in range(40):
        write_echo_model(tmp_path, f"echo{i}")
    repository = scan_repository(tmp_path)
    table = Deployments(Settings(batching=BatchingSettings(max_batch_size=1)), repository)
    errors: list[BaseException] = []
    done = threading.Event()

    def load() -> None:
        try:
            for model in repository:
                table.load({model: frozenset({1})})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # hand the GIL over as often as possible
    try:
        thread = threading.Thread(target=load)
        thread.start()
        while not done.is_set():
            try:
                table.all()
                table.inflight_by_model()
                table.problems()
                table.remove("nothing", 1)
            except RuntimeError as exc:  # "dictionary changed size during iteration"
                errors.append(exc)
                break
        thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    assert len(table.all()) == 40
