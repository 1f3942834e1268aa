"""Command line: `gateway serve` starts the server, `gateway check` validates config and models,
`gateway rollout` moves canaries on evidence (SPEC 9), `gateway replay` tries a version on
captured traffic (SPEC 10)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from gateway.errors import ConfigError
from gateway.settings import Settings, load_settings

logger = logging.getLogger("gateway")


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(Path(args.config) if args.config else None)


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import create_app
    from gateway.http.server import bounded_protocol

    settings = _settings(args)
    host = args.host or settings.server.host
    port = args.port if args.port is not None else settings.server.port
    app = create_app(settings)
    logger.info("serving %s on http://%s:%d (execution_provider: %s)",
                settings.model_repository, host, port, settings.execution_provider)
    uvicorn.run(app, host=host, port=port, loop="uvloop", http=bounded_protocol(settings.limits),
                log_level="info", access_log=False,  # ours: gateway.http.middleware
                # The grace in seconds as given: int() made 0.5 into 0, which uvicorn reads
                # as "wait forever".
                timeout_graceful_shutdown=settings.server.shutdown_grace_s)  # type: ignore[arg-type]
    return 0


def check(args: argparse.Namespace) -> int:
    """Validate config, policy and every model version the policy needs; one line per problem."""
    from gateway.app import Gateway

    settings = _settings(args)
    gateway = Gateway(settings)
    gateway.load()
    problems = gateway.registry.problems()
    if not gateway.registry.repository:
        problems.append(f"{settings.model_repository}: no models in the repository")
    for note in gateway.skipped:  # named, not counted: a stray folder stops nothing serving
        print(f"skipped: {note}")
    for problem in problems:
        print(problem)
    if problems:
        return 1
    served = ", ".join(f"{d.entry.model}/{d.entry.version} ({d.session.provider})"
                       for d in gateway.registry.all() if d.session is not None)
    print(f"ok: {settings.source}, {settings.routing.name}; serving {served}")
    return 0


def rollout(args: argparse.Namespace) -> int:
    """Evaluate every unfinished rollout block now and then (or once), and write decisions."""
    from gateway.rollout.controller import Controller, fetch_metrics
    from gateway.rollout.evidence import Reading, read_metrics, read_prometheus
    from gateway.rollout.store import ConfigMapStore, FileStore, PolicyStore
    from gateway.routing.policy import parse_policy
    from gateway.runtime.repository import scan_repository

    settings = _settings(args)
    store: PolicyStore = FileStore(settings.routing)
    if args.configmap:
        try:
            store = ConfigMapStore.in_cluster(args.configmap, settings.routing.name)
        except (ValueError, OSError) as exc:
            print(f"gateway rollout: {exc}", file=sys.stderr)
            return 1
    policy = parse_policy(store.read()[0], scan_repository(settings.model_repository))
    if not any(entry.rollout for entry in policy.models.values()):
        print(f"gateway rollout: {settings.routing} has no model with a rollout block; add one "
              "(see SPEC 9 and the README) and start again", file=sys.stderr)
        return 1
    log = open(args.log, "a") if args.log else sys.stdout  # noqa: SIM115 - lives as the loop
    table = args.once and args.dry_run
    metrics = None
    if args.port is not None:
        from prometheus_client import start_http_server

        from gateway.rollout.metrics import RolloutMetrics

        metrics = RolloutMetrics()
        start_http_server(args.port, addr="0.0.0.0", registry=metrics.registry)
    window = settings.drift.window_rows

    def read() -> Reading:
        if args.prometheus:
            return read_prometheus(args.prometheus, window)
        return read_metrics(fetch_metrics(args.metrics), window)

    controller = Controller(settings, read, once=args.once,
                            dry_run=args.dry_run, out=None if table else log, metrics=metrics,
                            store=store)
    try:
        controller.run(args.check_s)
    except KeyboardInterrupt:
        return 0
    if table:
        print_comparison(controller.decisions)
    return 0


def replay(args: argparse.Namespace) -> int:
    from gateway.replay.command import run_replay

    return run_replay(Path(args.capture_dir), args.model, args.version, _settings(args),
                      args.against, args.json, args.min_agreement)


def print_comparison(decisions: list[dict[str, object]]) -> None:
    """`--once --dry-run`: the A/B comparison of each rollout, gate by gate, for a person."""
    for line in decisions:
        print(f"{line['model']}: baseline {line['baseline']} against canary {line['canary']}, "
              f"step {line['step']}, canary weight {line['weight']}: {line['decision']} "
              f"({line['reason']})")
        rows = [["gate", "n baseline", "n canary", "estimate", "interval", "threshold",
                 "verdict"]]
        for gate in line["gates"]:  # type: ignore[attr-defined]
            interval = ("" if gate["low"] is None
                        else f"[{gate['low']:.4g}, {gate['high']:.4g}]")
            estimate = "" if gate["estimate"] is None else f"{gate['estimate']:.4g}"
            rows.append([gate["gate"], str(gate["n_baseline"]), str(gate["n_canary"]),
                         estimate, interval, f"{gate['threshold']:g}", gate["verdict"]])
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def _replay_arguments(replay_parser: argparse.ArgumentParser) -> None:
    replay_parser.add_argument("capture_dir", metavar="CAPTURE_DIR",
                               help="the capture folder (capture.path)")
    replay_parser.add_argument("--model", required=True, help="the model whose requests to send")
    replay_parser.add_argument("--version", required=True, type=int,
                               help="the version to send them to")
    replay_parser.add_argument("--against", metavar="URL",
                               help="a running gateway (or any V2 server) to send them to, "
                                    "pinned to --version; default: in-process")
    replay_parser.add_argument("--json", action="store_true", help="print the report as JSON")
    replay_parser.add_argument("--min-agreement", type=float, metavar="X",
                               help="exit 1 when agreement is below X (0 to 1)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="start the server")
    check_parser = commands.add_parser("check", help="validate config, routing and models")
    rollout_parser = commands.add_parser(
        "rollout", help="promote, hold or roll back canaries on evidence (SPEC 9)")
    replay_parser = commands.add_parser(
        "replay", help="send captured requests to a version and compare (SPEC 10)")
    for sub in (serve_parser, check_parser, rollout_parser, replay_parser):
        sub.add_argument("--config", help="gateway.yaml (default: $GATEWAY_CONFIG, else "
                                          "config/gateway.yaml)")
    serve_parser.add_argument("--host", help="address to listen on (default: server.host)")
    serve_parser.add_argument("--port", type=int, help="port (default: server.port, 8000)")
    source = rollout_parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--metrics", nargs="+", metavar="URL",
                        help="every replica's /metrics URL; their counters add up")
    source.add_argument("--prometheus", metavar="URL",
                        help="a Prometheus server scraping every replica: the same sums")
    rollout_parser.add_argument("--check-s", type=float, default=10.0,
                                help="seconds between evaluations (default 10)")
    rollout_parser.add_argument("--once", action="store_true",
                                help="evaluate once on the counters' totals and exit")
    rollout_parser.add_argument("--dry-run", action="store_true",
                                help="decide and log, write nothing (with --once: a table)")
    rollout_parser.add_argument("--log", help="append the JSON decision lines to this file")
    rollout_parser.add_argument("--configmap", metavar="NAMESPACE/NAME",
                                help="read and patch the routing policy in this ConfigMap "
                                     "through the Kubernetes API (the pod's service account)")
    rollout_parser.add_argument("--port", type=int,
                                help="serve the controller's own /metrics on this port")
    _replay_arguments(replay_parser)
    from gateway import demo
    demo.add_arguments(commands.add_parser(
        "demo", help="held-out traffic and its true labels, to watch a rollout move"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # watchfiles logs every change of the routing folder at INFO; the reload says what it did.
    logging.getLogger("watchfiles.main").setLevel(logging.WARNING)
    commands_table = {"serve": serve, "check": check, "rollout": rollout, "replay": replay,
                      "demo": demo.demo}
    try:
        return commands_table[args.command](args)
    except ConfigError as exc:
        print(f"gateway {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
