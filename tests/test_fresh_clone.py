"""`make test` passes on a fresh clone whose `config/` a user has edited as the README's
walk-throughs do: the tests build their config from the shipped (committed) defaults, never from
the working tree's `config/` (tests/conftest.py says how)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import MODEL, ROOT

MODULES = ["tests/test_settings.py", "tests/routing/test_policy.py", "tests/models/test_train.py",
           "tests/integration/test_errors.py"]
"""Test modules that read the shipped config or files, run against the edited clone."""


def git(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A clone of this repository's HEAD, as a newcomer gets it."""
    if shutil.which("git") is None:
        pytest.skip("no git: the clone test needs it")
    if git("rev-parse", "--is-inside-work-tree").returncode != 0 or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (no .git): there is no history to clone")
    target = tmp_path / "clone"
    done = git("clone", "--quiet", str(ROOT), str(target))
    assert done.returncode == 0, done.stderr
    return target


def edit_as_the_readme_does(clone: Path) -> None:
    """Capture on with redaction ("Prediction capture and replay"), and step 1 of "A rollout,
    step by step": version 2 deployed at weight 0 with a shadow of it."""
    gateway_yaml = clone / "config" / "gateway.yaml"
    text = gateway_yaml.read_text()
    edited = (text.replace("  enabled: false", "  enabled: true", 1)
              .replace("  redact: {}", f"  redact: {{{MODEL}: [input]}}", 1))
    assert edited.count("enabled: true") == 1 and "redact: {breast" in edited, text
    gateway_yaml.write_text(edited)
    routing_yaml = clone / "config" / "routing.yaml"
    policy = yaml.safe_load(routing_yaml.read_text())
    policy["models"][MODEL]["traffic"].append({"version": 2, "weight": 0})
    policy["models"][MODEL]["shadow"] = [{"version": 2, "percent": 100}]
    routing_yaml.write_text(yaml.safe_dump(policy))


def test_the_tests_pass_on_a_clone_whose_config_a_user_edited(clone: Path) -> None:
    edit_as_the_readme_does(clone)
    assert git("status", "--porcelain", "config", cwd=clone).stdout.count(" M ") == 2
    env = {**os.environ, "PYTHONPATH": str(clone), "GATEWAY_ADMIN_TOKEN": "change-me"}
    env.pop("GATEWAY_CONFIG", None)
    # The clone's own code is what runs, not this checkout's (installed in the venv).
    where = subprocess.run(
        [sys.executable, "-c", "import gateway, tests.conftest as c; "
                               "print(gateway.__file__); print(c.ROOT)"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=60)
    assert where.returncode == 0, where.stderr
    gateway_file, tests_root = where.stdout.split()
    assert Path(gateway_file).is_relative_to(clone) and Path(tests_root) == clone, where.stdout
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-x", *MODULES], cwd=clone, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-2000:]
