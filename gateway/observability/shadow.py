"""Shadow mode's runner: mirror answered requests to another version, compare, count; never block.

`ShadowRunner` owns a bounded queue and one thread, like the other workers fed from the request
path (drift, feedback): the request path only calls `mirror`, which never waits (a full queue
drops the mirror and counts it), and the shadow's inference runs on that thread, never on the
event loop and never in the primary's batch queue, so a slow or failing shadow cannot delay or
change an answer. What to mirror and how to compare are gateway.routing.shadow's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.context import Context

from gateway.routing.shadow import AGREE, DISAGREE, DROPPED, ERROR, compare_outputs
from gateway.tensors import Tensors

logger = logging.getLogger("gateway.shadow")


@dataclass(frozen=True)
class Mirror:
    model: str
    version: int
    inputs: Tensors
    primary: Tensors
    link: trace.SpanContext | None = None
    """The request span this mirror came from (tracing on)."""


ShadowTarget = Callable[[str, int], "tuple[Callable[[Tensors], Tensors], str | None] | None"]
"""(model, version) -> (run function, label output name), or None when the version is not loaded
any more."""


class ShadowRunner:
    def __init__(self, target: ShadowTarget, count: Callable[[str, int, str], None],
                 max_queue: int = 64, tracer: trace.Tracer | None = None) -> None:
        self._target = target
        self._tracer = tracer
        self._count = count
        self._queue: asyncio.Queue[Mirror] = asyncio.Queue(max_queue)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="gateway-shadow")
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._work(), name="shadow")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._thread.shutdown(wait=False, cancel_futures=True)

    def mirror(self, model: str, versions: list[int], inputs: Tensors, primary: Tensors,
               link: trace.SpanContext | None = None) -> None:
        """Queue a mirror per shadow version; never waits (full queue: dropped and counted)."""
        for version in versions:
            try:
                self._queue.put_nowait(Mirror(model, version, inputs, primary, link))
            except asyncio.QueueFull:
                self._count(model, version, DROPPED)

    async def _work(self) -> None:
        while True:
            item = await self._queue.get()
            if self._tracer is None:
                self._count(item.model, item.version, await self._run(item))
                continue
            # Its own trace (the caller's answer does not wait for it), linked to the request.
            links = [trace.Link(item.link)] if item.link is not None else None
            span = self._tracer.start_span("shadow", context=Context(), links=links,
                                           attributes={"model": item.model,
                                                       "version": item.version})
            result = await self._run(item)
            span.set_attribute("result", result)
            if result == ERROR:
                span.set_status(trace.StatusCode.ERROR)
            span.end()
            self._count(item.model, item.version, result)

    async def _run(self, item: Mirror) -> str:
        """Run one mirror on the shadow thread and compare: agree, disagree or error; dropped
        when the shadow was taken out of the policy while its mirrors waited (not its error:
        SREs watch `error` during a rollout)."""
        target = self._target(item.model, item.version)
        if target is None:
            return DROPPED
        run, label = target
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(self._thread, run,
                                                                       item.inputs)
        except Exception as exc:
            logger.warning("shadow model '%s' version %d failed: %s", item.model,
                           item.version, exc)
            return ERROR
        try:
            agree = compare_outputs(item.primary, outputs, label)
        except Exception as exc:  # outputs of another shape or kind
            logger.warning("shadow model '%s' version %d: cannot compare outputs: %s",
                           item.model, item.version, exc)
            return ERROR
        return AGREE if agree else DISAGREE
