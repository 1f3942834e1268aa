"""What a URL path names: a model version, as version folders name it; an inference path."""

from __future__ import annotations

from gateway.runtime.registry import parse_version

__all__ = ["infer_path_params", "parse_version"]

_MODELS = "/v2/models/"
_INFER = "/infer"


def infer_path_params(path: str) -> dict[str, str] | None:
    """`{"model": m}` for /v2/models/{m}/infer, with `"version": v` for
    /v2/models/{m}/versions/{v}/infer; None for any other path. The same matches as Starlette's
    `{param}` (one non-empty segment each), in a few string operations instead of a regular
    expression per route."""
    if not (path.startswith(_MODELS) and path.endswith(_INFER)):
        return None
    parts = path[len(_MODELS):-len(_INFER)].split("/")
    if len(parts) == 1 and parts[0]:
        return {"model": parts[0]}
    if len(parts) == 3 and parts[1] == "versions" and parts[0] and parts[2]:
        return {"model": parts[0], "version": parts[2]}
    return None
