"""The OpenAPI 3.0 description of the gateway's endpoints, served at GET /openapi.json.

Written by hand from docs/endpoints.md (KServe's rest_predict_v2.yaml is looser: no binary
extension, no 404/413/503/504): tests check that every route of the app is described and every
described path exists, and a schemathesis run fuzzes the server from this document, checking
that answers keep to the status codes, content types and schemas written here.
"""

from __future__ import annotations

from typing import Any

from gateway import __version__

_ERROR = {"$ref": "#/components/responses/Error"}
_JSON_OBJECT = {"type": "object"}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _ERROR for code in codes}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_MODEL = {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}
_VERSION = {"name": "version", "in": "path", "required": True,
            "description": "a positive integer", "schema": {"type": "string"}}

_TENSOR_INPUT = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string",
                     "enum": ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16",
                              "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"]},
        "parameters": _JSON_OBJECT,
        "data": {"description": "flat or nested row-major values; absent with binary_data_size"},
    },
}
_INFER_REQUEST = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": _JSON_OBJECT,
        "inputs": {"type": "array", "minItems": 1, "items": _TENSOR_INPUT},
        "outputs": {"type": "array", "items": {
            "type": "object", "required": ["name"],
            "properties": {"name": {"type": "string"}, "parameters": _JSON_OBJECT}}},
    },
}
_INFER_RESPONSE = {
    "type": "object",
    "required": ["model_name", "outputs"],
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "parameters": _JSON_OBJECT,
        "outputs": {"type": "array", "items": {
            "type": "object", "required": ["name", "shape", "datatype"],
            "properties": {"name": {"type": "string"},
                           "shape": {"type": "array", "items": {"type": "integer"}},
                           "datatype": {"type": "string"}, "parameters": _JSON_OBJECT,
                           "data": {"type": "array"}}}},
    },
}
_DRIFT_REPORT = {
    "type": "object",
    "required": ["model", "version", "window_rows", "reference_rows", "features", "outputs",
                 "dropped_rows"],
    "properties": {
        "model": {"type": "string"}, "version": {"type": "string"},
        "window_rows": {"type": "integer"}, "reference_rows": {"type": "integer"},
        "features": {"type": "array", "items": _JSON_OBJECT},
        "outputs": {"type": "array", "items": _JSON_OBJECT},
        "dropped_rows": {"type": "integer"},
    },
}


def _infer(pinned: bool) -> dict[str, Any]:
    return {
        "summary": "Inference on that version, without routing" if pinned else
                   "Routed inference (flags, weighted split, sticky key; docs/routing.md)",
        "parameters": [_MODEL, *([_VERSION] if pinned else [])],
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": _INFER_REQUEST},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": "binary tensor extension: a JSON header of "
                               "Inference-Header-Content-Length bytes, then tensor data"}}},
        "responses": {
            "200": {"description": "outputs; headers x-model-version and x-model-route",
                    "content": {"application/json": {"schema": _INFER_RESPONSE},
                                "application/octet-stream": {
                                    "schema": {"type": "string", "format": "binary"}}}},
            # 408 and 431 are answered by the HTTP protocol (gateway/http/server.py).
            **_errors(400, 404, 408, 413, 431, 500, 503, 504)},
    }


def _get(summary: str, ok: dict[str, Any], *errors: int,
         parameters: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    return {"get": {"summary": summary, "parameters": list(parameters),
                    "responses": {"200": ok, **_errors(*errors)}}}


_FEEDBACK = {
    "summary": "Ground-truth labels, each with the version and prediction it was served "
               "(docs/endpoints.md, Feedback); the batch is taken whole or not at all",
    "parameters": [_MODEL],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["feedback"], "additionalProperties": False,
        "properties": {"feedback": {"type": "array", "items": {
            "type": "object", "required": ["label"], "additionalProperties": False,
            "properties": {"label": {}, "version": {}, "prediction": {},
                           "id": {"type": "string", "nullable": True}}}}}}}}},
    "responses": {"200": _json({"type": "object", "required": ["accepted"],
                                "properties": {"accepted": {"type": "integer"}}},
                               "the rows counted"),
                  **_errors(400, 404, 413)}}


_INDEX = {
    "summary": "Every model and version of the repository with its state (Triton's read-only "
               "repository extension); {\"ready\": true} keeps the READY ones",
    "parameters": [],
    "requestBody": {"required": False, "content": {"application/json": {"schema": {
        "type": "object", "properties": {"ready": {"type": "boolean"}}}}}},
    "responses": {"200": _json({"type": "array", "items": {
        "type": "object", "required": ["name", "version", "state", "reason"],
        "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                       "state": {"type": "string", "enum": ["READY", "UNAVAILABLE", "LOADING"]},
                       "reason": {"type": "string"}}}}, "the repository's versions"),
                  **_errors(400, 413)}}


def _admin_paths() -> dict[str, Any]:
    secured: dict[str, Any] = {"security": [{"bearer": []}]}
    state = _json({"type": "object",
                   "required": ["source", "source_sha256", "policy", "last_reload"]},
                  "the policy in force and the last reload")
    return {"/admin/routing": {"get": {"summary": "The routing policy in force", **secured,
                                       "responses": {"200": state, **_errors(401)}}},
            "/admin/reload": {"post": {"summary": "Reload routing.yaml now", **secured,
                                       "responses": {"200": state, **_errors(400, 401)}}}}


def openapi_document(admin: bool) -> dict[str, Any]:
    """The document; the admin paths only when they exist (GATEWAY_ADMIN_TOKEN set)."""
    metadata = _json(_JSON_OBJECT, "model metadata")
    ready = _json({"type": "object", "required": ["ready"]}, "ready")
    paths: dict[str, Any] = {
        "/v2/health/live": _get("Liveness", _json({"type": "object"}, "live")),
        "/v2/health/ready": _get("Readiness: every model has a ready version with traffic "
                                 "(not_serving: versions that failed)", ready, 503),
        "/v2": _get("Server metadata", _json({"type": "object",
                                              "required": ["name", "version", "extensions"]},
                                             "server metadata")),
        "/v2/models/{model}": _get("Model metadata (the primary version)", metadata, 404, 503,
                                   parameters=(_MODEL,)),
        "/v2/models/{model}/versions/{version}": _get("Version metadata", metadata, 404, 503,
                                                      parameters=(_MODEL, _VERSION)),
        "/v2/models/{model}/ready": _get("Model readiness", ready, 404, 503,
                                         parameters=(_MODEL,)),
        "/v2/models/{model}/versions/{version}/ready": _get(
            "Version readiness", ready, 404, 503, parameters=(_MODEL, _VERSION)),
        "/v2/models/{model}/infer": {"post": _infer(pinned=False)},
        "/v2/models/{model}/versions/{version}/infer": {"post": _infer(pinned=True)},
        "/v2/models/{model}/drift": _get(
            "Drift reports of every loaded version",
            _json({"type": "object", "required": ["model", "versions"],
                   "properties": {"versions": {"type": "array", "items": _DRIFT_REPORT}}},
                  "drift reports"), 404, parameters=(_MODEL,)),
        "/v2/models/{model}/versions/{version}/drift": _get(
            "Drift report of a version (docs/endpoints.md, Drift reports)",
            _json(_DRIFT_REPORT, "drift report"),
            404, 503, parameters=(_MODEL, _VERSION)),
        "/v2/models/{model}/feedback": {"post": _FEEDBACK},
        "/v2/repository/index": {"post": _INDEX},
        "/metrics": {"get": {"summary": "Prometheus metrics (docs/metrics.md)", "responses": {
            "200": {"description": "Prometheus text format",
                    "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": _get("This document", _json(_JSON_OBJECT, "OpenAPI 3.0")),
    }
    if admin:
        paths.update(_admin_paths())
    return {
        "openapi": "3.0.3",
        "info": {"title": "gateway", "version": __version__,
                 "description": "Open Inference Protocol (V2) REST, with rollout and drift "
                                "monitoring. Every error answers {\"error\": <message>}."},
        "paths": paths,
        "components": {
            "responses": {"Error": _json({"type": "object", "required": ["error"],
                                          "properties": {"error": {"type": "string"}}},
                                         "an error, in the V2 shape")},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
