"""Decode a label feedback body (docs/endpoints.md) into arrays, validating the whole batch first.

    {"feedback": [{"label": 1, "version": 2, "prediction": 0, "id": "req-17"}, {"label": 0}]}

The body is parsed once with orjson and each field becomes one array (a list comprehension per
field, then NumPy); type checks look at the set of Python types in a field, so the per-item work
is what building the arrays costs. Only when a check fails is the offending item searched for, to
name it in the 400. Nothing is counted unless the whole batch is valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from gateway.errors import BadRequest, shown
from gateway.runtime.repository import version_number

_KEYS = frozenset({"label", "version", "prediction", "id"})
_NUMBERS = frozenset({int, float})


@dataclass(frozen=True)
class LabelSpace:
    """What a model's labels are: its classes (classifier) or numbers (regressor)."""

    kind: str
    """categorical or numeric."""
    categories: tuple[Any, ...] = ()
    """The classes, in the reference profile's order (numbers or strings)."""

    @property
    def classifier(self) -> bool:
        return self.kind == "categorical"

    @property
    def text(self) -> bool:
        return self.classifier and all(isinstance(c, str) for c in self.categories)

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Each label's category index (float64), -1 for a label outside the categories."""
        # A common dtype: casting the classes to the labels' own could cut 'spam' to 'sp'.
        categories = np.asarray(self.categories)
        common = np.result_type(values.dtype, categories.dtype)
        categories, values = categories.astype(common), values.astype(common)
        order = np.argsort(categories, kind="stable")
        ordered = categories[order]
        position = np.clip(np.searchsorted(ordered, values), 0, len(ordered) - 1)
        seen = ordered[position] == values
        return np.where(seen, order[position], -1).astype(np.float64)


@dataclass(frozen=True)
class FeedbackBatch:
    labels: np.ndarray
    """The true values: float64 (numbers) or str (text classes)."""
    label_codes: np.ndarray
    """Category index per label, -1 when unseen (classifiers); the values (regressors)."""
    labelled: np.ndarray
    """True where the item names the version and prediction it was served."""
    versions: np.ndarray
    """int64; 0 where the item names none."""
    predictions: np.ndarray
    """Same dtype as labels; meaningful where `labelled`."""
    ids: tuple[str, ...]

    @property
    def rows(self) -> int:
        return len(self.labels)


def _offender(values: list[Any], ok: Any) -> int:
    return next(i for i, value in enumerate(values) if not ok(value))


def _is_number(value: Any) -> bool:
    return type(value) in _NUMBERS


def _values(field: str, values: list[Any], space: LabelSpace,
            items: np.ndarray | None = None) -> np.ndarray:
    """One field's values as an array, or a 400 naming the first item of the wrong kind;
    `items` gives each value's item index when the field is present on some items only."""
    types = set(map(type, values))
    if space.text:
        if types <= {str}:
            return np.array(values, dtype=str)
        index = _offender(values, lambda v: isinstance(v, str))
        wanted = f"one of the classes {list(space.categories)[:20]} (strings)"
    else:
        if types <= _NUMBERS:
            try:
                array = np.array(values, dtype=np.float64)
            except OverflowError:
                array = None
            if array is not None and np.isfinite(array).all():
                return array
            index = _offender(values, lambda v: abs(float(v)) < float("inf"))
            wanted = "a finite number"
        else:
            index = _offender(values, _is_number)
            wanted = ("a number, one of the classes "
                      f"{list(space.categories)[:20]}" if space.classifier else "a number")
    item = int(items[index]) if items is not None else index
    raise BadRequest(f"feedback[{item}]: '{field}' must be {wanted}, got "
                     f"{orjson.dumps(values[index]).decode()[:60]}; nothing was counted")


def _versions(values: list[Any], where: np.ndarray, known: frozenset[int]) -> np.ndarray:
    versions = np.zeros(len(values), dtype=np.int64)
    named = [values[i] for i in np.flatnonzero(where)]

    def valid(value: Any) -> bool:
        if type(value) is int:
            return value in known
        return isinstance(value, str) and version_number(value) in known

    if not all(map(valid, named)):
        index = int(np.flatnonzero(where)[_offender(named, valid)])
        raise BadRequest(f"feedback[{index}]: version {orjson.dumps(values[index]).decode()[:30]}"
                         f" is not a version of this model (it has "
                         f"{', '.join(map(str, sorted(known)))}); nothing was counted")
    versions[where] = [int(v) for v in named]
    return versions


def parse_feedback(body: bytes, space: LabelSpace, known_versions: frozenset[int],
                   max_items: int) -> FeedbackBatch:
    items = _items(body, max_items)
    labels = _values("label", [item["label"] for item in items], space)
    has_version = np.array([item.get("version") is not None for item in items], dtype=bool)
    has_prediction = np.array([item.get("prediction") is not None for item in items],
                              dtype=bool)
    if not np.array_equal(has_version, has_prediction):
        index = int(np.flatnonzero(has_version != has_prediction)[0])
        raise BadRequest(f"feedback[{index}]: 'version' and 'prediction' come together (the "
                         "version that answered and what it predicted), or neither; nothing "
                         "was counted")
    versions = _versions([item.get("version") for item in items], has_version, known_versions)
    predictions = np.zeros(len(items), dtype=labels.dtype)  # meaningless where not labelled
    if has_version.any():
        predicted = _predictions(items, np.flatnonzero(has_version), space)
        if space.text:
            predictions = np.full(len(items), "", dtype=predicted.dtype)
        predictions[has_version] = predicted
    ids = [item.get("id") for item in items]
    if not set(map(type, ids)) <= {str, type(None)}:
        index = _offender(ids, lambda v: v is None or isinstance(v, str))
        raise BadRequest(f"feedback[{index}]: 'id' must be a string; nothing was counted")
    codes = space.encode(labels) if space.classifier else labels
    return FeedbackBatch(labels, codes, has_version, versions, predictions,
                         tuple(i for i in ids if i is not None))


def _items(body: bytes, max_items: int) -> list[dict[str, Any]]:
    """The body's items, each an object with a label and no key but the four known ones."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"feedback body is not valid JSON: {exc}") from None
    items = doc.get("feedback") if isinstance(doc, dict) else None
    if not isinstance(items, list) or (isinstance(doc, dict) and doc.keys() != {"feedback"}):
        raise BadRequest('feedback body must be {"feedback": [{"label": ..., "version": ..., '
                         '"prediction": ..., "id": ...}, ...]}')
    if len(items) > max_items:
        raise BadRequest(f"{len(items)} feedback items; at most {max_items} per request "
                         "(limits.max_feedback_items): send them in several batches")
    if not all(type(item) is dict and item.keys() <= _KEYS and "label" in item
               for item in items):
        index = _offender(items, lambda i: type(i) is dict and i.keys() <= _KEYS
                          and "label" in i)
        item = items[index]
        why = ("must be an object" if type(item) is not dict else
               f"has unknown keys {', '.join(shown(k) for k in sorted(item.keys() - _KEYS)[:5])}"
               if item.keys() - _KEYS
               else "needs a 'label'")
        raise BadRequest(f"feedback[{index}] {why} (keys: label, version, prediction, id); "
                         "nothing was counted")
    return items


def _predictions(items: list[dict[str, Any]], labelled: np.ndarray,
                 space: LabelSpace) -> np.ndarray:
    """The labelled items' predictions; a classifier's must be one of its classes."""
    predicted = _values("prediction", [items[i]["prediction"] for i in labelled], space,
                        labelled)
    if space.classifier:
        # A label outside the classes is news (counted as unseen); a prediction outside them
        # is not what any version answered, and 0.5 == 0.5 must not count as correct.
        outside = np.flatnonzero(space.encode(predicted) < 0)
        if len(outside):
            index = int(labelled[outside[0]])
            raise BadRequest(
                f"feedback[{index}]: 'prediction' must be one of the classes "
                f"{list(space.categories)[:20]}, as the infer response gave it, got "
                f"{shown(orjson.dumps(items[index]['prediction']).decode(), 60)}; nothing "
                "was counted")
    return predicted
