"""Writing a rollout's decision into the routing file (SPEC 9): only the model's weights and its
`rollout_status` change; comments, key order, flow style and every other byte stay.

The file is parsed with ruamel.yaml's round-trip loader for one thing a plain loader lacks: the
line and column of every key and value. The edit is then made in the text itself: each changed
weight's number is replaced where it stands, and `rollout_status` is one flow-style line,
replaced or inserted at the end of the model's entry. Dumping the document again, even with a
round-trip dumper, re-indents sequences and moves comments; editing in place cannot.

The file is replaced atomically (a write beside it, then a rename) and only if it still holds
the text the decision was made on: a person's edit in the meantime always wins, and the
controller reads the file again.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]*)?")


def _status_line(status: dict[str, Any], indent: int) -> str:
    """One flow-style line; values as JSON, which YAML reads as they were (strings quoted)."""
    fields = ", ".join(f"{key}: {json.dumps(value)}" for key, value in status.items())
    return f"{' ' * indent}rollout_status: {{{fields}}}\n"


def with_decision(text: str, model: str, weights: dict[int, int],
                  status: dict[str, Any] | None) -> str:
    """`text` with the model's traffic weights set from `weights` (version -> weight) and its
    `rollout_status` replaced or added (kept as it was when `status` is None)."""
    doc = YAML().load(text)
    models = doc["models"]
    entry = models[model]
    lines = text.splitlines(keepends=True)
    for item in entry["traffic"]:
        version = int(item["version"])
        if version not in weights:
            continue
        row, column = item.lc.value("weight")
        found = _NUMBER.match(lines[row], column)
        if found is None:
            raise ValueError(f"models.{model}: cannot find the weight of version {version} "
                             f"on line {row + 1}")
        lines[row] = (lines[row][:found.start()] + str(weights[version])
                      + lines[row][found.end():])
    if status is None:
        return "".join(lines)
    indent = entry.lc.key(next(iter(entry)))[1]
    line = _status_line(status, indent)
    end = _entry_end(models, model, lines)
    if "rollout_status" in entry:
        start = entry.lc.key("rollout_status")[0]
        later = [entry.lc.key(k)[0] for k in entry if entry.lc.key(k)[0] > start]
        stop = min(later) if later else end
        lines[start:stop] = [line]
    else:
        lines.insert(end, line)
    return "".join(lines)


def _entry_end(models: Any, model: str, lines: list[str]) -> int:
    """The line after the model's entry: before the next model's key (or the end of the
    file), less the blank and comment lines that belong to what follows."""
    rows = sorted(models.lc.key(m)[0] for m in models)
    own = models.lc.key(model)[0]
    end = next((r for r in rows if r > own), len(lines))
    while end > own + 1 and (not lines[end - 1].strip()
                             or lines[end - 1].lstrip().startswith("#")):
        end -= 1
    return end


def replace_if_unchanged(path: Path, expected: str, text: str) -> bool:
    """Write `text` over `path` atomically, but only while the file still reads `expected`
    (False: someone changed it since; nothing was written)."""
    if path.read_text() != expected:
        return False
    temporary = path.with_name(f".{path.name}.rollout~")
    temporary.write_text(text)
    os.replace(temporary, path)
    return True
