from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from gateway.errors import NotFound, Unavailable
from gateway.lifecycle import Lifecycle
from gateway.routing.policy import needed_versions, parse_policy
from gateway.runtime.registry import Registry
from gateway.runtime.repository import scan_repository
from gateway.settings import BatchingSettings, Settings
from tests.conftest import MODEL, MODELS, write_echo_model

POLICY = "models: {breast-cancer: {traffic: [{version: 1, weight: 100}], shadow: [{version: 3}]}}"


@pytest.fixture
def registry(model_repo: Path) -> Registry:
    path = model_repo / MODEL / "3" / "model.onnx"
    path.write_bytes(path.read_bytes() + b"\0")
    repository = scan_repository(model_repo)
    registry = Registry(repository)
    Lifecycle(Settings(execution_provider="cpu"), registry).load(
        needed_versions(parse_policy(POLICY, repository), repository))
    return registry


def test_lookups_answer_with_the_reason(registry: Registry) -> None:
    assert registry.versions_of(MODEL)[1].session is not None
    with pytest.raises(NotFound, match="unknown model 'x'; this gateway serves 'breast-cancer'"):
        registry.find("x", 1)
    with pytest.raises(NotFound, match="has no version 7; it has 1, 2, 3"):
        registry.find(MODEL, 7)
    with pytest.raises(NotFound, match="not loaded; name it in the routing policy"):
        registry.find(MODEL, 2)
    with pytest.raises(Unavailable, match="sha256"):
        registry.find(MODEL, 3)
    assert registry.problems() == [
        f"model '{MODEL}' version 3: " + str(registry.versions_of(MODEL)[3].error)]


def test_shipped_repository_loads_with_the_default_settings() -> None:
    repository = scan_repository(MODELS)
    registry = Registry(repository)
    Lifecycle(Settings(), registry).load({MODEL: frozenset({1})})
    assert registry.problems() == []



def test_the_table_is_read_safely_while_a_thread_loads_into_it(tmp_path: Path) -> None:
    """A reload loads versions on a thread while the event loop iterates the registry for
    /metrics, readiness and the reload itself: readers must never see it change under them,
    and the loop unloading a version at the same time must not drop a version the thread put."""
    for i in range(40):
        write_echo_model(tmp_path, f"echo{i}")
    write_echo_model(tmp_path, "spare")
    repository = scan_repository(tmp_path)
    table = Registry(repository)
    Lifecycle(Settings(batching=BatchingSettings(max_batch_size=1)), table).load(
        {"spare": frozenset({1})})
    spare = table.versions_of("spare")[1]
    repository = {model: versions for model, versions in repository.items() if model != "spare"}
    lifecycle = Lifecycle(Settings(batching=BatchingSettings(max_batch_size=1)), table)
    errors: list[BaseException] = []
    done = threading.Event()

    def load() -> None:
        try:
            for model in repository:
                lifecycle.load({model: frozenset({1})})
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
                table.remove("spare", 1)
                table.put(spare)
            except RuntimeError as exc:  # "dictionary changed size during iteration"
                errors.append(exc)
                break
        thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    assert len(table.all()) == 41
