"""`make profile`: where a gateway's CPU goes with every feature on, against one version at 100%.

Starts one gateway per configuration (one version at 100%, and by default the sticky 90/10
split with a flag, the drift monitor and a 10% shadow: rows of `make bench` table 9), drives
each with wrk for a while, and samples it meanwhile with py-spy (from PyPI; it reads the process
from outside, so the gateway runs unchanged; only the thread holding the GIL is sampled, so
threads waiting for it do not pass for work). Prints, per configuration, the functions that hold
the most samples by their own time and by their total time, and the difference between the two
configurations by total time: what the features add, by function.

    python -m loadtests.profile [--duration 10] [--connections 8] [--top 25]

Raw samples (py-spy's collapsed stacks) are kept beside the printout under `--out`, one file per
configuration, for a flame graph (e.g. `py-spy`'s own SVG or speedscope) when wanted.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

from loadtests.harness import MODEL, ROOT, Table, make_loads, start_gateway, write_gateway_config
from loadtests.tables.features import STICKY, Step, steps


def collapsed(path: Path) -> tuple[Counter[str], Counter[str], int]:
    """Own and total samples per function from py-spy's collapsed stacks; the sample count."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        samples += count
        frames = [_short(frame) for frame in stack.split(";")]
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    return own, total, samples


def _short(frame: str) -> str:
    """`function (path/to/module.py:line)` as `function (module.py)`, lines merged."""
    name, _, where = frame.partition(" (")
    file = where.rstrip(")").rsplit(":", 1)[0]
    marker = "/site-packages/"
    file = file.split(marker, 1)[1] if marker in file else Path(file).name
    return f"{name} ({file})"


def profile(step: Step, args: argparse.Namespace, work: Path, repository: Path,
            index: int) -> Path:
    import numpy as np

    from loadtests.drivers import run_wrk

    config = write_gateway_config(work / f"profile-{index}", repository,
                                  {"models": {MODEL: step.policy}},
                                  drift={"enabled": step.drift})
    server = start_gateway(f"gateway-p{index}", config, work, step.env)
    rng = np.random.default_rng(0)
    load = make_loads(rng.uniform(0, 30, (1, 30)).astype(np.float32),
                      rng.uniform(0, 30, (32, 30)).astype(np.float32))[0]
    if step.sticky:
        from dataclasses import replace

        load = replace(load, fresh_key=STICKY)
    out = args.out / f"profile-{index}.txt"
    try:
        driver = threading.Thread(target=run_wrk, args=(
            server, f"/v2/models/{MODEL}/infer", load, args.connections,
            args.duration + 2, work))
        driver.start()
        subprocess.run(["py-spy", "record", "--pid", str(server.process.pid), "--format",
                        "raw", "--output", str(out), "--duration", str(int(args.duration)),
                        "--rate", "1000", "--nonblocking", "--gil"],
                       check=True, capture_output=True, timeout=args.duration + 60)
        driver.join()
    finally:
        server.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds sampled")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--top", type=int, default=25, help="functions per table")
    parser.add_argument("--step", type=int, default=5,
                        help="the row of table 9 to profile against its first row (default: "
                             "the 10%% shadow row: every release feature on)")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()),
                        help="folder for the raw collapsed stacks")
    args = parser.parse_args(argv)
    if not shutil.which("py-spy") or not shutil.which("wrk"):
        print("needs py-spy (pip) and wrk (apt-get install wrk)", file=sys.stderr)
        return 2
    all_steps = steps()
    chosen = [all_steps[0], all_steps[args.step]]
    with tempfile.TemporaryDirectory(prefix="gateway-profile-") as tmp:
        work = Path(tmp)
        repository = work / "models"
        shutil.copytree(ROOT / "models", repository, ignore=shutil.ignore_patterns("*.py"))
        for twin in (4, 5):
            shutil.copytree(repository / MODEL / "2", repository / MODEL / str(twin))
        measured = [collapsed(profile(step, args, work, repository, i))
                    for i, step in enumerate(chosen)]
    for step, (own, total, samples) in zip(chosen, measured, strict=True):
        for title, counter in (("own", own), ("total", total)):
            Table(f"{step.label}: {title} time, share of {samples:,} samples",
                  ["function", "share"],
                  [[name, f"{count / samples:.1%}"]
                   for name, count in counter.most_common(args.top)]).print()
    (_, base, base_n), (_, full, full_n) = measured
    gained = Counter({name: full[name] / full_n - base.get(name, 0) / base_n for name in full})
    Table(f"what every feature adds, by total time (share of samples, '{chosen[1].label}' "
          f"minus '{chosen[0].label}')", ["function", "added share"],
          [[name, f"{share:+.1%}"] for name, share in gained.most_common(args.top)]).print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
