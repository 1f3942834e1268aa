"""The README's code blocks stay true: every shell command in them is one this module knows how
to run or why not to, and the offline drift example runs as printed. The commands themselves
run against a gateway in `tests/integration/test_readme_commands.py`.

What a command is: each line of a ```sh block, joined over trailing backslashes and over quotes
left open (a curl's JSON body), with comments stripped. A block the README marks with an HTML
comment on the line directly above its fence, `<!-- readme-test: skip (why) -->`, is not run,
and the reason is listed (one skipped test per command, so `-ra` shows it). A command with no
marker and no rule below fails here, so a new command added to the README either runs or says
why it cannot.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT

FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[ \t]*$")
SKIP_MARKER = re.compile(r"^\s*<!--\s*readme-test:\s*skip\s*\((?P<reason>.+)\)\s*-->\s*$")
SHELL_LANGUAGES = ("sh", "bash", "shell", "console")

LONGEST_DEMO_MINUTES = 1.0
"""A demo of at most this long runs (beside the other commands); a longer one must be marked."""

MAKE_SERVE = ("serves until stopped: the test starts the gateway as `make serve` does "
              "(python -m gateway serve in the clone, shipped config, port 8000)")
SKIP_RULES = {
    "docker": "needs a Docker daemon and builds an image for minutes (tests/deploy lints the "
              "Dockerfile)",
    "kubectl": "needs a Kubernetes cluster (tests/deploy validates and renders the manifests)",
    "prometheus": "a server that runs until stopped (tests/integration/test_prometheus.py runs "
                  "Prometheus on config/prometheus against a gateway)",
}
"""Programs never run here, and why."""

MAKE_SKIPS = {
    "serve": MAKE_SERVE,
    "test": "the whole suite, of which this test is a part",
}
MAKE_RUNS = ("check", "rollout", "replay", "demo")
"""`make` targets that end by themselves (rollout only with --once, demo only when short)."""


@dataclass(frozen=True)
class Block:
    lang: str
    line: int
    """1-based line of the opening fence in README.md."""
    text: str
    skip: str | None = None
    """The reason of a `<!-- readme-test: skip (...) -->` marker directly above, if any."""


@dataclass(frozen=True)
class Command:
    text: str
    """As printed (lines joined), comments stripped."""
    line: int
    """1-based line of README.md where it begins."""
    words: list[str] = field(default_factory=list)
    """After the shell's quoting; leading `NAME=value` assignments stripped (see `env`)."""
    env: dict[str, str] = field(default_factory=dict)
    """`NAME=value` written before the program: the environment of this command only."""


@dataclass(frozen=True)
class Plan:
    """What the README test does with a command: `run` (kind says how), `skip` (reason says
    why), `export` (applies `env` to later commands), or `unknown` (the test fails)."""

    action: str
    reason: str = ""
    kind: str = ""


def blocks(readme: str) -> list[Block]:
    """Every fenced code block, indented ones (in a list item) included, with its marker."""
    found: list[Block] = []
    lines = readme.splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, start = opening.group("indent"), index
        body: list[str] = []
        index += 1
        while index < len(lines) and lines[index].strip() != "```":
            line = lines[index]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            index += 1
        marker = SKIP_MARKER.match(lines[start - 1]) if start > 0 else None
        found.append(Block(opening.group("lang"), start + 1, "\n".join(body) + "\n",
                           marker.group("reason").strip() if marker else None))
        index += 1
    return found


def commands(block: Block) -> list[Command]:
    """The block's commands, split as the shell splits lines: a newline ends a command unless
    it is escaped by a backslash or inside quotes; `#` at a word's start outside quotes begins a
    comment."""
    found: list[Command] = []
    text, current, quote, line, begins = block.text, "", "", 0, 0
    position = 0
    while position < len(text):
        char = text[position]
        if quote:
            if char == "\\" and quote == '"' and position + 1 < len(text):
                current += text[position:position + 2]
                position += 2
                continue
            quote = "" if char == quote else quote
            current += char
        elif char in "'\"":
            quote = char
            current += char
        elif char == "\\" and text[position + 1:position + 2] == "\n":
            current += " "
            position, line = position + 1, line + 1
        elif char == "#" and (not current or current[-1] in " \t"):
            position = text.find("\n", position)
            position = len(text) if position < 0 else position
            continue
        elif char == "\n":
            if current.strip():
                found.append(_command(current.strip(), block.line + 1 + begins))
            current = ""
            begins = line + 1
        else:
            current += char
        if char == "\n":
            line += 1
        position += 1
    if current.strip():
        found.append(_command(current.strip(), block.line + 1 + begins))
    return found


def _command(text: str, line: int) -> Command:
    try:
        words = shlex.split(text)
    except ValueError:  # a quote left open: no rule will know it
        words = text.split()
    env: dict[str, str] = {}
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    return Command(text, line, words, env)


def plan(command: Command) -> Plan:
    """Run, skip, export, or unknown: the README test's rule for one command."""
    words = command.words
    if words[:1] == ["cd"] and "&&" in words:  # `cd config/prometheus && promtool ...`
        words = words[words.index("&&") + 1:]
    if not words:
        return Plan("unknown", "only assignments: write `export NAME=value`")
    program, args = words[0], words[1:]
    if program == "export":
        return Plan("export")
    if program in SKIP_RULES:
        return Plan("skip", SKIP_RULES[program])
    if program == "curl":
        return Plan("run", kind="curl")
    if program == "promtool":
        return Plan("run", kind="promtool")
    if program == "cp" and all(not a.startswith(("/", "..")) for a in args):
        return Plan("run", kind="write")  # in the clone only
    if program == "make":
        targets = [a for a in args if "=" not in a and not a.startswith("-")]
        settings = dict(a.split("=", 1) for a in args if "=" in a)
        if len(targets) != 1:
            return Plan("unknown", "one make target per command")
        if targets[0] in MAKE_SKIPS:
            return Plan("skip", MAKE_SKIPS[targets[0]])
        if targets[0] in MAKE_RUNS:
            return _gateway_plan(targets[0], shlex.split(settings.get("ARGS", "")),
                                 settings.get("MINUTES"))
        return Plan("unknown", f"make {targets[0]} is no target this test knows to end by itself")
    if program in ("gateway", ".venv/bin/gateway") and args:
        if args[0] == "serve":
            return Plan("skip", MAKE_SERVE)
        minutes = args[args.index("--minutes") + 1] if "--minutes" in args[:-1] else None
        return _gateway_plan(args[0], args[1:], minutes)
    return Plan("unknown", f"no rule for `{program}`")


def _gateway_plan(subcommand: str, args: list[str], minutes: str | None) -> Plan:
    if subcommand == "rollout" and "--once" not in args:
        return Plan("unknown", "gateway rollout without --once runs until stopped")
    if subcommand == "demo":
        if minutes is None or float(minutes) > LONGEST_DEMO_MINUTES:
            return Plan("unknown", f"a demo longer than {LONGEST_DEMO_MINUTES:g} minute")
        return Plan("run", kind="background")  # beside the commands after it
    if subcommand in ("check", "rollout", "replay"):
        return Plan("run", kind="gateway")
    return Plan("unknown", f"no rule for gateway {subcommand}")


def readme_commands(readme: str) -> list[tuple[Block, Command | None, Plan]]:
    """Every shell command and python block of the README, in order, with its plan. A python
    block is one command (None); it runs offline when it is the drift example (below), else
    against the gateway."""
    planned: list[tuple[Block, Command | None, Plan]] = []
    for block in blocks(readme):
        if block.lang == "python":
            planned.append((block, None, Plan("skip", block.skip) if block.skip else
                            Plan("run", kind="offline" if "DriftMonitor" in block.text
                                 else "python")))
        elif block.lang in SHELL_LANGUAGES:
            for command in commands(block):
                planned.append((block, command, Plan("skip", block.skip) if block.skip
                                else plan(command)))
    return planned


def test_commands_are_split_as_the_shell_splits_them() -> None:
    readme = ("intro\n<!-- readme-test: skip (needs a cluster) -->\n```sh\n"
              "kubectl apply -k deploy   # a comment\n```\n\n1. step\n\n   ```sh\n"
              "   curl -s -X POST localhost:8000/x \\\n     -H 'a: b' -d '{\n   \"id\": \"#1\"}'\n"
              "   # {\"accepted\": 2}\n   OTEL_X=1 make serve PORT=8080\n   ```\n")
    found = blocks(readme)
    assert [(b.lang, b.line, b.skip) for b in found] == [("sh", 3, "needs a cluster"),
                                                         ("sh", 9, None)]
    assert [c.text for c in commands(found[0])] == ["kubectl apply -k deploy"]
    curl, serve = commands(found[1])
    assert curl.line == 10 and curl.words[-1] == '{\n"id": "#1"}', curl
    assert (serve.line, serve.env, serve.words) == (14, {"OTEL_X": "1"},
                                                    ["make", "serve", "PORT=8080"])
    assert plan(curl) == Plan("run", kind="curl") and plan(serve).action == "skip"


def test_commands_with_no_rule_are_unknown() -> None:
    def action(text: str) -> str:
        return plan(_command(text, 1)).action

    assert action('make rollout ARGS="--once --dry-run"') == "run"
    assert action("make rollout") == "unknown"  # runs until stopped
    assert action("make demo MINUTES=1") == "run" and action("make demo") == "unknown"
    assert action("gateway replay capture --model m --version 3") == "run"
    assert action("make clean") == "unknown" and action("rm -rf .venv") == "unknown"
    assert action("cp /etc/passwd config/") == "unknown"


def test_python_blocks_run_unless_marked() -> None:
    readme = ("```python\nprint(1)\n```\n<!-- readme-test: skip (needs pandas) -->\n"
              "```python\nimport pandas\n```\n```python\nDriftMonitor\n```\n"
              "```sql\nSELECT 1\n```\n")
    assert [step for _, _, step in readme_commands(readme)] == [
        Plan("run", kind="python"), Plan("skip", "needs pandas"), Plan("run", kind="offline")]


README = (ROOT / "README.md").read_text()
PLANNED = readme_commands(README)


def where(block: Block, command: Command | None) -> str:
    return f"README.md:{command.line if command else block.line}"


@pytest.mark.parametrize(("block", "command", "step"), PLANNED, ids=[
    f"{where(b, c).split(':')[1]}-{c.text.split()[0] if c else b.lang}" for b, c, _ in PLANNED])
def test_every_readme_command_is_runnable_or_marked(block: Block, command: Command | None,
                                                    step: Plan) -> None:
    """One test per command, so `-ra` lists every skipped one with its reason; the runnable
    ones run in tests/integration/test_readme_commands.py."""
    text = command.text if command else f"the {block.lang} block"
    if step.action == "skip":
        pytest.skip(f"{where(block, command)}: {text}: {step.reason}")
    assert step.action != "unknown", (
        f"{where(block, command)}: {text}: this test cannot run it ({step.reason}): make it end "
        f"by itself, or mark its block with `<!-- readme-test: skip (why) -->` on the line "
        f"above its fence")


def test_the_readme_has_commands_to_run() -> None:
    assert sum(p.action == "run" and p.kind == "curl" for _, _, p in PLANNED) >= 3


def test_the_offline_drift_replay_example_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    example = next(block.text for block in blocks(readme)
                   if block.lang == "python" and "DriftMonitor" in block.text)
    shutil.copytree(ROOT / "models", tmp_path / "models")  # the example writes its live.csv
    result = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 30
    assert lines[0].startswith("mean radius") and lines[0].endswith("True")
