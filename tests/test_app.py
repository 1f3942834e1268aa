"""The app in-process, through Starlette's test client: the gateway's start and stop phases, the
endpoints' answers, and the live policy's reload driven directly, with real models and no server
(tests/integration/ keeps what needs a real server: sockets, signals, processes)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import orjson
import yaml
from starlette.testclient import TestClient

from gateway.app import Gateway, create_app
from gateway.settings import load_settings
from tests.conftest import MODEL, ConfigWriter, add_version, sample_rows

BODY = orjson.dumps({"inputs": [{"name": "input", "shape": [2, 30], "datatype": "FP32",
                                 "data": sample_rows(2).tolist()}]})


def test_the_app_starts_serves_and_stops(write_config: ConfigWriter) -> None:
    app = create_app(load_settings(write_config()), admin_token="t0ken")
    with TestClient(app) as client:  # the lifespan: Gateway.start() ... Gateway.stop()
        assert client.get("/v2/health/ready").json() == {"ready": True, "not_serving": []}
        reply = client.post(f"/v2/models/{MODEL}/infer", content=BODY,
                            headers={"x-request-id": "abc"})
        assert reply.status_code == 200 and reply.headers["x-model-version"] == "2"
        assert reply.headers["x-request-id"] == "abc"
        assert [o["name"] for o in reply.json()["outputs"]] == ["label", "probabilities"]
        pinned = client.post(f"/v2/models/{MODEL}/versions/1/infer", content=BODY)
        assert pinned.headers["x-model-route"] == "pinned"
        assert client.get(f"/v2/models/{MODEL}").json()["versions"] == ["1", "2"]
        assert client.get("/admin/routing").status_code == 401
        routing = client.get("/admin/routing", headers={"Authorization": "Bearer t0ken"})
        assert routing.json()["last_reload"]["result"] == "success"
        assert "/admin/reload" in client.get("/openapi.json").json()["paths"]
        metrics = client.get("/metrics").text
        assert (f'gateway_requests_total{{code="200",model="{MODEL}",route="split",'
                f'version="2"}} 1.0') in metrics
        bad = client.post(f"/v2/models/{MODEL}/infer", content=b"{")
        assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]


def test_a_reload_applies_rejects_and_retries_when_the_version_arrives(
        model_repo: Path, write_config: ConfigWriter) -> None:
    config = write_config(model_repo)
    routing = config.parent / "routing.yaml"

    async def scenario() -> None:
        gateway = Gateway(load_settings(config))
        await gateway.start()
        try:
            live = gateway.live
            routing.write_text(yaml.safe_dump(
                {"models": {MODEL: {"traffic": [{"version": 1, "weight": 100}]}}}))
            assert (await live.reload()).result == "success"
            assert live.version_for_model(MODEL) == 1
            routing.write_text(yaml.safe_dump(
                {"models": {MODEL: {"traffic": [{"version": 4, "weight": 100}]}}}))
            rejected = await live.reload()
            assert rejected.result == "error" and "4" in rejected.message
            assert (await live.reload()).result == "unchanged"  # said once, not per poll
            add_version(model_repo, 4, (model_repo / MODEL / "2" / "model.onnx").read_bytes())
            assert (await live.reload()).result == "success"  # the repository changed
            assert live.version_for_model(MODEL) == 4
            assert gateway.registry.find(MODEL, 4).ready
        finally:
            await gateway.stop()

    asyncio.run(scenario())


def test_a_rejected_edit_loads_nothing_that_stays(model_repo: Path,
                                                   write_config: ConfigWriter) -> None:
    good = (model_repo / MODEL / "2" / "model.onnx").read_bytes()
    add_version(model_repo, 4, good)
    add_version(model_repo, 5, good)
    (model_repo / MODEL / "5" / "model.onnx").write_bytes(good + b"\0")
    config = write_config(model_repo)

    async def scenario() -> None:
        gateway = Gateway(load_settings(config))
        await gateway.start()
        try:
            (config.parent / "routing.yaml").write_text(yaml.safe_dump({"models": {MODEL: {
                "traffic": [{"version": 2, "weight": 100}, {"version": 4, "weight": 0},
                            {"version": 5, "weight": 0}]}}}))
            assert (await gateway.live.reload()).result == "error"
            assert set(gateway.registry.versions_of(MODEL)) == {1, 2}
        finally:
            await gateway.stop()

    asyncio.run(scenario())


def test_two_gateways_live_in_one_process(tmp_path: Path, write_config: ConfigWriter) -> None:
    first = write_config()
    second_dir = tmp_path / "second"
    shutil.copytree(first.parent, second_dir)
    with TestClient(create_app(load_settings(first))) as a, \
            TestClient(create_app(load_settings(second_dir / "gateway.yaml"))) as b:
        for client in (a, b):
            assert client.post(f"/v2/models/{MODEL}/infer", content=BODY).status_code == 200
        # Each has its own registry of metrics: one request each.
        for client in (a, b):
            assert (f'gateway_requests_total{{code="200",model="{MODEL}",route="split",'
                    f'version="2"}} 1.0') in client.get("/metrics").text


def test_without_a_token_the_admin_endpoints_say_how_to_enable_them(
        write_config: ConfigWriter) -> None:
    app = create_app(load_settings(write_config()), admin_token="")
    with TestClient(app) as client:
        for method, path in (("GET", "/admin/routing"), ("POST", "/admin/reload")):
            reply = client.request(method, path)
            assert reply.status_code == 404
            assert "set GATEWAY_ADMIN_TOKEN" in reply.json()["error"]
        assert "/admin/reload" not in client.get("/openapi.json").json()["paths"]
