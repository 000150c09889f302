"""The log pipeline: one stream and one redactor for our events and the libraries' records."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator

import httpx
import pytest
import structlog
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from allegro_link.app import create_app
from allegro_link.logs import REDACTED, _redact_all, configure_logging, redact_text
from allegro_link.settings import Settings
from tests.support.accounts import insert_account
from tests.support.factories import bearer
from tests.support.keys import new_api_key
from tests.support.live import lifespan
from tests.support.logs import captured_logs


@pytest.fixture
def restore_logging() -> Iterator[None]:
    with captured_logs():  # the tests below configure logging themselves; this puts it back
        yield


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.usefixtures("restore_logging")
class TestPipeline:
    def test_our_events_and_library_records_share_the_stream_and_the_redactor(self) -> None:
        sink = io.StringIO()
        configure_logging("INFO", json=True, stream=sink)
        structlog.get_logger("allegro_link.test").info("ours", url="/cb?code=abc123&x=1", refresh_token="rt")
        logging.getLogger("uvicorn.error").warning("theirs: Bearer eyJhbGciOi.eyJzdWIiOi.c2ln")

        ours, theirs = lines(sink)
        assert ours["event"] == "ours"
        assert ours["logger"] == "allegro_link.test"
        assert ours["level"] == "info"
        assert ours["url"] == f"/cb?code={REDACTED}&x=1"
        assert ours["refresh_token"] == REDACTED
        assert theirs["logger"] == "uvicorn.error"
        assert theirs["level"] == "warning"
        assert "eyJ" not in str(theirs["event"])

    def test_loggers_used_before_a_reconfiguration_follow_it(self) -> None:
        # Loggers are cached on first use; a later configure_logging must still move them to the new
        # stream and level (tests capture logs this way, and `serve` configures after imports).
        log = structlog.get_logger("allegro_link.test")
        first, second = io.StringIO(), io.StringIO()
        configure_logging("WARNING", json=True, stream=first)
        log.info("dropped")
        log.warning("kept")
        configure_logging("DEBUG", json=True, stream=second)
        log.debug("now kept")

        assert [line["event"] for line in lines(first)] == ["kept"]
        assert [line["event"] for line in lines(second)] == ["now kept"]

    def test_exceptions_are_rendered_and_redacted(self) -> None:
        sink = io.StringIO()
        configure_logging("INFO", json=True, stream=sink)
        try:
            raise RuntimeError("refused: refresh token expired: eyJhbGciOi.eyJzdWIiOi.c2ln")
        except RuntimeError as exc:
            structlog.get_logger("allegro_link.test").error("failed", exc_info=exc)

        (line,) = lines(sink)
        assert "RuntimeError" in str(line["exception"])
        assert "eyJ" not in str(line["exception"])


# Fragments every redaction pattern is built from, mixed with ordinary text, so that generated strings
# often contain (near-)secrets: the pre-screen in redact_text must never let one through.
_FRAGMENTS = st.sampled_from(
    [
        "eyJ",
        "eyJhbGciOi.eyJzdWIiOi.c2ln",
        "code=",
        "state=",
        "?",
        "&",
        "=",
        ":",
        '"',
        "'",
        "refresh_token",
        "access token: ",
        "Bearer ",
        "basic ",
        "BASIC ",
        "alk_",
        "alk_abcdefgh1234",
        "/accounts/",
        "token",
        " ",
        "x",
        "Ω",
    ]
)


@hypothesis_settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(_FRAGMENTS, st.text(max_size=6)), max_size=12).map("".join))
def test_the_pre_screen_changes_nothing_but_the_speed(text: str) -> None:
    assert redact_text(text) == _redact_all(text)


class TestAccessLog:
    """One `http.request` line per request, except the token reads that went well (see middleware)."""

    @staticmethod
    async def requests_logged(settings: Settings, level: str) -> list[tuple[str, int]]:
        account = await insert_account(settings)
        key = await new_api_key(settings, "tokens:read")
        with captured_logs(level) as sink:
            async with lifespan(create_app(settings)) as manager:
                transport = httpx.ASGITransport(app=manager.app)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                    assert (
                        await client.get(f"/accounts/{account.id}/token", headers=bearer(key))
                    ).status_code == 200
                    assert (
                        await client.get(f"/accounts/{uuid.uuid4()}/token", headers=bearer(key))
                    ).status_code == 404
                    assert (await client.get(f"/accounts/{account.id}/token")).status_code == 401
                    assert (await client.get("/healthz")).status_code == 200
        return [
            (str(line["route"]), int(str(line["status"])))
            for line in lines(sink)
            if line["event"] == "http.request"
        ]

    async def test_token_reads_that_succeed_are_left_to_the_audit_table(self, settings: Settings) -> None:
        assert await self.requests_logged(settings, "INFO") == [
            ("/accounts/{account_id}/token", 404),
            ("/accounts/{account_id}/token", 401),
            ("/healthz", 200),
        ]

    async def test_at_debug_every_request_is_logged(self, settings: Settings) -> None:
        assert await self.requests_logged(settings, "DEBUG") == [
            ("/accounts/{account_id}/token", 200),
            ("/accounts/{account_id}/token", 404),
            ("/accounts/{account_id}/token", 401),
            ("/healthz", 200),
        ]
