"""Every command of the README's code blocks runs as printed from a fresh clone with the shipped
files (issue 26, "Done when"), against a gateway started as `make serve` starts it.

How: HEAD is cloned into a temporary folder; the clone gets a `.venv` made of links to the
virtual environment running the tests, as `make serve` would have made it (installing one
takes minutes and the network: `make` is checked to plan no pip run in the clone, so the shared
environment is never reinstalled); the README's capture block is written into the clone's
`config/gateway.yaml`, as "Prediction capture and replay" tells a user to, so the replay command
has a capture to read. The gateway is `python -m gateway serve` in the clone, on port 8000 (the
README's commands name it; when it is taken the test is skipped, the commands are never
rewritten), on the loopback address only. Then the README's commands run in their order with
`bash -c`, in the clone, with `.venv/bin` on PATH as docs/cli.md says; `export` lines set the
environment of the commands after them and of the gateway (the README exports "before make
serve"); `make demo MINUTES=1` runs beside the commands after it; python blocks that need the
gateway run with the clone's python. tests/test_readme.py decides what runs and lists what does
not, and why. Each command must exit 0 and print no `{"error"` answer and no traceback.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.test_readme import Block, Command, blocks, readme_commands, where

PORT = 8000
"""The port every README command names (`make serve`'s default)."""

COMMAND_TIMEOUT_S = 90.0
BACKGROUND_S = 20
"""How long a command running beside the others (the README's minute of demo) runs at most."""
INTERRUPTED = (130, -signal.SIGINT)
"""Exit codes of a demo Ctrl-C stopped: `gateway demo`'s own, or make's, which dies of the
signal after its recipe does."""


def git(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def port_free(port: int) -> bool:
    """Whether a gateway could listen on `port` (on every address, as `make serve` does)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def link_venv(clone: Path) -> None:
    """`clone/.venv` as `make serve` leaves it, made of links to the running environment, with
    its install stamps newer than the clone's pyproject.toml and constraints.txt, so make
    plans no install."""
    venv, prefix = clone / ".venv", Path(sys.prefix)
    if prefix == Path(sys.base_prefix) or not (prefix / "bin" / "gateway").exists():
        pytest.skip("the tests do not run in a virtual environment with `gateway` installed "
                    "(make test makes one): the clone's make targets need it")
    venv.mkdir()
    for name in ("bin", "lib", "lib64", "include", "pyvenv.cfg"):
        if (prefix / name).exists():
            (venv / name).symlink_to(prefix / name)
    an_hour_ago = time.time() - 3600  # the install's inputs older than its stamps, as after
    for name in ("pyproject.toml", "constraints.txt"):  # make serve (none in the future: make
        os.utime(clone / name, (an_hour_ago, an_hour_ago))  # warns of clock skew)
    for stamp in (".serve", ".test"):
        (venv / stamp).touch()
    planned = subprocess.run(["make", "-n", "check", "demo", "rollout", "replay"], cwd=clone,
                             capture_output=True, text=True, timeout=60)
    assert "pip" not in planned.stdout, "make would reinstall the environment:\n" + planned.stdout


def turn_capture_on(clone: Path, readme: str) -> None:
    """Write the README's capture block into the clone's settings, as the README says to."""
    block = next((b for b in blocks(readme) if b.lang == "yaml" and b.text.startswith("capture:")),
                 None)
    if block is None:
        return
    settings_file = clone / "config" / "gateway.yaml"
    settings = yaml.safe_load(settings_file.read_text())
    settings["capture"] = yaml.safe_load(block.text)["capture"]
    settings_file.write_text(yaml.safe_dump(settings))


def ready(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/v2/health/ready")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    if shutil.which("git") is None or shutil.which("make") is None:
        pytest.skip("no git or no make: the README's commands are run on a clone, with make")
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (no .git): there is no history to clone")
    if not port_free(PORT):
        pytest.skip(f"port {PORT} is in use: the README's commands name it, and are run only "
                    "as printed")
    target = tmp_path / "clone"
    done = git("clone", "--quiet", str(ROOT), str(target))
    assert done.returncode == 0, done.stderr
    link_venv(target)
    return target


@pytest.fixture
def environment(clone: Path) -> dict[str, str]:
    """A newcomer's shell in the clone: its venv's bin on PATH, nothing of this session's
    gateway variables; the clone's code first on the path (its `gateway` package, not the one
    the shared environment has installed)."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("GATEWAY_", "OTEL_"))}
    bin_dir = clone / ".venv" / "bin"
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(clone),
               VIRTUAL_ENV=str(clone / ".venv"), PYTHONDONTWRITEBYTECODE="1")
    return env


@pytest.fixture
def exported(clone: Path) -> dict[str, str]:
    """Every `export` of the README: the gateway's environment too ("before make serve")."""
    variables: dict[str, str] = {}
    for _, command, step in readme_commands((clone / "README.md").read_text()):
        if command is not None and step.action == "export":
            variables.update(assignments(command))
    return variables


def assignments(command: Command) -> dict[str, str]:
    return dict(word.split("=", 1) for word in command.words[1:] if "=" in word)


@pytest.fixture
def gateway(clone: Path, environment: dict[str, str], exported: dict[str, str],
            tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`make serve`'s gateway: `python -m gateway serve` in the clone, its shipped config."""
    turn_capture_on(clone, (clone / "README.md").read_text())
    log = (tmp_path / "gateway.log").open("wb")
    process = subprocess.Popen(
        [str(clone / ".venv" / "bin" / "python"), "-m", "gateway", "serve", "--host",
         "127.0.0.1"], cwd=clone, env={**environment, **exported}, stdout=log,
        stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not ready(PORT):
        assert process.poll() is None and time.monotonic() < deadline, \
            (tmp_path / "gateway.log").read_text(errors="replace")[-4000:]
        time.sleep(0.1)
    yield process
    process.terminate()
    try:
        process.wait(timeout=40)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log.close()


def printed(output: str) -> str:
    """What a command printed first and last (make's echo of its recipe left out), cut short:
    shown for each command that ran."""
    lines = [line for line in output.strip().splitlines()
             if not line.startswith((".venv/bin/", "\t"))] or ["(nothing)"]
    return lines[0][:120] + (f" ... {lines[-1][:120]}" if len(lines) > 1 else "")


def faults(name: str, done: subprocess.CompletedProcess[str]) -> str | None:
    """What was wrong with one command's run, or None."""
    output = done.stdout + done.stderr
    if done.returncode != 0 or '{"error"' in output or "Traceback" in output:
        return (f"{name}\n  exit {done.returncode}\n  stdout: {done.stdout[-1500:]}\n"
                f"  stderr: {done.stderr[-1500:]}")
    return None


Background = list[tuple[str, "subprocess.Popen[str]", Path]]


@pytest.fixture
def background() -> Iterator[Background]:
    """Commands running beside the others (a short demo); any left when the test ends (it
    failed first) are stopped with their children (make's `gateway demo`)."""
    started: Background = []
    yield started
    for _, process, _ in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)


def test_every_readme_command_runs_as_printed(
        clone: Path, environment: dict[str, str], gateway: subprocess.Popen[bytes],
        background: Background, tmp_path: Path) -> None:
    readme = (clone / "README.md").read_text()
    env, failed, ran, skipped = dict(environment), [], [], []
    for block, command, step in readme_commands(readme):
        name = f"{where(block, command)}: {command.text if command else block.lang + ' block'}"
        if step.action == "export" and command is not None:
            env.update(assignments(command))
            continue
        if step.action == "skip" or step.kind == "offline":
            skipped.append(f"{name} ({step.reason or 'tests/test_readme.py runs it offline'})")
            continue
        if step.kind == "promtool" and shutil.which("promtool") is None:
            skipped.append(f"{name} (promtool is not installed: apt-get install prometheus)")
            continue
        assert step.action == "run", f"{name}: {step.reason} (tests/test_readme.py fails too)"
        argv = run_as(block, command, clone)
        if step.kind == "background":  # its output into a file: a pipe unread could fill
            output = tmp_path / f"background-{len(background)}.out"
            with output.open("w") as sink:
                background.append((name, subprocess.Popen(
                    argv, cwd=clone, env=env, stdout=sink, stderr=subprocess.STDOUT,
                    text=True, start_new_session=True), output))
            continue
        done = subprocess.run(argv, cwd=clone, env=env, capture_output=True,
                              text=True, timeout=COMMAND_TIMEOUT_S)
        ran.append(f"{name}\n    -> {printed(done.stdout or done.stderr)}")
        fault = faults(name, done)
        if fault:
            failed.append(fault)
    for name, process, output in background:
        # A demo of a minute is stopped with Ctrl-C (SIGINT to its group, as a terminal
        # sends it) once it has run BACKGROUND_S: it then reports and exits, what a
        # person who stops it sees (tests/integration/test_demo.py runs demos to their end).
        try:
            process.wait(timeout=BACKGROUND_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGINT)
            process.wait(timeout=COMMAND_TIMEOUT_S)
        stdout = output.read_text(errors="replace")
        ran.append(f"{name}\n    -> {printed(stdout)}")
        reports = re.findall(r"^\d+:\d\d  requests .*$", stdout, re.M)  # a line every 5 s
        stopped_well = (bool(reports) and all(r.endswith("errors 0") for r in reports)
                        and re.match(r"\d+:\d\d  requests [\d,]+ \(v\d", reports[-1]))
        code = 0 if process.returncode in INTERRUPTED and stopped_well else process.returncode
        fault = faults(name, subprocess.CompletedProcess(process.args, code, stdout, ""))
        if fault:
            failed.append(fault)
    print("ran:\n  " + "\n  ".join(ran) + "\nskipped:\n  " + "\n  ".join(skipped))
    assert gateway.poll() is None, "the gateway exited while the README's commands ran"
    assert failed == [], (f"{len(failed)} of {len(ran)} README commands failed as printed:\n"
                          + "\n".join(failed))
    assert len(ran) >= 5, ran


def run_as(block: Block, command: Command | None, clone: Path) -> list[str]:
    """The argv of a command as printed, run by bash (its `NAME=value` prefix included); a
    python block is run by the clone's python."""
    if command is None:
        return [str(clone / ".venv" / "bin" / "python"), "-c", block.text]
    return ["bash", "-c", command.text]

