"""The gateway's request path timed in process: its ASGI app called directly, no sockets.

wrk against a server process measures everything, HTTP parsing and the kernel's share included,
on a machine whose speed swings from one second to the next. Calling the app itself from a few
concurrent tasks leaves the gateway's own Python work: the process CPU time per request (its
worker threads included) of each configuration, measured in alternating rounds in one process,
is what `make bench` table 9 reports as each feature's cost on the request path.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from loadtests.harness import Load

PATH = "/v2/models/{model}/infer"


def _scope(model: str, load: Load, key: str | None) -> dict[str, Any]:
    headers = [(k.lower().encode(), v.encode()) for k, v in load.headers.items()]
    headers += [(b"host", b"127.0.0.1"), (b"content-length", str(len(load.body)).encode())]
    if key is not None:
        headers.append((load.fresh_key.encode() if load.fresh_key else b"x-user-id",
                        key.encode()))
    path = PATH.format(model=model)
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1", "method": "POST", "scheme": "http", "path": path,
            "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": headers, "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}


async def _call(app: Any, scope: dict[str, Any], body: bytes) -> int:
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # never: the app reads the body once
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(dict(scope, state={}), receive, send)
    return status


def _scopes(model: str, load: Load, requests: int) -> list[dict[str, Any]]:
    """Every request's scope, made before the clock starts (a new sticky key each, if asked)."""
    if not load.fresh_key:
        return [_scope(model, load, None)] * requests
    keys = np.random.default_rng(0).integers(10**9, size=requests)
    return [_scope(model, load, f"user-{key}") for key in keys]


async def _drive(app: Any, scopes: list[dict[str, Any]], body: bytes, concurrency: int) -> int:
    """A call per scope from `concurrency` tasks; the non-200 answers."""
    errors = 0

    async def client(part: list[dict[str, Any]]) -> None:
        nonlocal errors
        for scope in part:
            errors += await _call(app, scope, body) != 200

    await asyncio.gather(*(client(scopes[i::concurrency]) for i in range(concurrency)))
    return errors


def _app(config: Path, env: dict[str, str]) -> Any:
    """The gateway's app for `config`, made with `env` set (tracing reads it then)."""
    from gateway.app import create_app
    from gateway.settings import load_settings

    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        return create_app(load_settings(config))
    finally:
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def path_cpu_us(configs: Iterable[tuple[Path, Load, dict[str, str]]], model: str,
                requests: int = 20_000, concurrency: int = 8,
                rounds: int = 3) -> list[tuple[float, int]]:
    """Median process CPU µs per request of each (gateway.yaml, load, environment), and its
    errors: every configuration's app lives in this process, measured in alternating rounds."""
    chosen = list(configs)

    async def main() -> list[tuple[float, int]]:
        apps = [_app(config, env) for config, _, env in chosen]
        contexts = [app.router.lifespan_context(app) for app in apps]
        for context in contexts:
            await context.__aenter__()
        try:
            scopes = [_scopes(model, load, requests) for _, load, _ in chosen]
            # As the gateway freezes what start-up made: the scopes live through the run, and
            # the collector's full passes over them would land on whichever app was running.
            gc.collect()
            gc.freeze()
            for app, (_, load, _), made in zip(apps, chosen, scopes, strict=True):
                await _drive(app, made[:200], load.body, concurrency)  # warm
            samples: list[list[float]] = [[] for _ in apps]
            errors = [0] * len(apps)
            for _ in range(rounds):
                for i, (app, (_, load, _)) in enumerate(zip(apps, chosen, strict=True)):
                    start = time.process_time()
                    errors[i] += await _drive(app, scopes[i], load.body, concurrency)
                    samples[i].append((time.process_time() - start) / requests * 1e6)
            return [(float(np.median(s)), e) for s, e in zip(samples, errors, strict=True)]
        finally:
            for context in reversed(contexts):
                await context.__aexit__(None, None, None)

    try:
        import uvloop

        return uvloop.run(main())
    except ImportError:
        return asyncio.run(main())
