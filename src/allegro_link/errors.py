"""RFC 9457 problem+json for every error the service returns.

Domain code raises `Problem` subclasses that carry their status and a stable machine `code`; one set
of handlers renders them, and also turns FastAPI's own 404/405/422 and unexpected failures into the
same shape. Error bodies never echo request input: a rejected value may be a token or a code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from allegro_link.db import has_unavailable_sqlstate
from allegro_link.ops.database import describe_refusal

PROBLEM_CONTENT_TYPE = "application/problem+json"

log = structlog.get_logger(__name__)

ExcT = TypeVar("ExcT", bound=Exception)


class ProblemDetails(BaseModel):
    """An error (RFC 9457). `code` is a stable machine word to branch on."""

    type: str = Field(examples=["urn:allegro-link:problem:not_found"])
    title: str
    status: int
    detail: str
    code: str


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str


class ValidationProblemDetails(ProblemDetails):
    errors: list[ValidationIssue] = Field(default_factory=list)


def problem_type(code: str) -> str:
    return f"urn:allegro-link:problem:{code}"


class Problem(Exception):
    """Base for expected failures; subclasses fix status, code and title."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.detail = detail or self.title
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})
        super().__init__(self.detail)

    def body(self) -> dict[str, Any]:
        return {
            "type": problem_type(self.code),
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
            **self.extra,
        }


class BadRequest(Problem):
    status = 400
    code = "bad_request"
    title = "Bad request"


class Unauthenticated(Problem):
    status = 401
    code = "unauthenticated"
    title = "Authentication required"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(Problem):
    status = 403
    code = "forbidden"
    title = "Not allowed"


class NotFound(Problem):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(Problem):
    status = 409
    code = "conflict"
    title = "Conflict"


class ServiceUnavailable(Problem):
    status = 503
    code = "service_unavailable"
    title = "Service unavailable"


class DatabaseUnavailable(ServiceUnavailable):
    code = "database_unavailable"
    title = "Database unavailable"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(
            detail or "The database cannot be reached; retry shortly.", headers={"Retry-After": "5"}
        )


def problem_response(
    status: int, code: str, title: str, detail: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {"type": problem_type(code), "title": title, "status": status, "detail": detail, "code": code}
    body.update(extra)
    return JSONResponse(
        body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_CONTENT_TYPE
    )


def error_responses(*problems: type[Problem]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the problems a route may raise."""
    responses: dict[int | str, dict[str, Any]] = {}
    for problem in problems:
        entry = responses.setdefault(
            problem.status,
            {"model": ProblemDetails, "description": problem.title, "content": {PROBLEM_CONTENT_TYPE: {}}},
        )
        if problem.title not in entry["description"]:
            entry["description"] += f"; {problem.title}"
    return responses


# Responses every operation may give whatever its route says: the request guards (NUL bytes, a body
# that is not JSON, one over the size limit, headers over theirs) and a database that cannot be reached.
_COMMON_RESPONSES = {
    "400": "Bad request (a NUL byte in the URL, or a body that is not JSON)",
    "413": "Request body too large",
    "431": "Request header fields too large",
    "503": "Database unavailable",
}


def document_problems(document: dict[str, Any]) -> dict[str, Any]:
    """Make the OpenAPI document describe what the handlers send.

    FastAPI documents error models under `application/json` and 422 as its own `HTTPValidationError`;
    every error here is `application/problem+json` (422 with the `errors` list). Also adds the
    responses the middleware and the database handlers give on any operation (see `_COMMON_RESPONSES`).
    """
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    validation = ValidationProblemDetails.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(validation.pop("$defs", {}))
    schemas[ValidationProblemDetails.__name__] = validation
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    problem = {"schema": {"$ref": f"#/components/schemas/{ProblemDetails.__name__}"}}
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            for status, response in responses.items():
                if int(status) < 400:
                    continue
                content = response.get("content", {})
                schema = content.get("application/json", {}).get("schema") or problem["schema"]
                response["content"] = {PROBLEM_CONTENT_TYPE: {"schema": schema}}
            if "422" in responses:
                responses["422"] = {
                    "description": "Invalid request",
                    "content": {
                        PROBLEM_CONTENT_TYPE: {
                            "schema": {"$ref": f"#/components/schemas/{ValidationProblemDetails.__name__}"}
                        }
                    },
                }
            common = dict(_COMMON_RESPONSES)
            if "requestBody" not in operation:
                del common["413"]
            if "ops" in operation.get("tags", ()):
                del common["503"]  # no database behind them (readyz documents its own 503)
            for status, description in common.items():
                responses.setdefault(
                    status, {"description": description, "content": {PROBLEM_CONTENT_TYPE: problem}}
                )
    return document


_HTTP_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("unauthenticated", "Authentication required"),
    403: ("forbidden", "Not allowed"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    413: ("payload_too_large", "Request body too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
}

_MAX_LOC_PART = 64


def _safe_loc(loc: tuple[int | str, ...]) -> list[str | int]:
    # A location part may be a key the client invented; keep it short and printable.
    return [part if isinstance(part, int) else str(part)[:_MAX_LOC_PART].replace("\x00", "") for part in loc]


def _expect(exc: Exception, kind: type[ExcT]) -> ExcT:
    # Starlette types handlers as taking any Exception; each is registered for one class only.
    if not isinstance(exc, kind):
        raise exc
    return exc


async def _handle_problem(request: Request, raised: Exception) -> JSONResponse:
    exc = _expect(raised, Problem)
    return JSONResponse(
        exc.body(), status_code=exc.status, headers=exc.headers, media_type=PROBLEM_CONTENT_TYPE
    )


async def _handle_http_exception(request: Request, raised: Exception) -> JSONResponse:
    exc = _expect(raised, StarletteHTTPException)
    code, title = _HTTP_CODES.get(exc.status_code, ("http_error", "HTTP error"))
    detail = exc.detail if isinstance(exc.detail, str) and exc.status_code != 404 else title
    return problem_response(exc.status_code, code, title, detail, headers=exc.headers)


async def _handle_validation_error(request: Request, raised: Exception) -> JSONResponse:
    exc = _expect(raised, RequestValidationError)
    # FastAPI's default body echoes the rejected input, which may be a code or a token: list only
    # where and why.
    issues = [
        {"loc": _safe_loc(tuple(err.get("loc", ()))), "msg": str(err.get("msg", "invalid"))}
        for err in exc.errors()
    ]
    return problem_response(
        422, "validation_error", "Invalid request", "The request does not match the schema.", errors=issues
    )


async def _handle_database_error(request: Request, exc: Exception) -> JSONResponse:
    log.warning("db.unavailable", error=type(exc).__name__)
    return _database_unavailable()


async def _handle_database_refusal(refusal: str) -> JSONResponse:
    # A configuration mistake (wrong role, password or database): the operator's log says which; the
    # caller, like any caller during an outage, learns only that the database is unavailable.
    log.error("db.refused", detail=refusal)
    return _database_unavailable()


def _database_unavailable() -> JSONResponse:
    return JSONResponse(
        DatabaseUnavailable().body(),
        status_code=503,
        headers={"Retry-After": "5"},
        media_type=PROBLEM_CONTENT_TYPE,
    )


async def _handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("request.failed", error=type(exc).__name__, exc_info=exc)
    return problem_response(500, "internal_error", "Internal error", "An unexpected error occurred.")


def is_connection_error(exc: BaseException) -> bool:
    """True for failures that mean "the database is not reachable", not "the query is wrong"."""
    if isinstance(exc, (PoolTimeoutError, InterfaceError)):
        return True
    if isinstance(exc, DBAPIError):
        return (
            exc.connection_invalidated or isinstance(exc, OperationalError) or has_unavailable_sqlstate(exc)
        )
    return isinstance(exc, (ConnectionError, OSError, TimeoutError))


async def _handle_dbapi_error(request: Request, exc: Exception) -> JSONResponse:
    if (refusal := describe_refusal(exc)) is not None:
        return await _handle_database_refusal(refusal)
    if is_connection_error(exc):
        return await _handle_database_error(request, exc)
    return await _handle_unexpected(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    """Render every error as problem+json, and document it so in the OpenAPI document."""
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(default_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_exception_handler(Problem, _handle_problem)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    app.add_exception_handler(DBAPIError, _handle_dbapi_error)
    app.add_exception_handler(PoolTimeoutError, _handle_database_error)
    app.add_exception_handler(ConnectionError, _handle_database_error)
    app.add_exception_handler(OSError, _handle_database_error)
    app.add_exception_handler(Exception, _handle_unexpected)
