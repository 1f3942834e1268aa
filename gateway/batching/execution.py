"""Where a version's batches run: inline on the event loop, or on a thread of the version's own.

Handing a call to a thread and back costs the event loop about 100 µs of CPU on this class of
machine (measured in loadtests/), so a model whose full batch is that short is faster run inline.
`auto` runs inline a full batch measured at up to `INLINE_MAX_S` (200 µs): the longest stall of
the event loop it accepts in exchange for that hop. A slower model runs on its own thread, so a
long inference never stalls the event loop; and an inline version still runs a request larger
than the batch it was timed with on a thread (see the batcher).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

EXECUTIONS = ("auto", "inline", "thread")
INLINE_MAX_S = 200e-6
"""Largest measured full-batch call that `auto` runs inline on the event loop, in seconds."""


def time_call(call: Callable[[], object], repeats: int = 25,
              clock: Callable[[], float] = time.perf_counter) -> float:
    """Median wall time of `call`, in seconds, after one unmeasured call (the warm-up)."""
    call()
    samples = []
    for _ in range(repeats):
        start = clock()
        call()
        samples.append(clock() - start)
    return statistics.median(samples)


def choose_execution(setting: str, batch_call_s: float) -> str:
    """`inline` or `thread`: the setting itself, or for `auto` by the measured batch call time."""
    if setting != "auto":
        return setting
    return "inline" if batch_call_s <= INLINE_MAX_S else "thread"
