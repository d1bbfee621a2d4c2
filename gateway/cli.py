"""`modelgate`: serve models, operate deployments, check and prove the journal, manage API
tokens, benchmark. A thin shell over gateway.server, gateway.admin_cli, gateway.governance and
gateway.bench; only the CLI modules (this one and admin_cli) print or exit."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from gateway import admin_cli
from gateway.config import ConfigError, JournalConfig, ServerConfig, load_server_config
from gateway.control import Control
from gateway.errors import GatewayError
from gateway.governance.checkpoints import CheckpointError, NoteKey
from gateway.governance.identity import TokenStore
from gateway.governance.ledger import (
    ADMIN,
    PREDICTIONS,
    Export,
    Ledger,
    LedgerError,
    StreamCheck,
    export_records,
    iter_records,
    prove,
    prove_consistency,
    public_key,
    record_document,
    time_ns,
    verify_consistency,
    verify_ledger,
    verify_proof,
)
from gateway.governance.merkle import ProofError
from gateway.governance.records import JournalError
from gateway.monitoring import profile_cli

STREAMS = (ADMIN, PREDICTIONS)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# what the offline commands report as a failed check or bad input (exit status 1), not a crash
OFFLINE_FAILURES = (
    GatewayError,
    ConfigError,
    JournalError,
    LedgerError,
    CheckpointError,
    ProofError,
    OSError,
    orjson.JSONDecodeError,
)

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

    _journal_parser(commands)
    _token_parser(commands)
    admin_cli.add_parser(commands)
    profile_cli.add_parser(commands)
    commands.add_parser(
        "bench",
        help="load generator and peer comparison (see `modelgate bench --help`)",
        add_help=False,
    )
    return parser


def _journal_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    journal = commands.add_parser("journal", help="check, read and prove the journal")
    journal.add_argument("--config", type=Path, help="server config file (its [journal] table)")
    journal.add_argument("--journal", help=f"journal folder (default {DEFAULTS.journal.path})")
    journal.add_argument(
        "--key",
        help="trusted verifier key (<name>+<id>+<key>, as the server logs it at start); "
        "default: derived from the journal's own signing key file",
    )
    actions = journal.add_subparsers(dest="action", required=True)
    verify = actions.add_parser("verify", help="recompute chains, trees and checkpoint signatures")
    verify.add_argument(
        "--from-checkpoint",
        action="store_true",
        help="trust each stream's latest signed checkpoint; check only the records after it",
    )
    for name, text in (("show", "print records"), ("export", "write records for archiving")):
        action = actions.add_parser(name, help=text)
        action.add_argument("--stream", choices=STREAMS, default=PREDICTIONS)
        action.add_argument("--since", help="ISO 8601 time (inclusive)")
        action.add_argument("--until", help="ISO 8601 time (exclusive)")
        action.add_argument("--format", choices=("jsonl",), default="jsonl")
    export = actions.choices["export"]
    export.add_argument(
        "--out",
        type=Path,
        help="a new file, or a folder to write <stream>-<first seq>-<last seq>.jsonl in; the "
        "records written are then marked exported, so that retention may delete their segments "
        "once old enough (default: stdout, marking nothing)",
    )
    tail = actions.add_parser("tail", help="print the last records")
    tail.add_argument("--stream", choices=STREAMS, default=PREDICTIONS)
    tail.add_argument("-n", type=_count, default=10, help="how many (default 10)")
    prove = actions.add_parser("prove", help="a prediction record with its inclusion proof")
    prove.add_argument("request_id")
    consistency = actions.add_parser(
        "prove-consistency",
        help="a proof that a later signed checkpoint extends an earlier one",
    )
    consistency.add_argument("--stream", choices=STREAMS, default=PREDICTIONS)
    consistency.add_argument("--old", type=int, help="earlier tree size (default: 2nd latest)")
    consistency.add_argument("--new", type=int, help="later tree size (default: the latest)")
    check = actions.add_parser(
        "verify-proof", help="check a `prove` or `prove-consistency` document offline"
    )
    check.add_argument("file", type=Path, help="the JSON that `prove` printed ('-': stdin)")


def _token_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = commands.add_parser(
        "token",
        help="manage API tokens while the server is stopped (running: POST/GET/DELETE "
        "/admin/tokens); every change is journaled",
    )
    token.add_argument("--config", type=Path, help="server config file ([journal], [auth])")
    token.add_argument("--journal", help=f"journal folder (default {DEFAULTS.journal.path})")
    actions = token.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a token; its secret is shown once")
    create.add_argument("name")
    create.add_argument("--role", required=True, help="viewer|predictor|operator|approver|admin")
    create.add_argument("--scope", action="append", help="a deployment it is limited to")
    actions.add_parser("list", help="tokens without their secrets")
    revoke = actions.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("token_id")


async def _token(args: argparse.Namespace) -> int:
    config = load_server_config(args.config, journal=_given(path=args.journal))
    ledger = await asyncio.to_thread(Ledger.open, config.journal)
    try:
        control = Control(TokenStore(config.tokens_path), ledger)
        actor = f"cli:{getpass.getuser()}"
        if args.action == "create":
            info, secret = await control.create_token(actor, args.name, args.role, args.scope)
            print(f"{info.id}  {info.name}  {info.role.label}  token (shown once): {secret}")
        elif args.action == "revoke":
            info = await control.revoke_token(actor, args.token_id)
            print(f"{info.id}  {info.name}  revoked {info.revoked_at}")
        else:
            for info in control.list_tokens():
                state = f"revoked {info.revoked_at}" if info.revoked_at else "active"
                scopes = ",".join(sorted(info.scopes)) or "*"
                print(f"{info.id}  {info.name:20}  {info.role.label:9}  {scopes:20}  {state}")
    finally:
        await asyncio.to_thread(ledger.close)
    return 0


def _journal(args: argparse.Namespace) -> int:
    """`modelgate journal ...`: exit 0 when what was asked holds, 1 when a check fails."""
    config = load_server_config(args.config, journal=_given(path=args.journal)).journal
    root = Path(config.path)
    key = NoteKey.parse(args.key) if args.key else None
    if args.action == "verify-proof":
        text = sys.stdin.read() if str(args.file) == "-" else args.file.read_text()
        if key is None:
            # the key inside the document proves nothing: whoever forged it chose that key too
            raise ConfigError("pass --key: the verifier key you trust (the server logs it)")
        document = orjson.loads(text)
        if "old_checkpoint" in document:
            old, new = verify_consistency(document, key)
            print(f"ok: {new.origin} at size {new.size} extends size {old.size}")
            return 0
        checkpoint = verify_proof(document, key)
        print(
            f"ok: record {document['leaf_index'] + 1} is in {checkpoint.origin} "
            f"at size {checkpoint.size}, signed by {key.name}"
        )
        return 0
    if not root.is_dir():
        raise ConfigError(f"no journal at {root}")
    key = key or public_key(root, config)
    if args.action == "verify":
        checks = verify_ledger(root, key, STREAMS, from_checkpoint=args.from_checkpoint)
        for stream, found in checks.items():
            print(_verified(stream, found, args.from_checkpoint))
        return 0
    if args.action == "export" and args.out is not None:
        since, until = _time_ns(args.since), _time_ns(args.until)
        print(_exported(export_records(root, args.stream, args.out, since, until), config))
        return 0
    if args.action == "prove-consistency":
        document = prove_consistency(root, key, args.stream, args.old, args.new)
        sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    if args.action == "prove":
        sys.stdout.write(
            orjson.dumps(prove(root, key, args.request_id), option=orjson.OPT_INDENT_2).decode()
            + "\n"
        )
        return 0
    if args.action == "tail":
        # the last n kept as the stream goes by: a journal holds months of predictions
        records = deque(iter_records(root, args.stream), maxlen=args.n)
    else:
        records = iter_records(root, args.stream, _time_ns(args.since), _time_ns(args.until))
    for record in records:
        sys.stdout.write(orjson.dumps(record_document(record)).decode() + "\n")
    return 0


def _count(text: str) -> int:
    """A non-negative integer option (argparse reports the ArgumentTypeError's text)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def _verified(stream: str, found: StreamCheck, from_checkpoint: bool) -> str:
    """One stream's `journal verify` line, and where retention deleted records, who says so."""
    span = "no records"
    if found.records:
        span = f"{found.records} records (seq {found.first}..{found.head})"
    if from_checkpoint:
        line = f"{stream}: {span} after the latest signed checkpoint (size {found.first - 1}): ok"
    else:
        line = f"{stream}: {span}, {found.checkpoints} checkpoints: ok"
    anchor = found.retention
    if anchor.seq:
        line += (
            f"\n  seq 1..{anchor.seq} deleted by retention, attested by the retention.applied "
            f"record at admin seq {anchor.record_seq} ({_iso(anchor.record_time_ns)}): exported "
            f"through seq {anchor.exported_through}, older than {anchor.retention_days} days; "
            f"the tree and the chain restart there; {found.earlier} earlier checkpoints: "
            "signatures only"
        )
    return line


def _exported(done: Export, config: JournalConfig) -> str:
    span = f"seq {done.first_seq}..{done.last_seq}" if done.records else "none in that range"
    line = f"wrote {done.records} records ({span}) to {done.path}"
    if done.marked:
        return (
            f"{line}; exported through seq {done.exported_through}: segments up to it may be "
            f"deleted once older than {config.retention_days} days"
        )
    return (
        f"{line}; the export mark stays at seq {done.exported_through} (an export moves it only "
        "when it starts at or before the seq after it)"
    )


def _iso(time_ns: int) -> str:
    return (EPOCH + timedelta(microseconds=time_ns // 1000)).isoformat()


def _time_ns(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return time_ns(text)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _given(**values: object) -> dict[str, object] | None:
    """The options that were given, as a nested config table (None when none was)."""
    given = {key: value for key, value in values.items() if value is not None}
    return given or None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        from gateway.bench.__main__ import main as bench_main

        return bench_main(argv[1:])
    if argv[:1] == ["drift"]:  # `modelgate drift D` is `modelgate admin drift D`
        argv = ["admin", *argv]
    args = _parser().parse_args(argv)
    if args.command == "admin":
        return admin_cli.main(args)
    if args.command == "profile":
        return profile_cli.main(args)
    offline = {"token": lambda: asyncio.run(_token(args)), "journal": lambda: _journal(args)}
    if args.command in offline:
        try:
            return offline[args.command]()
        except OFFLINE_FAILURES as error:
            print(f"modelgate {args.command} {args.action}: {error}", file=sys.stderr)
            return 1
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
