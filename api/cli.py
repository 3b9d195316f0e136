"""The ``liverelay`` command: serve, drain, migrate, manage API keys, list nodes, mint tokens.

Settings are built once from the environment. Logs go to stderr; commands that answer with data
print only that data (JSON, or the bare token) on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api import queries
from api.auth import issue_token
from api.database import create_engine, upgrade_to_head
from api.playback_tokens import issue_playback_token
from api.schemas.livestreams import iso_timestamp
from config import Settings, SettingsError
from config.distribution import describe_shared, shared_top_level_packages
from config.logs import configure_logging

log = logging.getLogger("liverelay")

Command = Callable[[Settings, argparse.Namespace], int]

SECRET_VARIABLE = "LIVERELAY_SECRET"
"""Where ``liverelay token`` reads the API secret (not a setting: only that command reads it)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``liverelay`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"liverelay: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    command: Command = args.command
    return command(settings, args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="liverelay", description=__doc__)
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    sub.add_parser("serve", help="run the HTTP API, playback and RTMP ingest").set_defaults(
        command=serve
    )
    sub.add_parser(
        "drain",
        help="drain the node serving LIVERELAY_DATA_DIR on this machine, as SIGTERM does: "
        "/readyz fails, new publishes are refused, live sessions end ('draining'), then it "
        "stops within LIVERELAY_DRAIN_SECONDS + 10 s",
    ).set_defaults(command=drain)
    sub.add_parser("migrate", help="migrate the database to the latest schema").set_defaults(
        command=migrate
    )
    apikey = sub.add_parser("apikey", help="manage API keys").add_subparsers(
        required=True, metavar="ACTION"
    )
    create = apikey.add_parser("create", help="create an account with a new API key")
    create.add_argument("--name", required=True, help="account name shown as user.name")
    create.set_defaults(command=apikey_create)
    apikey.add_parser("list", help="list active API keys (no secrets)").set_defaults(
        command=apikey_list
    )
    delete = apikey.add_parser(
        "delete",
        help="delete an API key with its streams; its stream keys stop working at once, its "
        "live publishers are disconnected and its recordings removed by running servers within "
        "LIVERELAY_DELETION_CHECK_SECONDS, its tokens refused within "
        "LIVERELAY_TOKEN_CACHE_SECONDS",
    )
    delete.add_argument("apikey")
    delete.set_defaults(command=apikey_delete)
    rotate = apikey.add_parser(
        "rotate",
        help="give an API key a new secret (streams, recordings and webhooks stay); tokens "
        "signed with the old secret are refused within LIVERELAY_TOKEN_CACHE_SECONDS",
    )
    rotate.add_argument("apikey")
    rotate.set_defaults(command=apikey_rotate)
    nodes_parser = sub.add_parser(
        "nodes", help="list the nodes sharing the database: serving, draining, lost or gone"
    )
    nodes_parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    nodes_parser.set_defaults(command=nodes)
    token = sub.add_parser(
        "token",
        help="print a JWT for an API key; the secret comes from LIVERELAY_SECRET or standard input",
    )
    token.add_argument("--apikey", required=True)
    token.add_argument("--secret", help=argparse.SUPPRESS)  # refused: see token_command
    token.add_argument("--ttl", type=int, default=None, help="lifetime in seconds")
    token.set_defaults(command=token_command)
    playback = sub.add_parser(
        "playback-token", help="print a playback token (RS256 JWT) for a signed stream"
    )
    playback.add_argument("--stream", required=True, help="the stream id (the token's sub)")
    playback.add_argument("--key-id", required=True, help="the signing key id (the token's kid)")
    playback.add_argument(
        "--private-key", required=True, help="file with the key's privateKey (base64 or PEM)"
    )
    playback.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    playback.set_defaults(command=playback_token_command)
    return parser


def serve(settings: Settings, args: argparse.Namespace) -> int:
    """``liverelay serve``: run the app until interrupted."""
    shared = shared_top_level_packages()
    if shared:
        log.warning("%s", describe_shared(shared))
    _log_ffmpeg(settings)
    log.info("serving HTTP on %s:%s", settings.http_host, settings.http_port)
    # The app (and all it imports) only for ``serve``: the other commands start quicker.
    from api.app import create_app
    from api.serve import run

    app = create_app(settings)
    try:
        run(app, settings)
    except SettingsError as exc:  # found at start-up, e.g. object storage without credentials
        print(f"liverelay: {exc}", file=sys.stderr)
        return 2
    return 0


def drain(settings: Settings, args: argparse.Namespace) -> int:
    """``liverelay drain``: ask the node of this data directory, through its control socket,
    to drain and stop; returns once it began (print ``{"draining": true, ...}``)."""
    import aiohttp

    from api.live.drain import control_socket

    path = control_socket(settings)
    try:
        answer = asyncio.run(_post_drain(str(path)))
    except (OSError, aiohttp.ClientError) as exc:
        log.error(
            "no node answers on %s (%s): is liverelay serve running with this "
            "LIVERELAY_DATA_DIR, as this user?",
            path,
            exc,
        )
        return 1
    _print_json(answer)
    return 0


async def _post_drain(socket_path: str) -> Any:
    import aiohttp

    connector = aiohttp.UnixConnector(path=socket_path)
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as http,
        http.post("http://liverelay/drain") as response,
    ):
        response.raise_for_status()
        return await response.json()


def _log_ffmpeg(settings: Settings) -> None:
    try:
        from workers.ffmpeg_binary import ffmpeg_version, resolve_ffmpeg

        path = resolve_ffmpeg(settings)
        log.info("ffmpeg %s: %s", path, asyncio.run(ffmpeg_version(path)))
    except ImportError:
        log.debug("workers.ffmpeg_binary not available; not checking ffmpeg")
    except Exception as exc:
        log.warning("ffmpeg is not usable: %s", exc)


def migrate(settings: Settings, args: argparse.Namespace) -> int:
    """``liverelay migrate``: apply pending migrations."""
    asyncio.run(_with_session(settings, _nothing))
    log.info("database is at the latest schema")
    return 0


async def _nothing(session: AsyncSession) -> None:
    return None


def apikey_create(settings: Settings, args: argparse.Namespace) -> int:
    """``liverelay apikey create --name NAME``: print apikey, secret, userId and a token."""
    name = args.name.strip()
    if not 0 < len(name) <= 256:
        log.error("--name must be 1 to 256 characters")
        return 2

    async def create(session: AsyncSession) -> dict[str, str]:
        account = await queries.create_account(session, name)
        return {"apikey": account.apikey, "secret": account.secret, "userId": account.id}

    created = asyncio.run(_with_session(settings, create))
    token = issue_token(created["apikey"], created["secret"], settings.token_ttl_seconds)
    log.info("created account %s (%s)", created["userId"], name)
    _print_json({**created, "token": token})
    return 0


def apikey_list(settings: Settings, args: argparse.Namespace) -> int:
    """``liverelay apikey list``: active API keys as JSON (no secrets)."""

    async def listing(session: AsyncSession) -> list[dict[str, str]]:
        return [
            {
                "apikey": a.apikey,
                "userId": a.id,
                "name": a.name,
                "createdAt": iso_timestamp(a.created_at),
            }
            for a in await queries.list_active_accounts(session)
        ]

    _print_json(asyncio.run(_with_session(settings, listing)))
    return 0


def apikey_delete(settings: Settings, args: argparse.Namespace) -> int:
    """``liverelay apikey delete APIKEY``: delete the account and its streams. Its stream keys
    are refused from now on and its recordings are no longer served when this returns (they
    are withdrawn from the data directory); running servers notice the deletion in the shared
    database within ``LIVERELAY_DELETION_CHECK_SECONDS`` (disconnecting its live publishers,
    removing the recordings' files) and refuse its tokens once they have forgotten them
    (``LIVERELAY_TOKEN_CACHE_SECONDS``)."""

    async def delete(session: AsyncSession) -> str | None:
        account = await queries.get_active_account(session, args.apikey)
        if account is None or not await queries.delete_account(session, args.apikey):
            return None
        return account.id

    account_id = asyncio.run(_with_session(settings, delete))
    if account_id is None:
        log.error("no active API key %s", args.apikey)
        return 1
    from api.jobs.deletion import withdraw_deleted_recordings
    from workers.recording_storages import recording_storage

    async def withdraw(session: AsyncSession) -> int:
        async with recording_storage(settings) as storage:
            return await withdraw_deleted_recordings(session, storage, account_id)

    withdrawn = asyncio.run(_with_session(settings, withdraw))
    log.info("withdrew %d recordings of API key %s", withdrawn, args.apikey)
    log.info("deleted API key %s", args.apikey)
    _print_json({"apikey": args.apikey, "deleted": True})
    return 0


def apikey_rotate(settings: Settings, args: argparse.Namespace) -> int:
    """``liverelay apikey rotate APIKEY``: a new secret for the account (everything it owns
    stays); print apikey, secret, userId and a token as ``apikey create`` does. Tokens signed
    with the old secret are refused once running servers have forgotten them."""

    async def rotate(session: AsyncSession) -> dict[str, str] | None:
        account = await queries.rotate_secret(session, args.apikey)
        if account is None:
            return None
        return {"apikey": account.apikey, "secret": account.secret, "userId": account.id}

    rotated = asyncio.run(_with_session(settings, rotate))
    if rotated is None:
        log.error("no active API key %s", args.apikey)
        return 1
    token = issue_token(rotated["apikey"], rotated["secret"], settings.token_ttl_seconds)
    log.info("new secret for API key %s (account %s)", rotated["apikey"], rotated["userId"])
    _print_json({**rotated, "token": token})
    return 0


def nodes(settings: Settings, args: argparse.Namespace) -> int:
    """``liverelay nodes [--json]``: the node registry, judged by the database's clock."""
    from api.cluster.listing import node_json, nodes_table
    from api.cluster.nodes import list_nodes

    async def listing(session: AsyncSession) -> list[Any]:
        return await list_nodes(session, settings.lease_seconds)

    found = asyncio.run(_with_session(settings, listing))
    if args.json:
        _print_json([node_json(node) for node in found])
    else:
        print(nodes_table(found))
    return 0


def token_command(settings: Settings, args: argparse.Namespace) -> int:
    """``liverelay token --apikey K [--ttl SECONDS]``: print a JWT signed with the secret in
    ``LIVERELAY_SECRET``, or else the first line of standard input (a prompt on a terminal).
    Never from the command line, where ``ps`` and shell history keep it."""
    if args.secret is not None:
        log.error(
            "--secret is not accepted (the command line shows in ps and shell history): "
            "set LIVERELAY_SECRET or pass the secret on standard input, e.g. "
            "liverelay token --apikey K < secret.txt"
        )
        return 2
    ttl = settings.token_ttl_seconds if args.ttl is None else args.ttl
    if ttl <= 0:
        log.error("--ttl must be a positive number of seconds")
        return 2
    if ttl > settings.jwt_max_ttl_seconds:
        log.error(
            "--ttl must be at most LIVERELAY_JWT_MAX_TTL_SECONDS (%d): longer-lived tokens "
            "are refused",
            settings.jwt_max_ttl_seconds,
        )
        return 2
    secret = _secret_from_env_or_stdin()
    if not secret:
        log.error(
            "no secret: set LIVERELAY_SECRET or pass it on standard input, e.g. "
            "liverelay token --apikey K < secret.txt"
        )
        return 2
    print(issue_token(args.apikey, secret, ttl))
    return 0


def playback_token_command(settings: Settings, args: argparse.Namespace) -> int:
    """``liverelay playback-token --stream ID --key-id K --private-key FILE [--ttl S]``."""
    if args.ttl <= 0:
        log.error("--ttl must be a positive number of seconds")
        return 2
    try:
        private_key = Path(args.private_key).read_text(encoding="ascii")
        print(issue_playback_token(args.stream, args.key_id, private_key, args.ttl))
    except (OSError, ValueError) as exc:
        log.error("cannot sign with %s: %s", args.private_key, type(exc).__name__)
        return 2
    return 0


def _secret_from_env_or_stdin() -> str:
    secret = os.environ.get(SECRET_VARIABLE, "").strip()
    if secret:
        return secret
    if sys.stdin is None or sys.stdin.closed:
        return ""
    if sys.stdin.isatty():
        return getpass.getpass("secret: ").strip()
    return sys.stdin.readline().strip()


async def _with_session(settings: Settings, work: Callable[[AsyncSession], Any]) -> Any:
    """Migrate to head, then run ``work`` in one committed transaction."""
    engine = create_engine(settings)
    try:
        await upgrade_to_head(engine)
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            async with session.begin():
                return await work(session)
    finally:
        await engine.dispose()


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2))
