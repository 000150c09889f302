"""`allegro-link webhooks …`: manage endpoints, and a small receiver for development.

Registered by `cli.py`; like the other commands, the secret a script must capture is alone on the last
line of stdout, and failures are one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from allegro_link.accounts.events import EventType
from allegro_link.settings import DatabaseSettings


class WebhookCliError(Exception):
    """Printed as one line by `cli.main` (it is re-raised there as its CliError)."""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    hooks = commands.add_parser("webhooks", help="webhook endpoints (Standard Webhooks, signed)")
    actions = hooks.add_subparsers(dest="webhooks_command", required=True, metavar="ACTION")

    add = actions.add_parser("add", help="a new endpoint; prints its id, and its secret on the last line")
    add.add_argument("--url", required=True, help="https://…, or http:// for a loopback host")
    add.add_argument(
        "--event", action="append", default=[], choices=[t.value for t in EventType], help="repeatable"
    )
    add.set_defaults(handler=_add)

    listing = actions.add_parser("list", help="endpoints with their backlog, last success and last error")
    listing.set_defaults(handler=_list)

    remove = actions.add_parser("remove", help="delete an endpoint and its pending deliveries")
    remove.add_argument("id", type=uuid.UUID)
    remove.set_defaults(handler=_remove)

    rotate = actions.add_parser(
        "rotate-secret", help="new secret on the last line; the old one signs 24 h more"
    )
    rotate.add_argument("id", type=uuid.UUID)
    rotate.set_defaults(handler=_rotate)

    replay = actions.add_parser("replay", help="send every matching event since DATETIME again")
    replay.add_argument("id", type=uuid.UUID)
    replay.add_argument("--since", required=True, type=_datetime, metavar="DATETIME")
    replay.set_defaults(handler=_replay)

    listen = actions.add_parser("listen", help="development receiver: verify and print deliveries")
    listen.add_argument("--port", type=int, default=8787)
    listen.add_argument("--host", default="127.0.0.1")
    listen.add_argument("--secret", help="whsec_… to verify with (default: ALLEGRO_LINK_WEBHOOK_SECRET)")
    listen.set_defaults(handler=_listen)


def _datetime(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or datetime: {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _run(settings: DatabaseSettings, work: Callable[[AsyncSession], Awaitable[int]], *, commit: bool) -> int:
    from allegro_link.db import create_engine, create_sessionmaker
    from allegro_link.webhooks.endpoints import WebhookError

    async def main() -> int:
        engine: AsyncEngine = create_engine(settings, pool_size=2, max_overflow=0)
        try:
            async with create_sessionmaker(engine)() as session:
                result = await work(session)
                if commit:
                    await session.commit()
                return result
        except WebhookError as exc:
            raise WebhookCliError(str(exc)) from None
        finally:
            await engine.dispose()

    return asyncio.run(main())


def _vault() -> tuple[DatabaseSettings, object]:
    from allegro_link.crypto.keys import KeyRing
    from allegro_link.crypto.vault import TokenVault
    from allegro_link.settings import KeyRingSettings, load_settings

    settings = load_settings(KeyRingSettings)
    return settings, TokenVault(KeyRing(settings.encryption_key_ring))


def _add(args: argparse.Namespace) -> int:
    from allegro_link.crypto.vault import TokenVault
    from allegro_link.webhooks.endpoints import add_endpoint

    settings, vault = _vault()
    assert isinstance(vault, TokenVault)  # noqa: S101 - for the type checker

    async def work(session: AsyncSession) -> int:
        endpoint_id, secret = await add_endpoint(session, vault, url=args.url, event_types=args.event)
        print(f"# webhook endpoint {endpoint_id} ({', '.join(args.event) or 'all event types'})")
        print(f"id: {endpoint_id}")
        print("# its signing secret, shown once (stored encrypted):")
        print(secret)
        return 0

    return _run(settings, work, commit=True)


def _list(args: argparse.Namespace) -> int:
    from allegro_link.db import utcnow
    from allegro_link.settings import load_settings
    from allegro_link.webhooks.endpoints import list_endpoints

    async def work(session: AsyncSession) -> int:
        now = utcnow()
        print("id\turl\ttypes\tenabled\tundelivered\toldest_undelivered\tfailed\tlast_success\tlast_error")
        for e in await list_endpoints(session):
            oldest = (
                f"{(now - e.oldest_undelivered_at).total_seconds():.0f}s" if e.oldest_undelivered_at else "-"
            )
            enabled = "yes" if e.enabled else f"no ({e.disabled_reason})"
            success = f"{e.last_success_at:%Y-%m-%d %H:%M:%S}" if e.last_success_at else "-"
            error = f"{e.last_error_at:%Y-%m-%d %H:%M:%S} {e.last_error}" if e.last_error_at else "-"
            types = ",".join(e.event_types) or "*"
            print(
                f"{e.id}\t{e.url}\t{types}\t{enabled}\t{e.undelivered}\t{oldest}\t{e.failed}\t{success}\t{error}"
            )
        return 0

    return _run(load_settings(DatabaseSettings), work, commit=False)


def _remove(args: argparse.Namespace) -> int:
    from allegro_link.settings import load_settings
    from allegro_link.webhooks.endpoints import remove_endpoint

    async def work(session: AsyncSession) -> int:
        await remove_endpoint(session, args.id)
        print(f"removed {args.id}")
        return 0

    return _run(load_settings(DatabaseSettings), work, commit=True)


def _rotate(args: argparse.Namespace) -> int:
    from allegro_link.crypto.vault import TokenVault
    from allegro_link.webhooks.endpoints import rotate_secret

    settings, vault = _vault()
    assert isinstance(vault, TokenVault)  # noqa: S101 - for the type checker

    async def work(session: AsyncSession) -> int:
        secret = await rotate_secret(session, vault, args.id)
        print(f"# new secret for {args.id}; the previous one keeps signing for 24 hours:")
        print(secret)
        return 0

    return _run(settings, work, commit=True)


def _replay(args: argparse.Namespace) -> int:
    from allegro_link.settings import load_settings
    from allegro_link.webhooks.endpoints import replay

    async def work(session: AsyncSession) -> int:
        count = await replay(session, args.id, args.since)
        print(f"queued {count} events since {args.since.isoformat()} for {args.id}")
        return 0

    return _run(load_settings(DatabaseSettings), work, commit=True)


def _listen(args: argparse.Namespace) -> int:
    import os

    from allegro_link.webhooks.listen import serve_receiver

    secret = args.secret or os.environ.get("ALLEGRO_LINK_WEBHOOK_SECRET")
    if not secret:
        raise WebhookCliError("give --secret whsec_… or set ALLEGRO_LINK_WEBHOOK_SECRET")
    serve_receiver(args.host, args.port, secret)
    return 0
