"""Load drivers: wrk at full load (locust when wrk is missing), and paced requests below
saturation from this process."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loadtests.harness import Load, Server


@dataclass
class Result:
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_request: float


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _latency_ms(text: str, percentile: str) -> float:
    match = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    return float(match.group(1)) * _UNITS[match.group(2)] if match else float("nan")


def run_wrk(server: Server, path: str, load: Load, connections: int, duration_s: float,
            work_dir: Path) -> Result:
    body_file = work_dir / "body.bin"
    body_file.write_bytes(load.body)
    script = work_dir / "post.lua"
    lines = [f'local f = io.open("{body_file}", "rb")', "wrk.body = f:read('*a')", "f:close()",
             'wrk.method = "POST"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in load.headers.items()]
    if load.fresh_key is not None:
        lines += ["math.randomseed(os.time())", "request = function()",
                  f'  wrk.headers["{load.fresh_key}"] = "user-" .. math.random(1, 1000000000)',
                  "  return wrk.format()", "end"]
    script.write_text("\n".join(lines) + "\n")
    cpu_before = server.cpu_s()
    completed = subprocess.run(
        ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{max(1, round(duration_s))}s",
         "--latency", "--timeout", "10s", "-s", str(script),
         f"http://127.0.0.1:{server.port}{path}"],
        capture_output=True, text=True, timeout=duration_s + 60, check=True)
    cpu = server.cpu_s() - cpu_before
    text = completed.stdout
    requests = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    errors_match = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", text)
    errors = int(errors_match.group(1)) if errors_match else 0
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    return Result(requests, errors, rps, _latency_ms(text, "50"), _latency_ms(text, "99"),
                  cpu / max(requests, 1) * 1e6)


_LOCUSTFILE = """
from pathlib import Path
from locust import FastHttpUser, task

import random

BODY = Path({body!r}).read_bytes()
HEADERS = {headers!r}
FRESH_KEY = {fresh_key!r}


class Caller(FastHttpUser):
    @task
    def infer(self):
        headers = HEADERS
        if FRESH_KEY:
            headers = {{**HEADERS, FRESH_KEY: f"user-{{random.randrange(10**9)}}"}}
        self.client.post({path!r}, data=BODY, headers=headers, name="infer")
"""


def run_locust(server: Server, path: str, load: Load, connections: int, duration_s: float,
               work_dir: Path) -> Result:
    """The fallback driver when wrk is missing: locust's FastHttpUser, headless and bounded."""
    body_file = work_dir / "body.bin"
    body_file.write_bytes(load.body)
    locustfile = work_dir / "bench_locustfile.py"
    locustfile.write_text(_LOCUSTFILE.format(body=str(body_file), headers=load.headers,
                                             path=path, fresh_key=load.fresh_key))
    csv_prefix = work_dir / "locust"
    cpu_before = server.cpu_s()
    subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
         "--host", f"http://127.0.0.1:{server.port}", "--users", str(connections),
         "--spawn-rate", str(connections), "--run-time", f"{max(1, round(duration_s))}s",
         "--only-summary", "--csv", str(csv_prefix)],
        capture_output=True, text=True, timeout=duration_s + 60, check=False)
    cpu = server.cpu_s() - cpu_before
    import csv

    with open(f"{csv_prefix}_stats.csv", newline="") as stats_file:
        total = next(row for row in csv.DictReader(stats_file) if row["Name"] == "Aggregated")
    requests = int(total["Request Count"])
    return Result(requests, int(total["Failure Count"]), float(total["Requests/s"]),
                  float(total["50%"]), float(total["99%"]), cpu / max(requests, 1) * 1e6)


def paced_latency_ms(server: Server, path: str, load: Load, connections: int,
                     rate_per_s: float, duration_s: float) -> tuple[float, float, int]:
    """p50 and p99 latency (ms) and errors at a fixed request rate, well below saturation."""
    percentiles, errors = paced_percentiles_ms(server, path, load, connections, rate_per_s,
                                               duration_s, (50, 99))
    return percentiles[0], percentiles[1], errors


def paced_percentiles_ms(server: Server, path: str, load: Load, connections: int,
                         rate_per_s: float, duration_s: float,
                         percentiles: tuple[float, ...]) -> tuple[list[float], int]:
    """Latency percentiles (ms) and errors at a fixed request rate, well below saturation.

    wrk keeps every connection busy, so at its load the latency is mostly time spent queued;
    paced requests show what the server itself adds to a call. Raw HTTP/1.1 over keep-alive
    connections from this process, so the client's own time is included (a conservative bias).
    """
    import asyncio

    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(load.body)}"]
    head += [f"{k}: {v}" for k, v in load.headers.items()]
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + load.body
    latencies: list[float] = []
    errors = 0

    async def connection(offset_s: float, end: float) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        interval = connections / rate_per_s
        next_send = time.perf_counter() + offset_s
        while next_send < end:
            await asyncio.sleep(max(0.0, next_send - time.perf_counter()))
            start = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            errors += not status_line.startswith(b"HTTP/1.1 200")
            next_send = max(next_send + interval, time.perf_counter())
        writer.close()

    async def run() -> None:
        end = time.perf_counter() + duration_s
        await asyncio.gather(*(connection(i / rate_per_s, end) for i in range(connections)))

    asyncio.run(run())
    samples = np.array(latencies) * 1e3
    return [float(np.percentile(samples, p)) for p in percentiles], errors
