"""structlog JSON logging with a redaction processor.

Everything (our events, uvicorn, httpx, SQLAlchemy) goes through one pipeline so that the redactor
sees every line. Redaction is belt and braces: code paths never pass tokens to the logger, and the
processor still scrubs anything that looks like one (JWTs, `code=`/`state=`/`token=` in URLs,
secret-looking keys) in case a library logs what it should not.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "[redacted]"

_SECRET_KEY = re.compile(
    r"(token|secret|password|passwd|authorization|cookie|verifier|api_key|apikey|credential|^code$|^state$"
    r"|^link_session$|encryption_key)",
    re.IGNORECASE,
)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_QUERY_SECRET = re.compile(
    r"(?P<key>(?:^|[?&;\s\"'])(?:code|state|access_token|refresh_token|code_verifier|client_secret|"
    r"link_session|token|rejected_token)=)[^&\s\"';]*",
    re.IGNORECASE,
)
_JSON_SECRET = re.compile(
    r"(?P<key>[\"'](?:access_token|refresh_token|code|code_verifier|client_secret|state|link_session|"
    r"rejected_token|id_token)[\"']\s*:\s*)[\"'][^\"']*[\"']",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<key>\b(?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_API_KEY = re.compile(r"\balk_[A-Za-z0-9_-]{8,}")
_DESCRIPTION_TOKEN = re.compile(r"(?P<key>(?:refresh|access) token(?: expired)?:\s*)\S+", re.IGNORECASE)


def redact_text(text: str) -> str:
    text = _JWT.sub(REDACTED, text)
    text = _QUERY_SECRET.sub(lambda m: m.group("key") + REDACTED, text)
    text = _JSON_SECRET.sub(lambda m: m.group("key") + f'"{REDACTED}"', text)
    text = _BEARER.sub(lambda m: m.group("key") + REDACTED, text)
    text = _DESCRIPTION_TOKEN.sub(lambda m: m.group("key") + REDACTED, text)
    return _API_KEY.sub(REDACTED, text)


def _redact_value(key: str, value: Any) -> Any:
    if _SECRET_KEY.search(key) and value is not None and not isinstance(value, bool | int | float):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(key, v) for v in value]
    return value


def redact_event(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: scrub secret-looking fields and token-looking substrings."""
    event_dict.pop("color_message", None)  # uvicorn's ANSI-coloured duplicate of the message
    for key in list(event_dict):
        if key in ("event", "level", "timestamp", "logger", "request_id"):
            if isinstance(event_dict[key], str):
                event_dict[key] = redact_text(event_dict[key])
            continue
        event_dict[key] = _redact_value(key, event_dict[key])
    return event_dict


def _render_exception_redacted(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    exception = event_dict.get("exception")
    if isinstance(exception, str):
        event_dict["exception"] = redact_text(exception)
    return event_dict


def configure_logging(level: str = "INFO", *, json: bool = True) -> None:
    """Route structlog and stdlib logging through one redacting pipeline. Idempotent."""
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _render_exception_redacted,
            redact_event,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's access log prints query strings (OAuth codes and states): our middleware logs
    # requests instead, without the query. httpx logs full URLs at INFO.
    for name, logger_level in (
        ("uvicorn.access", logging.WARNING),
        ("httpx", logging.WARNING),
        ("httpcore", logging.WARNING),
    ):
        logging.getLogger(name).setLevel(logger_level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def bind_request_context(values: MutableMapping[str, Any]) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(**values)
