"""Fuzzing the running gateway from its own /openapi.json with schemathesis (coverage, fuzzing and
stateful phases, every check): no 5xx, no crash, and answers that keep to the document's status
codes, content types and schemas. Then the gateway still serves correct answers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import MODEL, ConfigWriter, sample_rows
from tests.integration.conftest import Start

TOKEN = "fuzz-admin-token"
# A schema-valid request can still be refused: whether it is valid depends on the model's
# signature (input names, datatypes, shapes), which is in the model's metadata, not the document.
EXCLUDED_CHECKS = "positive_data_acceptance"


def aim_at_the_shipped_model(document: dict[str, Any]) -> dict[str, Any]:
    """Point the path parameters and inputs at the shipped model, so that most generated
    requests get past the 404 and the name check and reach decoding, validation and inference."""
    for item in document["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "model":
                    parameter["schema"] = {"type": "string", "enum": [MODEL]}
                elif parameter["name"] == "version":
                    parameter["schema"] = {"type": "string", "enum": ["1", "2", "3"]}
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            properties = body["schema"]["properties"] if body else {}
            if "feedback" in properties:
                item = properties["feedback"]["items"]["properties"]
                # As strict as the gateway for this model, no stricter (else schemathesis
                # rightly reports schema-invalid requests that were accepted).
                item["label"] = {"type": "number"}
                item["prediction"] = {"type": "number", "nullable": True}
                item["version"] = {"enum": ["1", "2", "3", 1, 2, 3, None]}
            if "inputs" in properties:
                tensor = properties["inputs"]["items"]["properties"]
                tensor["name"] = {"type": "string", "enum": ["input"]}
                tensor["shape"] = {"type": "array", "items": {"type": "integer", "minimum": 0,
                                                              "maximum": 40}}
                tensor["data"] = {"type": "array", "items": {"type": "number"}}
    return document


def test_schemathesis_finds_no_server_error(write_config: ConfigWriter, start: Start,
                                             tmp_path: Path) -> None:
    routing = {"models": {MODEL: {"traffic": [{"version": 1, "weight": 50},
                                              {"version": 2, "weight": 50}],
                                  "shadow": [{"version": 3, "percent": 100}]}}}
    server = start(write_config(routing=routing), env={"GATEWAY_ADMIN_TOKEN": TOKEN})
    document = server.request("GET", "/openapi.json").json()
    schema = tmp_path / "openapi.json"
    schema.write_text(json.dumps(aim_at_the_shipped_model(document)))
    run = subprocess.run(
        [str(Path(sys.executable).with_name("schemathesis")), "run", str(schema),
         "--url", f"http://{server.url}", "--checks", "all",
         "--exclude-checks", EXCLUDED_CHECKS, "--max-examples", "40", "--seed", "20261124",
         "--header", f"Authorization: Bearer {TOKEN}", "--generation-database", "none",
         "--request-timeout", "10"],
        cwd=tmp_path, capture_output=True, text=True, timeout=400)
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[report.find("FAILURES"):][:6000]
    summary = report[report.rfind("SUMMARY"):]
    assert "Tested: 17" in report and "generated" in report, summary  # every operation
    log = server.log()
    assert "Traceback" not in log and "unexpected error" not in log
    body = orjson.dumps({"inputs": [{"name": "input", "shape": [2, 30], "datatype": "FP32",
                                     "data": sample_rows(2).ravel().tolist()}]})
    pinned = server.request("POST", f"/v2/models/{MODEL}/versions/2/infer", body)
    assert pinned.status == 200 and pinned.json()["model_version"] == "2"
    assert server.request("GET", "/v2/health/ready").status == 200
