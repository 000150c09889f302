"""`serve`: run the fake Allegro under uvicorn (what `allegro-link fake-allegro` calls)."""

from __future__ import annotations

import uvicorn

from allegro_link.fake_allegro.app import create_fake_allegro_app
from allegro_link.fake_allegro.config import FakeAllegroConfig


def serve(host: str, port: int, config: FakeAllegroConfig) -> None:
    """Serve until interrupted. One process, one event loop: the state lives in this process's memory."""
    app = create_fake_allegro_app(config)
    # Access logs would print codes and tokens from query strings; the fake never logs them.
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="info")
