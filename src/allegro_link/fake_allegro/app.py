"""`create_fake_allegro_app`: one ASGI app serving both Allegro hosts' paths, state per instance."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from allegro_link.fake_allegro.config import FakeAllegroConfig
from allegro_link.fake_allegro.controls import ControlRoutes
from allegro_link.fake_allegro.faults import CONNECTION_SCOPE_KEY, connection_of
from allegro_link.fake_allegro.routes_api import ApiRoutes
from allegro_link.fake_allegro.routes_oauth import OAuthRoutes
from allegro_link.fake_allegro.store import FakeStore
from allegro_link.fake_allegro.tokens import TokenSigner, generate_signing_key


class FakeAllegroApp:
    """The ASGI app, with its store reachable for tests that want to look inside (`app.store`)."""

    def __init__(self, config: FakeAllegroConfig) -> None:
        self.config = config
        signer = TokenSigner(config.signing_key or generate_signing_key(), config.issuer)
        self.store = FakeStore(config, signer)
        api = FastAPI(title="Fake Allegro", docs_url=None, redoc_url=None, openapi_url=None)
        api.include_router(OAuthRoutes(self.store).router())
        api.include_router(ApiRoutes(self.store, config.me_required_scope).router())
        if config.controls_enabled:
            api.include_router(ControlRoutes(self.store).router())
        self.api: ASGIApp = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # Remember uvicorn's connection object so that a "reset" fault can abort the connection.
            scope = {**scope, CONNECTION_SCOPE_KEY: connection_of(send)}
        await self.api(scope, receive, send)


def create_fake_allegro_app(config: FakeAllegroConfig) -> FakeAllegroApp:
    return FakeAllegroApp(config)
