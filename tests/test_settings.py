from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.settings import Settings, load_settings
from tests.conftest import shipped_config


def test_shipped_config_resolves_paths_against_its_folder(tmp_path: Path) -> None:
    # The committed config/gateway.yaml (never the working tree's, which users edit).
    settings = load_settings(shipped_config(tmp_path))
    assert settings.model_repository == tmp_path / "models"
    assert settings.routing == tmp_path / "config" / "routing.yaml"
    assert settings.batching.max_batch_size == 32
    assert settings.batching.max_queue_delay_us == 500
    assert settings.batching.max_queue_size == 256
    assert settings.drift.window_rows == 5000
    assert settings.drift.psi_threshold == 0.0 and settings.drift.false_alarm_rate == 0.01
    assert settings.limits.max_body_bytes == 8 * 1024 * 1024
    capture = settings.capture
    assert (capture.enabled, capture.path, capture.sample_percent) == (
        False, tmp_path / "capture", 100.0)
    assert (capture.max_file_mb, capture.max_total_mb, capture.redact) == (64.0, 1024.0, {})


def test_capture_redact_names_inputs_per_model(tmp_path: Path) -> None:
    (tmp_path / "g.yaml").write_text("capture: {enabled: true, path: /data/capture, "
                                     "redact: {fraud: [card, email]}}\n")
    capture = load_settings(tmp_path / "g.yaml").capture
    assert capture.redact == {"fraud": ("card", "email")}
    assert capture.path == Path("/data/capture")


def test_defaults_fill_missing_keys(tmp_path: Path) -> None:
    (tmp_path / "g.yaml").write_text("execution_provider: cpu\n"
                                     "drift: {models: {m: {psi_threshold: 0.3}}}\n")
    settings = load_settings(tmp_path / "g.yaml")
    assert settings.server.port == Settings().server.port == 8000
    assert settings.model_repository == tmp_path / "models"
    assert settings.drift.models["m"].psi_threshold == 0.3


def test_a_model_takes_the_drift_defaults_it_does_not_set(tmp_path: Path) -> None:
    from gateway.observability.drift.service import DriftService

    (tmp_path / "g.yaml").write_text(
        "drift: {false_alarm_rate: 0.05, psi_threshold: 0.1,\n"
        "        models: {a: {psi_threshold: 0.3}, b: {false_alarm_rate: 0.001}}}\n")
    service = DriftService(load_settings(tmp_path / "g.yaml").drift)
    rules = {m: service.rule(m) for m in ("a", "b", "c")}
    assert [(r.false_alarm_rate, r.psi_floor) for r in rules.values()] == [
        (0.05, 0.3), (0.001, 0.1), (0.05, 0.1)]


def test_environment_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "g.yaml").write_text("server: {port: 9001}\n")
    monkeypatch.setenv("GATEWAY_CONFIG", str(tmp_path / "g.yaml"))
    assert load_settings().server.port == 9001


@pytest.mark.parametrize("text,fragment", [
    ("execution_provider: tpu", "not one of cpu, cuda, auto"),
    ("batching: {max_batch_size: 0}", "at least 1"),
    ("batching: {max_batch_size: many}", "non-negative integer"),
    ("batching: {max_batch_size: true}", "non-negative integer"),
    ("batching: {max_batch: 8}", "unknown key"),
    ("server: {port: 70000}", "not a TCP port"),
    ("server: {access_log: 1}", "true or false"),
    ("drift: {psi_threshold: -1}", "non-negative number"),
    ("drift: {false_alarm_rate: 0}", "probability between 0 and 1"),
    ("drift: {models: {m: {false_alarm_rate: 1.5}}}", "models.m.false_alarm_rate"),
    ("model_repository: 5", "expected a path"),
    ("capture: {sample_percent: 101}", "sample_percent must be 0 to 100"),
    ("capture: {max_file_mb: 0}", "more than 0"),
    ("capture: {redact: {m: card}}", "capture.redact: expected a mapping of model name to a list"),
    ("capture: {keep: true}", "unknown key"),
    ("[1, 2]", "expected a mapping"),
    ("a: [", "not valid YAML"),
])
def test_invalid_settings_name_the_key(tmp_path: Path, text: str, fragment: str) -> None:
    (tmp_path / "g.yaml").write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        load_settings(tmp_path / "g.yaml")


def test_missing_file_says_how_to_point_at_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="GATEWAY_CONFIG"):
        load_settings(tmp_path / "missing.yaml")


def test_paths_on_a_configmap_are_kept_as_given_never_resolved(tmp_path: Path) -> None:
    """`..data` and the timestamped folder behind it are swapped and deleted by the kubelet:
    the gateway must hold the mount's own names (SPEC 4), and `..` folds by name."""
    mount = tmp_path / "config"
    stamp = mount / "..2026_12_03_10_00_00.1"
    stamp.mkdir(parents=True)
    (stamp / "gateway.yaml").write_text("model_repository: ../models\nrouting: routing.yaml\n")
    (mount / "..data").symlink_to(stamp.name)
    (mount / "gateway.yaml").symlink_to("..data/gateway.yaml")
    settings = load_settings(mount / "gateway.yaml")
    assert settings.routing == mount / "routing.yaml"
    assert settings.model_repository == tmp_path / "models"
    relative = load_settings(Path(os.path.relpath(mount / "gateway.yaml")))
    assert relative.routing == settings.routing
