"""The committed OpenAPI document is exactly what the app serves."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from allegro_link.openapi import openapi_json

COMMITTED = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"


class TestOpenApi:
    def test_committed_document_is_current(self) -> None:
        assert COMMITTED.read_text() == openapi_json(), (
            "openapi/openapi.json is stale: run `allegro-link openapi > openapi/openapi.json`"
        )

    async def test_served_document_equals_committed(self, client: httpx.AsyncClient) -> None:
        served = (await client.get("/openapi.json")).json()
        assert served == json.loads(COMMITTED.read_text())

    def test_operation_ids_are_tag_dash_name(self) -> None:
        document = json.loads(openapi_json())
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                tag = operation["tags"][0]
                assert re.fullmatch(rf"{tag}-[a-z0-9-]+", operation["operationId"]), (method, path)
