from __future__ import annotations

import numpy as np
import orjson
import pytest

from gateway.errors import BadRequest
from gateway.protocol.feedback import LabelSpace, parse_feedback

CLASSES = LabelSpace("categorical", (0, 1))
VERSIONS = frozenset({1, 2, 3})


def parse(doc: object, space: LabelSpace = CLASSES, max_items: int = 100):
    return parse_feedback(orjson.dumps(doc), space, VERSIONS, max_items)


def test_items_become_arrays() -> None:
    batch = parse({"feedback": [{"label": 1, "version": 2, "prediction": 0, "id": "req-17"},
                                {"label": 0},
                                {"label": 7, "version": "3", "prediction": 1}]})
    assert batch.rows == 3 and batch.ids == ("req-17",)
    np.testing.assert_array_equal(batch.labels, [1, 0, 7])
    np.testing.assert_array_equal(batch.label_codes, [1, 0, -1])  # 7: unseen, not an error
    np.testing.assert_array_equal(batch.labelled, [True, False, True])
    np.testing.assert_array_equal(batch.versions, [2, 0, 3])
    np.testing.assert_array_equal(batch.predictions[batch.labelled], [0, 1])


def test_text_classes_and_regressors() -> None:
    text = LabelSpace("categorical", ("spam", "ham"))
    batch = parse({"feedback": [{"label": "ham", "version": 1, "prediction": "spam"},
                                {"label": "eggs"}]}, text)
    np.testing.assert_array_equal(batch.label_codes, [1, -1])
    assert batch.predictions[0] == "spam"
    short = parse({"feedback": [{"label": "sp"}, {"label": "ha"}]}, text)
    np.testing.assert_array_equal(short.label_codes, [-1, -1])  # a prefix is not the class
    numbers = parse({"feedback": [{"label": 2.5, "version": 1, "prediction": 3}]},
                    LabelSpace("numeric"))
    np.testing.assert_array_equal(numbers.label_codes, [2.5])
    np.testing.assert_array_equal(numbers.predictions, [3.0])


def test_an_empty_batch_is_accepted() -> None:
    assert parse({"feedback": []}).rows == 0


@pytest.mark.parametrize(("doc", "fragment"), [
    ([], '{"feedback": ['),
    ({"items": []}, '{"feedback": ['),
    ({"feedback": [], "extra": 1}, '{"feedback": ['),
    ({"feedback": {"label": 1}}, '{"feedback": ['),
    ({"feedback": [{"label": 1}, 5]}, "feedback[1] must be an object"),
    ({"feedback": [{"version": 1, "prediction": 1}]}, "feedback[0] needs a 'label'"),
    ({"feedback": [{"label": 1, "score": 3}]}, "unknown keys 'score'"),
    ({"feedback": [{"label": 1}, {"label": "1"}]}, "feedback[1]: 'label' must be a number"),
    ({"feedback": [{"label": True}]}, "'label' must be a number"),
    ({"feedback": [{"label": None}]}, "'label' must be a number"),
    ({"feedback": [{"label": 1, "version": 2}]}, "come together"),
    ({"feedback": [{"label": 1}, {"label": 1, "prediction": 0}]}, "feedback[1]: 'version'"),
    ({"feedback": [{"label": 1, "version": 9, "prediction": 1}]}, "version 9 is not a version"),
    ({"feedback": [{"label": 1, "version": "02", "prediction": 1}]}, 'version "02"'),
    ({"feedback": [{"label": 1, "version": 1.0, "prediction": 1}]}, "version 1.0"),
    ({"feedback": [{"label": 0}, {"label": 1, "version": 1, "prediction": [1]}]},
     "feedback[1]: 'prediction' must be a number"),
    ({"feedback": [{"label": 1, "id": 17}]}, "'id' must be a string"),
    ({"feedback": [{"label": 1}] * 101}, "at most 100 per request"),
])
def test_a_bad_item_rejects_the_batch_and_names_it(doc: object, fragment: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse(doc)
    assert fragment in caught.value.message


def test_not_json_and_out_of_range_numbers() -> None:
    with pytest.raises(BadRequest, match="not valid JSON"):
        parse_feedback(b'{"feedback": [', CLASSES, VERSIONS, 10)
    with pytest.raises(BadRequest, match="not valid JSON"):  # orjson refuses infinities
        parse_feedback(b'{"feedback": [{"label": 1e999}]}', LabelSpace("numeric"), VERSIONS, 10)
    with pytest.raises(BadRequest, match="'label' must be one of the classes"):
        parse({"feedback": [{"label": 1}]}, LabelSpace("categorical", ("a", "b")))
