"""structlog JSON logging with a redaction processor.

Everything (our events, uvicorn, httpx, SQLAlchemy) goes through one pipeline so that the redactor
sees every line. Redaction is belt and braces: code paths never pass tokens to the logger, and the
processor still scrubs anything that looks like one (JWTs, `code=`/`state=`/`token=` in URLs,
secret-looking keys) in case a library logs what it should not.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import threading
from collections.abc import Mapping
from typing import Any, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from allegro_link.auth.scopes import KEY_MARKER

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
_API_KEY = re.compile(rf"\b{re.escape(KEY_MARKER)}[A-Za-z0-9_-]{{8,}}")
_DESCRIPTION_TOKEN = re.compile(r"(?P<key>(?:refresh|access) token(?: expired)?:\s*)\S+", re.IGNORECASE)


# Every pattern above needs one of these substrings to match (a JWT starts with "eyJ", a query secret
# has "=", a JSON secret and a token description have ":", an API key starts with its marker). Most log
# strings (event names, routes, paths, ids) have none, and one search is far cheaper than six
# substitutions: this runs on every access-log line.
_MAY_HOLD_SECRET = re.compile(rf"eyJ|=|:|{re.escape(KEY_MARKER)}|bearer|basic", re.IGNORECASE)


def redact_text(text: str) -> str:
    if _MAY_HOLD_SECRET.search(text) is None:
        return text
    return _redact_all(text)


def _redact_all(text: str) -> str:
    text = _JWT.sub(REDACTED, text)
    text = _QUERY_SECRET.sub(lambda m: m.group("key") + REDACTED, text)
    text = _JSON_SECRET.sub(lambda m: m.group("key") + f'"{REDACTED}"', text)
    text = _BEARER.sub(lambda m: m.group("key") + REDACTED, text)
    text = _DESCRIPTION_TOKEN.sub(lambda m: m.group("key") + REDACTED, text)
    return _API_KEY.sub(REDACTED, text)


@functools.lru_cache(maxsize=1024)
def _is_secret_key(key: str) -> bool:
    """Cached: log keys are a small, fixed vocabulary, looked up on every line."""
    return _SECRET_KEY.search(key) is not None


def _redact_value(key: str, value: Any) -> Any:
    if _is_secret_key(key) and value is not None and not isinstance(value, bool | int | float):
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
        if key in ("level", "timestamp"):  # ours (add_log_level, TimeStamper), never a secret
            continue
        if key in ("event", "logger", "request_id"):
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


class _Output:
    """The stream every line goes to, ours and the libraries' alike; `configure_logging` points it."""

    def __init__(self) -> None:
        self.stream: TextIO = sys.stderr
        self.level = logging.INFO
        # Shared with the stdlib handler, so that a line of ours and a library's never interleave.
        self.lock = threading.RLock()

    # The stdlib handler writes through these, so both pipelines follow `stream` when it changes.
    def write(self, text: str) -> None:
        self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


_OUTPUT = _Output()


class _LineWriter:
    """structlog's logger for our own events: writes the rendered line, nothing else.

    Our events skip the stdlib machinery (two LogRecords, caller lookup, the formatter): the request
    middleware logs one line per request, so its cost is paid on every one (docs/performance.md).
    """

    def __init__(self, name: str) -> None:
        self.name = name  # read by structlog.stdlib.add_logger_name

    def msg(self, message: str) -> None:
        with _OUTPUT.lock:
            _OUTPUT.stream.write(message + "\n")
            _OUTPUT.stream.flush()

    debug = info = warning = error = critical = exception = msg


def _line_writer(name: str = "allegro_link", *args: Any) -> _LineWriter:
    return _LineWriter(name)


def _drop_below_level(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    # A processor rather than a filtering wrapper class, so that loggers cached on first use still
    # follow a later configure_logging (tests raise the level to DEBUG).
    if _LEVELS.get(method_name, logging.INFO) < _OUTPUT.level:
        raise structlog.DropEvent
    return event_dict


_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
}


def _dumps(value: Any, **options: Any) -> str:
    # orjson: faster than json.dumps, and this runs once per request.
    return orjson.dumps(value, default=options.get("default"), option=orjson.OPT_NON_STR_KEYS).decode()


def configure_logging(level: str = "INFO", *, json: bool = True, stream: TextIO | None = None) -> None:
    """One redacting pipeline for structlog and stdlib logging, one stream (stderr). Idempotent."""
    _OUTPUT.stream = stream if stream is not None else sys.stderr
    _OUTPUT.level = logging.getLevelName(level.upper())
    renderer: Processor = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    common: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    redact_and_render: list[Processor] = [
        structlog.processors.format_exc_info,
        _render_exception_redacted,
        redact_event,
        renderer,
    ]
    # Our events: rendered by structlog and written by _LineWriter.
    structlog.configure(
        processors=[_drop_below_level, *common, *redact_and_render],
        logger_factory=_line_writer,
        wrapper_class=structlog.BoundLogger,
        cache_logger_on_first_use=True,
    )
    # Libraries' records (uvicorn, SQLAlchemy, httpx, asyncio): the same processors, via stdlib.
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*common, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *redact_and_render],
    )
    handler = logging.StreamHandler(_OUTPUT)
    handler.lock = _OUTPUT.lock
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's access log prints query strings (OAuth codes and states): our middleware logs
    # requests instead, without the query. httpx logs full URLs at INFO.
    for name, logger_level in (
        ("uvicorn.access", logging.WARNING),
        ("httpx", logging.WARNING),
        ("httpcore", logging.WARNING),
    ):
        logging.getLogger(name).setLevel(logger_level)
    # uvicorn's own logging config (applied when it was started with one) gives these loggers
    # handlers and levels of their own; ours, set here, are the only ones.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
        logger.disabled = False
        if name != "uvicorn.access":
            logger.setLevel(logging.NOTSET)
