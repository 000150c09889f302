"""The OpenAPI document, built without any configuration (`allegro-link openapi`)."""

from __future__ import annotations

import json
from typing import Any

from allegro_link.app import create_app
from allegro_link.settings import Settings


def openapi_schema() -> dict[str, Any]:
    # Building the schema touches no setting: routes are the same whatever the configuration, and the
    # lifespan (which would use them) never runs here.
    app = create_app(Settings.model_construct(demo_enabled=False))
    return app.openapi()


def openapi_json() -> str:
    return json.dumps(openapi_schema(), indent=2, ensure_ascii=False, sort_keys=False) + "\n"
