"""The OpenAPI document stays true to the app: every route is described with its methods, and
every described path is a route (with and without the admin endpoints)."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.routing import Route

from gateway.app import create_app
from gateway.http.openapi import openapi_document
from gateway.settings import load_settings
from tests.conftest import shipped_config


def routes_of(admin_token: str | None, folder: Path) -> set[tuple[str, str]]:
    app = create_app(load_settings(shipped_config(folder)), admin_token=admin_token)
    found = set()
    for route in app.routes:
        assert isinstance(route, Route)
        for method in route.methods or ():
            if method == "HEAD" or route.path == "/v2/":  # /v2/ is /v2 with a slash
                continue
            if route.path.startswith("/admin/") and not admin_token:
                continue  # off: answered 404 with how to enable them, not described
            found.add((route.path, method))
    return found


@pytest.mark.parametrize("token", [None, "secret"])
def test_the_document_describes_exactly_the_routes(token: str | None, tmp_path: Path) -> None:
    document = openapi_document(admin=token is not None)
    described = {(path, method.upper()) for path, item in document["paths"].items()
                 for method in item}
    assert described == routes_of(token or "", tmp_path)


def test_every_operation_documents_its_errors_in_the_v2_shape() -> None:
    document = openapi_document(admin=True)
    error = document["components"]["responses"]["Error"]
    assert error["content"]["application/json"]["schema"]["required"] == ["error"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert "200" in operation["responses"], (path, method)
            for code, response in operation["responses"].items():
                if code != "200":
                    assert response == {"$ref": "#/components/responses/Error"}, (path, code)
            parameters = {p["name"] for p in operation.get("parameters", [])}
            assert parameters == {part[1:-1] for part in path.split("/")
                                  if part.startswith("{")}, path
