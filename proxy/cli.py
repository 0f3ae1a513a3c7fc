"""The ``cachegate`` command: serve, migrate, sim-backend (and more as parts land)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from cache import CacheError
from classifier import ClassifierError
from proxy.cli_router import add_commands as add_router_commands
from proxy.errors import SettingsError
from proxy.settings import Settings, load_settings
from router import RouterError


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(Path(args.config) if args.config else None)


def cmd_serve(args: argparse.Namespace) -> int:
    from proxy.app import create_app
    from proxy.lifecycle import serve  # the server is only needed by this command

    settings = _settings(args)
    host = args.host or settings.server.host
    port = args.port or settings.server.port
    if args.host or args.port:
        settings = settings.model_copy(
            update={"server": settings.server.model_copy(update={"host": host, "port": port})}
        )
    return serve(
        create_app(settings),
        host=host,
        port=port,
        log_level=args.log_level,
        grace_s=args.grace_s,
        drain_s=args.drain_s,
        keep_alive_s=settings.server.keep_alive_s,
    )


def cmd_migrate(args: argparse.Namespace) -> int:
    from cache.migrate import migrate

    settings = _settings(args)
    migrate(settings.storage.url)
    print(f"database at {settings.storage.url} is at the latest schema")
    return 0


def cmd_log_export(args: argparse.Namespace) -> int:
    """Rated request-log rows as JSONL for ``router.read_records`` (router training)."""
    import asyncio

    from proxy.request_log import training_export, training_jsonl

    rows = asyncio.run(training_export(_settings(args), args.tenant))
    Path(args.out).write_text(training_jsonl(rows), encoding="utf-8")
    print(f"wrote {len(rows)} training records to {args.out}")
    return 0


def cmd_sim_backend(args: argparse.Namespace) -> int:
    from backends.sim import Faults, run_sim

    faults = Faults(
        error_rate=args.error_rate,
        throttle_rate=args.throttle_rate,
        disconnect_after=args.disconnect_after,
        hang=args.hang,
        latency_scale=args.latency_scale,
        max_concurrency=args.max_concurrency,
        seed=args.seed,
    )
    print(f"simulated {args.profile} backend on http://{args.host}:{args.port}/v1", flush=True)
    run_sim(args.profile, args.host, args.port, faults)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cachegate", description=__doc__)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the proxy")
    serve.add_argument("--config", help="YAML config (default: $CACHEGATE_CONFIG)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--grace-s", type=float, default=30.0, help="graceful shutdown period")
    serve.add_argument(
        "--drain-s", type=float, default=0.0, help="not ready for this long before stopping"
    )
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="bring the database schema up to date")
    migrate.add_argument("--config")
    migrate.set_defaults(func=cmd_migrate)

    export = sub.add_parser(
        "export-request-log", help="rated request-log rows as router training JSONL"
    )
    export.add_argument("--config")
    export.add_argument("--out", required=True, help="JSONL file to write")
    export.add_argument("--tenant", help="only this tenant's rows")
    export.set_defaults(func=cmd_log_export)

    sim = sub.add_parser("sim-backend", help="run a simulated OpenAI-compatible backend")
    sim.add_argument("--profile", choices=["small", "large"], default="small")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=9001)
    sim.add_argument("--error-rate", type=float, default=0.0)
    sim.add_argument("--throttle-rate", type=float, default=0.0)
    sim.add_argument("--disconnect-after", type=int)
    sim.add_argument("--hang", action="store_true")
    sim.add_argument("--latency-scale", type=float, default=1.0)
    sim.add_argument("--max-concurrency", type=int)
    sim.add_argument("--seed", type=int, default=0)
    sim.set_defaults(func=cmd_sim_backend)
    add_router_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        code: int = args.func(args)
    except (SettingsError, RouterError, CacheError, ClassifierError) as exc:
        print(f"cachegate: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main"]
