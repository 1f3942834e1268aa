"""`gateway rollout`: its arguments, and the wiring of the controller to files, metrics and its
own /metrics (the controller itself is gateway.rollout.controller).

It exits only on bad arguments (2, with the reason); everything it meets once running is a hold.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from gateway.rollout.controller import Controller
from gateway.rollout.evidence import Scrape, parse_metrics, query_prometheus
from gateway.rollout.kubernetes import KubernetesApi, namespaced, replica_metrics_urls
from gateway.rollout.store import ConfigMapStore, FileStore, PolicyStore
from gateway.settings import Settings


def add_rollout_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--metrics", nargs="+", metavar="URL",
                        help="every replica's /metrics URL, gains taken per replica (default: "
                             "the gateway of --config on this machine, "
                             "http://127.0.0.1:<server.port>/metrics)")
    source.add_argument("--prometheus", metavar="URL",
                        help="a Prometheus server scraping every replica, asked for each "
                             "replica's series")
    source.add_argument("--kubernetes-service", metavar="NAMESPACE/NAME",
                        help="on Kubernetes: read /metrics of every ready pod behind this "
                             "Service (its EndpointSlices, port 'http'), found anew each check")
    parser.add_argument("--check-s", type=float, default=10.0,
                        help="seconds between evaluations (default 10)")
    parser.add_argument("--once", action="store_true",
                        help="evaluate once on the counters' totals and exit")
    parser.add_argument("--dry-run", action="store_true",
                        help="decide and log, write nothing (with --once: a table)")
    parser.add_argument("--log", help="append the JSON decision lines to this file")
    parser.add_argument("--configmap", metavar="NAMESPACE/NAME",
                        help="read and patch the routing policy in this ConfigMap through the "
                             "Kubernetes API (the pod's service account)")
    parser.add_argument("--port", type=int,
                        help="serve the controller's own /metrics on this port")


def fetch_metrics(urls: list[str], timeout_s: float = 5.0,
                  limit_bytes: int = 64 * 2**20) -> Scrape:
    """Every replica's /metrics; OSError when one cannot be read within `timeout_s` in all (a
    replica that trickles its answer does not hold the controller, nor its SIGTERM), or is
    larger than `limit_bytes` (a partial sum would undercount the evidence, so the round
    holds)."""
    texts = {}
    for url in urls:
        deadline = time.monotonic() + timeout_s
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:
            chunks: list[bytes] = []
            size = 0
            while chunk := reply.read1(65536):
                chunks.append(chunk)
                size += len(chunk)
                if time.monotonic() > deadline:
                    raise OSError(f"{url}: not read whole within {timeout_s:g} s")
                if size > limit_bytes:
                    raise OSError(f"{url}: more than {limit_bytes} bytes")
        texts[url] = b"".join(chunks).decode()
    return parse_metrics(texts)


def run_rollout(args: argparse.Namespace, settings: Settings) -> int:
    if args.check_s <= 0:
        return _refuse(f"--check-s {args.check_s:g}: expected a positive number of seconds")
    store: PolicyStore = FileStore(settings.routing)
    if args.configmap:
        try:
            store = ConfigMapStore.in_cluster(args.configmap, settings.routing.name)
        except (ValueError, OSError) as exc:
            return _refuse(str(exc))
    metrics = None
    if args.port is not None:
        from prometheus_client import start_http_server

        from gateway.rollout.metrics import RolloutMetrics

        metrics = RolloutMetrics()
        try:
            start_http_server(args.port, addr="0.0.0.0", registry=metrics.registry)
        except OSError as exc:
            return _refuse(f"--port {args.port}: {exc}")
    urls = args.metrics or [f"http://127.0.0.1:{settings.server.port}/metrics"]
    service = None
    if args.kubernetes_service:
        try:
            service = (KubernetesApi.in_cluster(),
                       *namespaced(args.kubernetes_service, "--kubernetes-service"))
        except (ValueError, OSError) as exc:
            return _refuse(str(exc))

    def read() -> Scrape:
        if args.prometheus:
            return query_prometheus(args.prometheus)
        if service is not None:
            found = replica_metrics_urls(*service)
            if not found:
                raise OSError(f"service {args.kubernetes_service} has no ready pod")
            return fetch_metrics(found)
        return fetch_metrics(urls)

    table = args.once and args.dry_run
    try:
        log = Path(args.log).open("a") if args.log else sys.stdout  # noqa: SIM115 - the loop's
    except OSError as exc:
        return _refuse(f"--log {args.log}: {exc}")
    controller = Controller(settings, read, once=args.once, dry_run=args.dry_run,
                            out=None if table else log, metrics=metrics, store=store)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        controller.run(args.check_s, stop.is_set, stop.wait)
    except KeyboardInterrupt:
        return 0
    if args.once and not controller.decisions:
        print(f"gateway rollout: no model in {settings.routing} has a rollout block; nothing "
              "to do (see docs/routing.md, 'The rollout block')", file=sys.stderr)
    if table:
        print_comparison(controller.decisions)
    return 0


def _refuse(reason: str) -> int:
    print(f"gateway rollout: {reason}", file=sys.stderr)
    return 2


def _number(value: Any, form: str = ".4g") -> str:
    return "" if value is None else format(value, form)


def print_comparison(decisions: list[dict[str, Any]]) -> None:
    """`--once --dry-run`: for each rollout, the two versions side by side and every gate's row
    with its numbers, whatever the decision."""
    for line in decisions:
        if line.get("model") is None:
            print(f"hold: {line['reason']}")
            continue
        print(f"{line['model']}: baseline {line['baseline']} against canary {line['canary']}, "
              f"step {line['step']}, canary weight {line['weight']}: {line['decision']} "
              f"({line['reason']})")
        rows = [["version", "requests", "5xx share", "p99 ms", "labelled", "accuracy"]]
        for version in line.get("versions", []):
            p99 = version["p99_s"]
            rows.append([str(version["version"]), str(version["requests"]),
                         _number(version["error_share"]),
                         "" if p99 is None else f"{p99 * 1000:.3g}", str(version["labelled"]),
                         _number(version["accuracy"])])
        _print_rows(rows)
        rows = [["gate", "n baseline", "n canary", "estimate", "interval", "threshold",
                 "verdict"]]
        for gate in line["gates"]:
            interval = ("" if gate["low"] is None or gate["high"] is None
                        else f"[{gate['low']:.4g}, {gate['high']:.4g}]")
            rows.append([gate["gate"], str(gate["n_baseline"]), str(gate["n_canary"]),
                         _number(gate["estimate"]), interval, f"{gate['threshold']:g}",
                         gate["verdict"]])
        if len(rows) == 1:
            rows.append(["(no gate set)", "", "", "", "", "", ""])
        _print_rows(rows)


def _print_rows(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
