"""A development receiver: verifies each delivery with `standardwebhooks` and prints it (one JSON line)."""

from __future__ import annotations

import json
import sys
from typing import Any

import uvicorn
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def receiver_app(secret: str) -> Starlette:
    webhook = Webhook(secret)

    async def receive(request: Request) -> Response:
        body = await request.body()
        try:
            event: Any = webhook.verify(body, dict(request.headers))
        except WebhookVerificationError as exc:
            print(json.dumps({"verified": False, "error": str(exc)}), file=sys.stderr, flush=True)
            return Response(status_code=400)
        line = {"verified": True, "webhook-id": request.headers.get("webhook-id"), "event": event}
        print(json.dumps(line, ensure_ascii=False), flush=True)
        return Response(status_code=204)

    return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])


def serve_receiver(host: str, port: int, secret: str) -> None:
    print(
        f"# listening on http://{host}:{port}/ ; add it with: allegro-link webhooks add --url http://{host}:{port}/"
    )
    uvicorn.run(receiver_app(secret), host=host, port=port, log_level="warning")
