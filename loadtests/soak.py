"""`make soak`: a bounded soak of a real gateway under the locust mix, with a canary, a shadow and
the drift monitor on, while the routing policy is edited every few seconds.

Starts the gateway on the shipped models with a policy of its own (in a scratch folder), runs
locust headless against it (loadtests/locustfile.py: routed, pinned, binary, and the intended
400/404 cases), and walks the canary through its steps and back, changing the shadow's percent
as it goes. Prints the request count, the error count, p50/p99 and the gateway's RSS after
warm-up and at the end. Exits non-zero on any unexpected answer, a rejected edit, a traceback in
the gateway's log, or RSS growing by more than 10%.

    python -m loadtests.soak --minutes 10      # make soak
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from loadtests.harness import PAGE_BYTES, ROOT, free_port

MODEL = "breast-cancer"
STEPS = [(95, 5, 100), (75, 25, 50), (50, 50, 25), (0, 100, 10), (50, 50, 25)]
"""(version 1 weight, version 2 weight, version 3 shadow percent), cycled."""


def policy(v1: int, v2: int, shadow: int) -> dict[str, object]:
    return {"models": {MODEL: {"sticky_key": "x-user-id",
                               "traffic": [{"version": 1, "weight": v1},
                                           {"version": 2, "weight": v2}],
                               "shadow": [{"version": 3, "percent": shadow}]}}}


def rss_mib(pid: int) -> float:
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * PAGE_BYTES / 2**20


def save(path: Path, doc: object) -> None:
    tmp = path.with_name(".routing.yaml.tmp")
    tmp.write_text(yaml.safe_dump(doc))
    os.replace(tmp, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--edit-every", type=float, default=5.0, help="seconds between edits")
    args = parser.parse_args()
    seconds = max(5, int(args.minutes * 60))
    with tempfile.TemporaryDirectory(prefix="gateway-soak-") as tmp:
        work = Path(tmp)
        routing = work / "routing.yaml"
        save(routing, policy(*STEPS[0]))
        (work / "gateway.yaml").write_text(yaml.safe_dump({
            "model_repository": str(ROOT / "models"), "routing": "routing.yaml",
            "execution_provider": "cpu", "drift": {"enabled": True},
            "server": {"access_log": False}}))
        port = free_port()
        log_path = work / "gateway.log"
        with log_path.open("wb") as log:
            gateway = subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve", "--config", str(work / "gateway.yaml"),
                 "--host", "127.0.0.1", "--port", str(port), "--grpc-port", "0"],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "GATEWAY_ADMIN_TOKEN": ""})
            try:
                return soak(args, seconds, port, gateway, routing, work, log_path)
            finally:
                gateway.terminate()
                gateway.wait(timeout=60)


def soak(args: argparse.Namespace, seconds: int, port: int, gateway: subprocess.Popen[bytes],
         routing: Path, work: Path, log_path: Path) -> int:
    import urllib.request

    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1)
            break
        except OSError:
            if gateway.poll() is not None or time.monotonic() > deadline:
                print(log_path.read_text()[-3000:], file=sys.stderr)
                return 1
            time.sleep(0.2)
    stop = threading.Event()
    edits: list[int] = []
    rss: dict[str, float] = {}

    def edit() -> None:
        step = 0
        warmed = time.monotonic() + min(10.0, seconds / 4)
        while not stop.wait(args.edit_every):
            if "after warm-up" not in rss and time.monotonic() >= warmed:
                rss["after warm-up"] = rss_mib(gateway.pid)
            step = (step + 1) % len(STEPS)
            save(routing, policy(*STEPS[step]))
            edits.append(step)

    editor = threading.Thread(target=edit, daemon=True)
    editor.start()
    (work / "locust").mkdir()
    csv_prefix = work / "locust" / "run"  # not beside routing.yaml: its folder is watched
    started = time.monotonic()
    locust = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py"),
         "--headless", "--host", f"http://127.0.0.1:{port}", "--users", str(args.users),
         "--spawn-rate", str(args.users), "--run-time", f"{seconds}s", "--only-summary",
         "--csv", str(csv_prefix), "--exit-code-on-error", "1", "--stop-timeout", "10"],
        cwd=ROOT, capture_output=True, text=True, timeout=seconds + 120)
    stop.set()
    editor.join()
    time.sleep(2)  # the promised 2 s for the last edit to apply (docs/routing.md)
    rss["end"] = rss_mib(gateway.pid)
    rss.setdefault("after warm-up", rss["end"])
    with (work / "locust" / "run_stats.csv").open() as stats:
        total = next(row for row in csv.DictReader(stats) if row["Name"] == "Aggregated")
    log = log_path.read_text(errors="replace")
    rejected = log.count("routing policy rejected")
    applied = log.count("routing policy applied")
    growth = rss["end"] / rss["after warm-up"] - 1
    print(f"soak: {time.monotonic() - started:.0f} s, {args.users} users, "
          f"{len(edits)} routing edits ({applied} applied, {rejected} rejected)")
    print(f"requests {int(total['Request Count']):,}, unexpected answers "
          f"{int(total['Failure Count']):,}, p50 {total['50%']} ms, p99 {total['99%']} ms, "
          f"{float(total['Requests/s']):,.0f} req/s")
    print(f"gateway RSS: {rss['after warm-up']:.1f} MiB after warm-up, {rss['end']:.1f} MiB at "
          f"the end ({growth:+.1%})")
    problems = []
    if locust.returncode != 0 or int(total["Failure Count"]):
        failures_file = work / "locust" / "run_failures.csv"
        failures = failures_file.read_text() if failures_file.exists() else locust.stderr[-2000:]
        problems.append(f"unexpected answers:\n{failures}")
    if rejected or applied != len(edits):
        problems.append(f"{len(edits)} edits, {applied} applied, {rejected} rejected")
    if "Traceback" in log:
        problems.append("tracebacks in the gateway's log:\n" + log[log.index("Traceback"):][:2000])
    if growth > 0.10:
        problems.append(f"RSS grew by {growth:.1%} (more than 10%)")
    if not int(total["Request Count"]):
        problems.append("no requests were made")
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    if problems:
        print(log[-3000:], file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
