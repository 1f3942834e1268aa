"""Writing a rollout's decision into the routing file's text (docs/routing.md): only the model's
weights
and its `rollout_status` change; comments, key order, flow style, line endings, a byte order
mark, a final newline or its absence, and every other byte stay.

The text is parsed by the gateway's own parser (PyYAML's safe loader) for one thing `safe_load`
hides: where every node stands in the text. Using the same parser as the gateway means the edit
hits what the gateway reads: the last of duplicate keys (PyYAML's rule), YAML 1.1 numbers.
The edit is then made in the text itself: each changed weight's number is replaced where it
stands, and `rollout_status` is one flow-style line, replaced where it stands or added after
the model's last content (in a flow-style entry, inside its braces). Dumping the document again,
even with a round-trip dumper, re-indents sequences and moves comments; editing in place cannot.

The result is read back with `yaml.safe_load` and must equal the old document with only the
weights and the status changed; anything this cannot edit exactly raises `EditError` (the
controller holds and says why) and the text is left as it was. Refused on purpose: a weight,
traffic list or entry that is an alias or is aliased elsewhere (editing it would change the
other places too), a merge key (`<<`) on the way to a weight, a weight that is not a plain
number.
"""

from __future__ import annotations

import copy
import json
import math
import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

_MERGE_TAG = "tag:yaml.org,2002:merge"
_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
"""A line break as YAML 1.1 (and so PyYAML) counts them."""
_STATUS_KEY = re.compile(r"[a-z_][a-z0-9_]*")
_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]")
"""Characters JSON leaves as they are but YAML reads otherwise (not printable, line breaks)."""
_HOW = ("write it in plain block style as in the example in docs/routing.md (or make this "
        "decision's edit by hand); the controller holds until then")


class EditError(ValueError):
    """The decision cannot be written into this text exactly; the message names the model, the
    line and what a person can do. Nothing was changed."""


def with_decision(text: str, model: str, weights: dict[int, int],
                  status: dict[str, Any] | None) -> str:
    """`text` with the model's traffic weights set from `weights` (version -> weight) and its
    `rollout_status` replaced or added (kept as it was when `status` is None), its keys in the
    order given. EditError when that cannot be done exactly."""
    status_text = None if status is None else _status_text(status)
    try:
        loader = _Positions(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
        expected = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:
        raise EditError(f"models.{model}: the routing file is not YAML the gateway reads "
                        f"({_one_line(exc)}); fix the file") from None
    if root is None:
        raise EditError(f"models.{model}: the routing file is empty; restore it")
    models = _value(loader, root, "models", f"models.{model}: the file's top level")
    entry_key, entry = _model(loader, models, model)
    where = f"models.{model} (line {entry_key.start_mark.line + 1})"
    for node in (models, entry):
        _not_shared(loader, node, where, "the entry")
    assert isinstance(entry, MappingNode)  # _model checked it
    edits = _weight_edits(loader, text, entry, weights, where)
    expected_entry = expected["models"][loader.construct_object(entry_key)]
    for version, weight in weights.items():
        for item in expected_entry["traffic"]:
            if item["version"] == version:
                item["weight"] = weight
    if status_text is not None and status is not None:
        edits.append(_status_edit(loader, text, entry, status_text, where))
        expected_entry["rollout_status"] = copy.deepcopy(status)
    new = text
    for start, end, replacement in sorted(edits, reverse=True):
        new = new[:start] + replacement + new[end:]
    try:
        readback = yaml.safe_load(new)
        same = _same(readback, expected)
    except (yaml.YAMLError, RecursionError) as exc:
        raise EditError(f"{where}: the edited file would not read back ({_one_line(exc)}); "
                        f"the file is left as it was: {_HOW}") from None
    if not same:
        raise EditError(f"{where}: the edit would change more than the weights and "
                        f"rollout_status; the file is left as it was: {_HOW}")
    return new


class _Positions(yaml.SafeLoader):
    """PyYAML's safe loader composing nodes, noting where each node's text ends (`outer`: after
    a flow collection's closing bracket; `inner`: after its last child) and which nodes an
    alias refers to. Block collections' own end marks lie after the comments that follow
    them, so their end is their last child's."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._text = text
        self.inner_end: dict[int, int] = {}
        self.outer_end: dict[int, int] = {}
        self.aliased: set[int] = set()
        self._ends: list[int] = []

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        self._ends.append(_index(event.end_mark))
        node = super().compose_node(parent, index)
        inner = self._ends.pop()
        if node is None:
            return None
        if isinstance(event, yaml.AliasEvent):
            self.aliased.add(id(node))
            outer = _index(event.end_mark)
        else:
            flow = isinstance(node, ScalarNode) or bool(getattr(node, "flow_style", False))
            outer = _index(node.end_mark) if flow else inner
            if isinstance(node, ScalarNode) and node.style in ("|", ">"):
                # a block scalar's mark ends after the blank lines that follow it
                outer = len(self._text[:outer].rstrip(" \t\r\n\x85\u2028\u2029"))
            self.inner_end[id(node)], self.outer_end[id(node)] = inner, outer
        if self._ends:
            self._ends[-1] = max(self._ends[-1], outer)
        return node


def _one_line(exc: BaseException) -> str:
    """PyYAML's message with its marks, on one line (it goes into a JSON log line)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _index(mark: Any) -> int:
    """A mark's place in the text (characters from the start, a byte order mark counted)."""
    return int(mark.index)


def _find(loader: _Positions, mapping: Node | None, key: str,
          where: str) -> tuple[Node, Node] | None:
    """The (key, value) PyYAML uses for `key`: the last of duplicates."""
    if not isinstance(mapping, MappingNode):
        raise EditError(f"{where}: expected a mapping; fix the file")
    found = None
    for key_node, value in mapping.value:
        if key_node.tag == _MERGE_TAG:
            raise EditError(f"{where}: a merge key (<<) on line {key_node.start_mark.line + 1} "
                            f"may hide what is edited; write the keys out instead")
        if isinstance(key_node, ScalarNode) and loader.construct_object(key_node) == key:
            found = (key_node, value)
    return found


def _value(loader: _Positions, mapping: Node | None, key: str, where: str) -> Node:
    found = _find(loader, mapping, key, where)
    if found is None:
        raise EditError(f"{where}: has no '{key}'; fix the file")
    return found[1]


def _model(loader: _Positions, models: Node, model: str) -> tuple[Node, Node]:
    """The model's (key, entry); parse_policy names models by str(key), the last one wins."""
    where = f"models.{model}"
    if not isinstance(models, MappingNode):
        raise EditError(f"{where}: 'models' is not a mapping; fix the file")
    pairs = [(k, v) for k, v in models.value if isinstance(k, ScalarNode)
             and str(loader.construct_object(k)) == model]
    if any(k.tag == _MERGE_TAG for k, _ in models.value):
        raise EditError(f"{where}: 'models' has a merge key (<<); write the models out instead")
    if not pairs:
        raise EditError(f"{where}: no such model in the routing file")
    if len({repr(loader.construct_object(k)) for k, _ in pairs}) > 1:
        raise EditError(f"{where}: named by keys of different types (e.g. 1 and '1') on lines "
                        f"{', '.join(str(k.start_mark.line + 1) for k, _ in pairs)}; keep one")
    key, entry = pairs[-1]
    if not isinstance(entry, MappingNode):
        raise EditError(f"{where} (line {key.start_mark.line + 1}): expected a mapping; fix "
                        "the file")
    return key, entry


def _not_shared(loader: _Positions, node: Node, where: str, what: str) -> None:
    if id(node) in loader.aliased:
        raise EditError(f"{where}: {what} on line {node.start_mark.line + 1} is an alias "
                        "or has an alias (*name) elsewhere, so editing it would change "
                        "other places too; write it out where it is used")


def _weight_edits(loader: _Positions, text: str, entry: MappingNode,
                  weights: dict[int, int], where: str) -> list[tuple[int, int, str]]:
    traffic = _value(loader, entry, "traffic", where)
    _not_shared(loader, traffic, where, "the traffic list")
    if not isinstance(traffic, SequenceNode):
        raise EditError(f"{where}: 'traffic' is not a list; fix the file")
    edits, seen = [], set()
    for item in traffic.value:
        version_node = _value(loader, item, "version", f"{where}: a traffic entry")
        version = (loader.construct_object(version_node)
                   if isinstance(version_node, ScalarNode) else None)
        if not isinstance(version, int) or version not in weights:
            continue
        _not_shared(loader, item, where, f"the traffic entry of version {version}")
        weight = _value(loader, item, "weight", f"{where}: version {version}")
        _not_shared(loader, weight, where, f"the weight of version {version}")
        line = weight.start_mark.line + 1
        end = weight.end_mark.index
        start = end - len(weight.value) if isinstance(weight, ScalarNode) else end
        if (not isinstance(weight, ScalarNode) or weight.style is not None
                or not weight.value or text[start:end] != weight.value):
            raise EditError(f"{where}: the weight of version {version} on line {line} is not "
                            f"a plain number; write it as one (weight: {weights[version]})")
        if not isinstance(weights[version], int) or isinstance(weights[version], bool):
            raise TypeError(f"weight of version {version}: expected an int")
        edits.append((start, end, str(weights[version])))
        seen.add(version)
    missing = sorted(set(weights) - seen)
    if missing:
        raise EditError(f"{where}: version(s) {missing} not in 'traffic'; add them with "
                        "weight 0")
    return edits


def _status_edit(loader: _Positions, text: str, entry: MappingNode, status_text: str,
                 where: str) -> tuple[int, int, str]:
    """Where the status goes: over the old one, after the entry's last content (a line of its
    own, with the file's line ending), or before a flow entry's closing brace."""
    found = _find(loader, entry, "rollout_status", where)
    if found is not None:
        key, value = found
        _not_shared(loader, value, where, "rollout_status")
        return key.start_mark.index, loader.outer_end[id(value)], status_text
    content_end = loader.inner_end[id(entry)]
    if entry.flow_style:
        return content_end, content_end, f", {status_text}"
    indent = " " * entry.value[0][0].start_mark.column
    brk = _BREAK.search(text, content_end)
    if brk is not None:
        return brk.end(), brk.end(), f"{indent}{status_text}{brk.group()}"
    breaks = _BREAK.findall(text)
    newline = breaks[-1] if breaks else "\n"
    return len(text), len(text), f"{newline}{indent}{status_text}"


def _status_text(status: dict[str, Any]) -> str:
    """`rollout_status: {...}`, one flow line; values as YAML reads them back exactly."""
    for key in status:
        if not _STATUS_KEY.fullmatch(key):
            raise ValueError(f"rollout_status key {key!r}: expected lower-case letters, digits, _")
    fields = ", ".join(f"{key}: {_scalar(value)}" for key, value in status.items())
    return f"rollout_status: {{{fields}}}"


def _scalar(value: object) -> str:
    """JSON where JSON and YAML 1.1 agree; YAML's own spelling where they do not."""
    if value is None or isinstance(value, bool | int):
        return json.dumps(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        number = repr(value)  # YAML 1.1 floats need a dot: 1e-05 would read as a string
        return number.replace("e", ".0e", 1) if "e" in number and "." not in number else number
    if isinstance(value, str):
        quoted = json.dumps(value, ensure_ascii=False)  # ensure_ascii splits emoji in two
        return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)
    raise TypeError(f"rollout_status value {value!r}: expected a string, number, bool or None")


def _same(a: object, b: object, seen: set[tuple[int, int]] | None = None) -> bool:
    """Deep equality where NaN equals NaN (YAML's .nan anywhere in the file) and recursive
    structures (aliases of an ancestor) end."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict | list):
        seen = set() if seen is None else seen
        if (id(a), id(b)) in seen:
            return True
        seen.add((id(a), id(b)))
        if isinstance(a, dict):
            assert isinstance(b, dict)
            return a.keys() == b.keys() and all(_same(a[k], b[k], seen) for k in a)
        assert isinstance(b, list)
        return len(a) == len(b) and all(_same(x, y, seen) for x, y in zip(a, b, strict=True))
    return a == b
