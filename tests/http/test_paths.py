from __future__ import annotations

import pytest

from gateway.errors import NotFound
from gateway.http.middleware import RequestIds
from gateway.http.paths import infer_path_params, parse_version


def test_versions_in_urls_are_canonical_positive_integers() -> None:
    assert parse_version("12") == 12
    assert parse_version("9" * 18) == int("9" * 18)  # fits an int64, as Triton's versions
    for text in ("0", "01", "-1", "1.0", "one", "9" * 19, "³", "١٢", "1\n", "٣", "²"):
        with pytest.raises(NotFound):
            parse_version(text)


def test_the_infer_fast_path_matches_exactly_what_the_router_would() -> None:
    """The inference lane takes inference requests past Starlette's router: it must take the
    paths the router's two infer routes match, with the same parameters, and no other."""
    from starlette.routing import Match, Route

    routes = [Route("/v2/models/{model}/infer", lambda r: None, methods=["POST"]),
              Route("/v2/models/{model}/versions/{version}/infer", lambda r: None,
                    methods=["POST"])]
    paths = ["/v2/models/m/infer", "/v2/models/breast cancer copy (v2)/infer",
             "/v2/models/m/versions/3/infer", "/v2/models/m/versions/x/infer",
             "/v2/models//infer", "/v2/models/m/versions//infer", "/v2/models/infer",
             "/v2/models/m/infer/", "/v2/models/a/b/infer", "/v2/models/m/versions/3/4/infer",
             "/v2/models/m/other/3/infer", "/v2/models/m/ready", "/v2/models/infer/infer",
             "/v2/models/m/versions/infer", "/v2/modelsx/infer", "/v2/models/ü/infer"]
    for path in paths:
        scope = {"type": "http", "method": "POST", "path": path, "root_path": ""}
        expected = None
        for route in routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                expected = child["path_params"]
                break
        assert infer_path_params(path) == expected, path


def test_request_ids_are_unique_and_shaped_as_a_uuids_hex() -> None:
    ids = RequestIds()
    made = [ids.next() for _ in range(10_000)]
    assert len(set(made)) == len(made)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in made)
    assert RequestIds().next()[:16] != made[0][:16]  # another process, another prefix
