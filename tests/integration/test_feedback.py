"""Label feedback against the real server (SPEC section 8), as a new user would: serve the
shipped model, send its training rows pinned to each version, post the true labels with the
versions and predictions the answers gave, and read live accuracy next to held-out accuracy;
then a mix of labels all of one class flags label drift."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
import tritonclient.http as httpclient
from sklearn.datasets import load_breast_cancer

from tests.conftest import MODEL, ConfigWriter
from tests.integration.conftest import Start
from tests.integration.server import GatewayProcess

FEEDBACK = f"/v2/models/{MODEL}/feedback"


def metrics(server: GatewayProcess) -> dict[str, float]:
    lines = server.request("GET", "/metrics").body.decode().splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines
            if line and not line.startswith("#")}


def predict(url: str, rows: np.ndarray, version: str) -> tuple[np.ndarray, str]:
    client = httpclient.InferenceServerClient(url)
    tensor = httpclient.InferInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows.astype(np.float32))
    result = client.infer(MODEL, [tensor], model_version=version)
    return result.as_numpy("label"), result.get_response()["model_version"]


def post(server: GatewayProcess, items: list[dict[str, object]]) -> int:
    reply = server.request("POST", FEEDBACK, orjson.dumps({"feedback": items}),
                           {"content-type": "application/json"})
    assert reply.status == 200, reply.body
    return int(reply.json()["accepted"])


def test_live_accuracy_per_version_then_label_drift(write_config: ConfigWriter,
                                                     start: Start) -> None:
    routing = {"models": {MODEL: {"traffic": [{"version": 1, "weight": 50},
                                              {"version": 2, "weight": 50}]}}}
    server = start(write_config(routing=routing))
    data = load_breast_cancer()
    expected = {}
    for version in ("1", "2"):
        items: list[dict[str, object]] = []
        for begin in range(0, len(data.data), 100):
            rows, labels = data.data[begin:begin + 100], data.target[begin:begin + 100]
            predicted, served = predict(server.url, rows, version)
            assert served == version
            items += [{"label": int(y), "version": served, "prediction": int(p),
                       "id": f"row-{begin + i}"}
                      for i, (y, p) in enumerate(zip(labels, predicted, strict=True))]
            expected[version] = expected.get(version, []) + list(predicted == labels)
        assert post(server, items) == len(data.data)
    report = server.request("GET", f"/v2/models/{MODEL}/drift").json()
    held_out = {"1": 0.982456, "2": 0.938596}
    for version_report in report["versions"]:
        version = version_report["version"]
        performance = version_report["performance"]
        assert performance["labelled_rows"] == len(data.data)
        assert performance["accuracy"] == round(float(np.mean(expected[version])), 6)
        assert performance["reference"] == pytest.approx(held_out[version])
        gauges = metrics(server)
        key = f'{{model="{MODEL}",version="{version}"}}'
        assert gauges[f"gateway_live_accuracy{key}"] == pytest.approx(np.mean(expected[version]))
        assert gauges[f"gateway_reference_accuracy{key}"] == pytest.approx(held_out[version])
        assert gauges[f"gateway_feedback_rows_total{key}"] == len(data.data)
        assert gauges[f"gateway_feedback_correct_rows_total{key}"] == sum(expected[version])
    # The training labels, twice over: the mix of the reference, no label drift.
    assert report["labels"]["window_rows"] == 2 * len(data.data)
    assert not report["labels"]["drifted"] and report["labels"]["unseen"] == 0
    # Then every label one class: a prior shift, flagged in the report and the gauge.
    assert post(server, [{"label": 1}] * 5000) == 5000
    shifted = server.request("GET", f"/v2/models/{MODEL}/drift").json()["labels"]
    assert shifted["drifted"] and shifted["psi"] >= 0.2 and shifted["window_rows"] == 5000
    gauges = metrics(server)
    assert gauges[f'gateway_label_drift_psi{{model="{MODEL}"}}'] == pytest.approx(
        shifted["psi"])
    assert gauges[f'gateway_label_rows_total{{label="1",model="{MODEL}"}}'] == \
        5000 + 2 * int(data.target.sum())
    version_report = server.request("GET", f"/v2/models/{MODEL}/versions/2/drift").json()
    assert version_report["performance"]["labelled_rows"] == len(data.data)


@pytest.mark.parametrize("body", [
    b"not json",
    b'{"feedback": [{"label": 1}, {"label": 1, "version": 2}]}',
    b'{"feedback": [{"label": 1}, {"label": 1, "version": 7, "prediction": 1}]}',
    b'{"feedback": [{"label": 1}, {"label": "one"}]}',
    b'{"feedback": [{"label": 1}], "more": true}',
    b'{"feedback": [' + b'{"label": 1},' * 10 + b'{"label": 1}]}',  # 11 > the limit of 10
])
def test_a_malformed_batch_answers_400_and_counts_nothing(
        write_config: ConfigWriter, start: Start, body: bytes) -> None:
    server = start(write_config(limits={"max_feedback_items": 10}))
    assert post(server, [{"label": 0, "version": 1, "prediction": 0}]) == 1
    before = metrics(server)
    reply = server.request("POST", FEEDBACK, body, {"content-type": "application/json"})
    assert reply.status == 400 and "error" in reply.json()
    after = metrics(server)
    counted = {k: v for k, v in after.items() if "feedback" in k or "label" in k}
    assert counted == {k: v for k, v in before.items() if "feedback" in k or "label" in k}


def test_a_fresh_gateway_takes_labels_for_rows_it_never_served(
        write_config: ConfigWriter, start: Start) -> None:
    server = start(write_config())
    assert post(server, [{"label": 1, "version": 3, "prediction": 1},
                         {"label": 0, "version": "3", "prediction": 1}, {"label": 9}]) == 3
    gauges = metrics(server)
    assert gauges[f'gateway_live_accuracy{{model="{MODEL}",version="3"}}'] == 0.5
    assert gauges[f'gateway_label_rows_total{{label="_unseen",model="{MODEL}"}}'] == 1
    assert server.request("POST", "/v2/models/nope/feedback", b'{"feedback": []}').status == 404
