"""docs/ stays true by construction: every settings key and its default, every routing key, every
metric a running gateway and the rollout controller register, and every command-line option
appear in the reference pages, read from the code itself (a clone has nothing else to read)."""

from __future__ import annotations

import contextlib
import io
import re
import time
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from prometheus_client import generate_latest
from starlette.testclient import TestClient

from gateway.__main__ import main
from gateway.app import create_app
from gateway.rollout.metrics import RolloutMetrics
from gateway.routing import policy as policy_module
from gateway.routing import rollout as rollout_module
from gateway.routing.policy import parse_policy
from gateway.runtime.repository import scan_repository
from gateway.settings import INHERIT, DriftModelSettings, DriftSettings, Settings, load_settings
from tests.conftest import MODEL, MODELS, ROOT, ConfigWriter, sample_rows

DOCS = ROOT / "docs"
ROW = re.compile(r"^\| `([^`]+)` \| ([^|]*) \|(.*)\|$", re.MULTILINE)


def _rows(page: str) -> dict[str, list[str]]:
    """First cell (a `name`) -> the other cells, of every table row of a docs page."""
    text = (DOCS / page).read_text()
    return {name: [second.strip(), *(c.strip() for c in rest.split("|"))]
            for name, second, rest in ROW.findall(text)}


def _settings_keys(cls: type[Any], prefix: str) -> dict[str, Any]:
    """Every key the settings file accepts -> its default, as `gateway.settings` defines them."""
    keys: dict[str, Any] = {}
    defaults = cls()
    for f in fields(cls):
        if f.name == "source":  # where the settings came from, not a key of the file
            continue
        default = getattr(defaults, f.name)
        key = f"{prefix}{f.name}"
        if is_dataclass(default):
            keys.update(_settings_keys(type(default), f"{key}."))
            continue
        keys[key] = default
        if cls is DriftSettings and f.name == "models":
            keys.update(_settings_keys(DriftModelSettings, f"{key}.<model>."))
    return keys


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def test_every_settings_key_is_documented_with_the_codes_default() -> None:
    documented = _rows("configuration.md")
    keys = _settings_keys(Settings, "")
    assert sorted(set(keys) - set(documented)) == [], "settings keys missing from the docs"
    assert sorted(set(documented) - set(keys)) == [], "docs name keys the settings do not have"
    for key, default in keys.items():
        cell = documented[key][0]
        assert cell.startswith("`") and cell.endswith("`"), f"{key}: default not in `...`"
        written = yaml.safe_load(cell.strip("`"))
        if default == INHERIT:  # a per-model setting left out takes the global one
            assert written == "drift." + key.rsplit(".", 1)[1], key
            continue
        if isinstance(default, dict | tuple):
            default = dict(default) if isinstance(default, dict) else list(default)
        if isinstance(default, bool):  # 0 == False in Python: `0` must not pass for `false`
            assert isinstance(written, bool), f"{key}: docs say {written!r}, code {default!r}"
        assert written == _plain(default), f"{key}: docs say {written!r}, code {default!r}"


def test_every_routing_key_and_rollout_default_is_documented() -> None:
    text = (DOCS / "routing.md").read_text()
    keys = (policy_module._MODEL_KEYS | {f"flags[].{k}" for k in policy_module._FLAG_KEYS}
            | rollout_module.ROLLOUT_KEYS | rollout_module.GATE_KEYS | rollout_module.STATUS_KEYS)
    assert sorted(k for k in keys if f"| `{k}` |" not in text) == []
    assert all(f"`{state}`" in text for state in rollout_module.STATES)
    block = {"models": {MODEL: {
        "traffic": [{"version": 1, "weight": 100}, {"version": 2, "weight": 0}],
        "rollout": {"baseline": 1, "canary": 2, "steps": [5]}}}}
    plan = parse_policy(yaml.safe_dump(block), scan_repository(MODELS)).models[MODEL].rollout
    assert plan is not None
    rows = _rows("routing.md")
    for key, value in (("step_s", plan.step_s), ("max_step_s", plan.max_step_s),
                       ("alpha", plan.alpha), ("min_requests", plan.gates.min_requests)):
        assert yaml.safe_load(rows[key][0].strip("`")) == value, key


def _families(text: str) -> dict[str, tuple[str, set[str]]]:
    """Metric name -> (type, label names seen in its samples) of a /metrics text."""
    found: dict[str, tuple[str, set[str]]] = {}
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        if name.endswith("_created"):  # prometheus-client's own series, not a metric of ours
            continue
        found[name] = (kind, set())
    for name, labels in re.findall(r"^(\w+)\{([^}]*)\}", text, re.MULTILINE):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if base in found:
            found[base][1].update(re.findall(r'(\w+)="', labels))
    for _, labels in found.values():
        labels.discard("le")
    return found


def _documented_metrics() -> dict[str, tuple[str, set[str]]]:
    return {name: (cells[0], set() if cells[1] == "none" else
                   {label.strip() for label in cells[1].split(",")})
            for name, cells in _rows("metrics.md").items()
            if name.startswith(("gateway_", "process_"))}


def _gateway_metrics(write_config: ConfigWriter, tmp_path: Path) -> str:
    """/metrics of a gateway with every feature on: a shadow, capture, drift, labels."""
    routing = {"models": {MODEL: {"traffic": [{"version": 1, "weight": 0},
                                              {"version": 2, "weight": 100}],
                                  "shadow": [{"version": 1, "percent": 100}]}}}
    config = write_config(routing=routing, drift={"report_interval_s": 0.05},
                          capture={"enabled": True, "path": str(tmp_path / "capture")})
    body = orjson.dumps({"inputs": [{"name": "input", "shape": [2, 30], "datatype": "FP32",
                                     "data": sample_rows(2).tolist()}]})
    with TestClient(create_app(load_settings(config))) as client:
        assert client.post(f"/v2/models/{MODEL}/infer", content=body).status_code == 200
        feedback = b'{"feedback": [{"label": 1, "version": 2, "prediction": 0}, {"label": 0}]}'
        assert client.post(f"/v2/models/{MODEL}/feedback", content=feedback).status_code == 200
        text = ""
        for _ in range(200):  # the drift gauges appear once the drift thread reported
            text = client.get("/metrics").text
            if "gateway_drift_psi{" in text and "gateway_shadow_requests_total{" in text:
                break
            time.sleep(0.05)
        return text


def test_every_metric_registered_is_documented(write_config: ConfigWriter,
                                               tmp_path: Path) -> None:
    controller = RolloutMetrics()
    controller.record({"model": MODEL, "weight": 5, "decision": "start",
                       "gates": [{"gate": "errors", "verdict": "wait"}]})
    served = _families(_gateway_metrics(write_config, tmp_path))
    served.update(_families(generate_latest(controller.registry).decode()))
    documented = _documented_metrics()
    assert sorted(set(served) - set(documented)) == [], "metrics missing from docs/metrics.md"
    for name, (kind, labels) in served.items():
        assert documented[name][0] == kind, f"{name}: docs say {documented[name][0]}"
        if labels:  # label names are known from samples only
            assert documented[name][1] == labels, f"{name}: docs say {documented[name][1]}"


def _help(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main([*argv, "--help"])
    return out.getvalue()


def test_every_command_line_option_is_documented() -> None:
    text = (DOCS / "cli.md").read_text()
    commands = re.search(r"\{([\w,-]+)\}", _help()).group(1).split(",")  # type: ignore[union-attr]
    assert {"serve", "check", "rollout", "replay"} <= set(commands)
    for command in commands:
        assert f"## `gateway {command}`" in text, f"gateway {command} has no section"
        options = set(re.findall(r"^\s+(--[\w-]+)", _help(command), re.MULTILINE)) - {"--help"}
        assert sorted(o for o in options if f"`{o}" not in text) == [], command
