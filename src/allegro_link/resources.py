"""What the app's lifespan owns, and the one typed way a request reaches it.

Its own module, which imports the types it names only for type checking, so that every route module
and `db.py` can import it without a cycle through `app.py` (which builds it, in `build_resources`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from starlette.types import Scope

if TYPE_CHECKING:
    import httpx
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

    from allegro_link.allegro.client import AllegroClient
    from allegro_link.auth.api_keys import ApiKeyVerifier
    from allegro_link.auth.owner import OwnerTokenVerifier
    from allegro_link.crypto.vault import TokenVault
    from allegro_link.events.signals import EventSignals
    from allegro_link.oauth.flow import LinkFlow
    from allegro_link.ops.metrics import Metrics
    from allegro_link.settings import Settings
    from allegro_link.tokens.audit import TokenAuditLog
    from allegro_link.tokens.broker import TokenBroker


@dataclass(frozen=True, slots=True)
class Resources:
    """What the lifespan owns; a request reaches it through `resources(request)` or `ResourcesDep`."""

    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    http: httpx.AsyncClient
    metrics: Metrics
    head_revision: str
    vault: TokenVault
    allegro: AllegroClient
    owner_tokens: OwnerTokenVerifier
    api_keys: ApiKeyVerifier
    link_flow: LinkFlow
    tokens: TokenBroker
    token_audit: TokenAuditLog
    signals: EventSignals
    # Its own small pool for the sequencer and the webhook workers: a slow webhook endpoint holds
    # these connections, never the ones token requests need.
    events_engine: AsyncEngine
    events_sessionmaker: async_sessionmaker[AsyncSession]


def resources(request: Request) -> Resources:
    """The resources of the app serving `request` (the lifespan puts them in the request's state).

    A plain function, for the token path and the dependencies it runs: each dependency costs FastAPI
    a resolution step on every request. Elsewhere, `ResourcesDep` says the same in a route's signature.
    """
    return scope_resources(request.scope)


def scope_resources(scope: Scope) -> Resources:
    """The same, for pure ASGI code that has the request's scope (the lifespan state is in it)."""
    found: Resources = scope["state"]["resources"]
    return found


ResourcesDep = Annotated[Resources, Depends(resources)]
