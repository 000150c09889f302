"""What start-up made is frozen out of the collector's full passes while the app runs (app.py)."""

from __future__ import annotations

import gc

from allegro_link.app import create_app
from allegro_link.settings import Settings
from tests.support.live import lifespan


async def test_startup_objects_are_frozen_while_the_app_runs_and_released_after(settings: Settings) -> None:
    gc.unfreeze()
    application = create_app(settings)
    async with lifespan(application):
        assert gc.get_freeze_count() > 50_000
    assert gc.get_freeze_count() == 0
