"""Command line: `gateway serve` starts the server, `gateway check` validates config and models,
`gateway rollout` moves canaries on evidence (docs/routing.md), `gateway replay` tries a version on
captured traffic (README "Prediction capture and replay")."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from gateway.errors import ConfigError, PortTaken
from gateway.settings import Settings, load_settings, parse_workers

logger = logging.getLogger("gateway")


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(Path(args.config) if args.config else None)


def serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    host = args.host or settings.server.host
    port = args.port if args.port is not None else settings.server.port
    grpc_port = args.grpc_port if args.grpc_port is not None else settings.server.grpc_port
    if not 0 <= grpc_port <= 65535:
        raise ConfigError(f"--grpc-port: {grpc_port} is not a TCP port (0 turns gRPC off)")
    workers = (parse_workers(args.workers, "--workers") if args.workers is not None
               else settings.server.workers)
    if workers > 1:  # a supervisor and its workers (gateway.workers); else one process
        from gateway.workers.supervisor import run_group

        return run_group(settings, host, port, grpc_port, workers)
    import uvicorn

    from gateway.app import create_app
    from gateway.http.server import bounded_protocol

    app = create_app(settings, grpc_host=host, grpc_port=grpc_port)
    logger.info("serving %s on http://%s:%d (execution_provider: %s)",
                settings.model_repository, host, port, settings.execution_provider)
    uvicorn.run(app, host=host, port=port, loop="uvloop", http=bounded_protocol(settings.limits),
                log_level="info", access_log=False,  # ours: gateway.http.middleware
                proxy_headers=False,  # applied inside the app, past the inference lane
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
    """Evaluate every rollout block now and then (or once), and write decisions."""
    from gateway.rollout.command import run_rollout

    return run_rollout(args, _settings(args))


def replay(args: argparse.Namespace) -> int:
    from gateway.replay.command import run_replay

    return run_replay(Path(args.capture_dir), args.model, args.version, _settings(args),
                      args.against, args.json, args.min_agreement)


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
        "rollout", help="promote, hold or roll back canaries on evidence")
    replay_parser = commands.add_parser(
        "replay", help="send captured requests to a version and compare")
    for sub in (serve_parser, check_parser, rollout_parser, replay_parser):
        sub.add_argument("--config", help="gateway.yaml (default: $GATEWAY_CONFIG, else "
                                          "config/gateway.yaml)")
    serve_parser.add_argument("--host", help="address to listen on (default: server.host)")
    serve_parser.add_argument("--port", type=int, help="port (default: server.port, 8000)")
    serve_parser.add_argument("--grpc-port", type=int,
                              help="gRPC port (default: server.grpc_port, 8001; 0: no gRPC)")
    serve_parser.add_argument("--workers", metavar="N",
                              help="worker processes behind the same ports, or auto: one per "
                                   "core this process may use (default: server.workers, 1)")
    from gateway.rollout.command import add_rollout_arguments

    add_rollout_arguments(rollout_parser)
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
    except PortTaken as exc:  # before any model loads; exit 3, as uvicorn's for a taken port
        print(f"gateway {args.command}: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
