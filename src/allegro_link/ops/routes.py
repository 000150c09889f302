"""Health, readiness and metrics endpoints for orchestrators and Prometheus."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError

from allegro_link.errors import ProblemDetails, is_connection_error, problem_response
from allegro_link.ops.database import describe_refusal
from allegro_link.resources import ResourcesDep

router = APIRouter(tags=["ops"])

READINESS_TIMEOUT_SECONDS = 2.0


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready"]
    migration: str


@router.get("/healthz", operation_id="ops-healthz", response_model=Health)
async def healthz() -> Health:
    """The process is alive (does not touch the database)."""
    return Health(status="ok")


@router.get(
    "/readyz",
    operation_id="ops-readyz",
    response_model=Readiness,
    responses={
        503: {
            "model": ProblemDetails,
            "description": "Database unreachable, refusing the login, or not migrated",
        }
    },
)
async def readyz(resources: ResourcesDep) -> Readiness | JSONResponse:
    """The database is reachable and migrated to the revision this build expects."""
    expected = resources.head_revision
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_SECONDS), resources.engine.connect() as connection:
            current = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    except ProgrammingError:
        return _not_ready("The database has no schema; run `allegro-link migrate`.")
    except Exception as exc:
        if isinstance(exc, TimeoutError) or is_connection_error(exc):
            return _not_ready("The database cannot be reached.")
        refusal = describe_refusal(exc)
        if refusal is not None:
            # Not a bug of ours and not an outage: the URL or the role is wrong. 503 keeps the replica
            # out of rotation; the detail tells the operator what to fix.
            return _not_ready(refusal)
        raise
    if current != expected:
        return _not_ready(
            f"The database schema is at {current}, this build expects {expected}; run `allegro-link migrate`."
        )
    return Readiness(status="ready", migration=expected)


def _not_ready(detail: str) -> JSONResponse:
    return problem_response(503, "not_ready", "Not ready", detail, headers={"Retry-After": "5"})


@router.get(
    "/metrics",
    operation_id="ops-metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition"}},
)
async def metrics(resources: ResourcesDep) -> Response:
    """Prometheus metrics (request counts and latency by route template and status)."""
    return Response(generate_latest(resources.metrics.registry), media_type=CONTENT_TYPE_LATEST)
