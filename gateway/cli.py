"""`modelgate`: a thin shell over `gateway.server.run` and the bench. Only this module prints
or exits."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from gateway.config import ConfigError, ServerConfig, load_server_config
from gateway.governance.records import JournalError

DEFAULTS = ServerConfig()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelgate", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve",
        help="serve a model repository over V2 HTTP and gRPC",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    serve.add_argument("--config", type=Path, help="TOML config file (every key: see README)")
    serve.add_argument("--repository", help="model repository folder (server.repository)")
    serve.add_argument("--host", help=f"address to listen on (default {DEFAULTS.host})")
    serve.add_argument(
        "--http-port",
        type=int,
        help=f"HTTP port, 0 for any free one (default {DEFAULTS.http_port})",
    )
    serve.add_argument(
        "--grpc-port",
        type=int,
        help=f"gRPC port, 0 for any free one (default {DEFAULTS.grpc_port})",
    )
    serve.add_argument("--log-level", help=f"logging level (default {DEFAULTS.log_level})")
    serve.add_argument(
        "--access-log", action="store_const", const=True, help="log one JSON line per request"
    )
    serve.add_argument(
        "--journal", help=f"journal folder (journal.path, default {DEFAULTS.journal.path})"
    )
    serve.add_argument(
        "--accept-damage",
        action="store_const",
        const=True,
        help="start even though the journal is damaged (journal.accept_damage)",
    )

    commands.add_parser(
        "bench",
        help="load generator and peer comparison (see `modelgate bench --help`)",
        add_help=False,
    )
    return parser


def _given(**values: object) -> dict[str, object] | None:
    """The options that were given, as a nested config table (None when none was)."""
    given = {key: value for key, value in values.items() if value is not None}
    return given or None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        from gateway.bench.__main__ import main as bench_main

        return bench_main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        config = load_server_config(
            args.config,
            repository=args.repository,
            host=args.host,
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            log_level=args.log_level,
            access_log=args.access_log,
            journal=_given(path=args.journal, accept_damage=args.accept_damage),
        )
    except ConfigError as error:
        print(f"modelgate: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from gateway.server import run

    try:
        run(config)
    except ConfigError as error:
        print(f"modelgate: {error}", file=sys.stderr)
        return 2
    except JournalError as error:
        print(f"modelgate: journal: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"modelgate: {error}", file=sys.stderr)
        return 1
    return 0
