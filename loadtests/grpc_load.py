"""The gRPC load generator of `make bench` table 13: `concurrency` calls kept in flight for
`duration` seconds with grpc.aio, each sending one ModelInferRequest made beforehand (serialized
once, so the client spends its time on the calls), and one JSON line of what it saw.

Run as its own process (`python -m loadtests.grpc_load ...`) so that the server's CPU time per
request, read from /proc, is the server's alone, as wrk's is for the HTTP rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import grpc
import numpy as np

METHOD = "/inference.GRPCInferenceService/ModelInfer"
CALLS_PER_CHANNEL = 16
"""Concurrent calls that share one HTTP/2 connection (more channels past it, as clients do)."""


def infer_request(model: str, rows: np.ndarray, raw: bool) -> bytes:
    """A serialized ModelInferRequest of FP32 rows: typed `contents` or `raw_input_contents`."""
    from tritonclient.grpc import service_pb2

    message = service_pb2.ModelInferRequest(model_name=model)
    tensor = message.inputs.add(name="input", datatype="FP32", shape=list(rows.shape))
    if raw:
        message.raw_input_contents.append(np.ascontiguousarray(rows, "<f4").tobytes())
    else:
        tensor.contents.fp32_contents.extend(rows.ravel().tolist())
    return bytes(message.SerializeToString())


async def drive(target: str, body: bytes, concurrency: int, duration_s: float) -> dict[str, float]:
    channels = [grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(max(1, concurrency // CALLS_PER_CHANNEL))]
    stubs = [channel.unary_unary(METHOD) for channel in channels]
    latencies: list[float] = []
    errors = 0
    calls = 0

    async def caller(i: int, end_s: float, record: bool) -> None:
        nonlocal errors, calls
        call = stubs[i % len(stubs)]
        while (start := time.perf_counter()) < end_s:
            calls += 1
            try:
                await call(body)
            except grpc.aio.AioRpcError:
                errors += 1
                continue
            if record:
                latencies.append(time.perf_counter() - start)

    try:
        warm_end = time.perf_counter() + min(1.0, duration_s / 5)
        await asyncio.gather(*(caller(i, warm_end, False) for i in range(concurrency)))
        errors = 0
        start = time.perf_counter()
        await asyncio.gather(*(caller(i, start + duration_s, True)
                               for i in range(concurrency)))
        elapsed = time.perf_counter() - start
    finally:
        for channel in channels:
            await channel.close()
    ms = np.array(latencies) * 1e3 if latencies else np.array([float("nan")])
    return {"requests": len(latencies), "errors": errors, "rps": len(latencies) / elapsed,
            "calls": calls,  # warm-up included: what the server did in all
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="host:port of the gRPC server")
    parser.add_argument("--body", required=True, type=Path, help="a serialized request")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds")
    args = parser.parse_args()
    result = asyncio.run(drive(args.target, args.body.read_bytes(), args.concurrency,
                               args.duration))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
