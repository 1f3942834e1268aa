"""The admin endpoints: on with a token, and without one a 404 that says how to turn them on."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from gateway.app import Gateway
from gateway.errors import GatewayError
from gateway.http.admin import Admin
from gateway.http.responses import on_gateway_error
from gateway.settings import load_settings
from tests.conftest import ConfigWriter


def admin_client(write_config: ConfigWriter, token: str | None) -> TestClient:
    live = Gateway(load_settings(write_config())).live
    app = Starlette(routes=Admin(live, token).routes(),
                    exception_handlers={GatewayError: on_gateway_error})
    return TestClient(app)


@pytest.mark.parametrize("token", [None, ""])
def test_without_a_token_the_admin_paths_say_how_to_enable_them(
        write_config: ConfigWriter, token: str | None) -> None:
    client = admin_client(write_config, token)
    for method, path in (("GET", "/admin/routing"), ("POST", "/admin/reload")):
        reply = client.request(method, path, headers={"Authorization": "Bearer guess"})
        assert reply.status_code == 404
        message = reply.json()["error"]  # the V2 error shape
        assert set(reply.json()) == {"error"}
        assert f"no endpoint at {path}" in message
        assert "set GATEWAY_ADMIN_TOKEN" in message and "before starting" in message
        assert "'Authorization: Bearer <the secret>'" in message


def test_with_a_token_the_admin_paths_need_it(write_config: ConfigWriter) -> None:
    client = admin_client(write_config, "t0ken")
    assert client.get("/admin/routing").status_code == 401
    assert client.get("/admin/routing", headers={"Authorization": "Bearer nope"}).status_code \
        == 401
    state = client.get("/admin/routing", headers={"Authorization": "Bearer t0ken"})
    assert state.status_code == 200 and "policy" in state.json()
