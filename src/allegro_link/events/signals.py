"""Wake-ups from PostgreSQL NOTIFY, delivered to the tasks of this process.

One dedicated connection per process LISTENs (not a pooled one: it is held for the process's life).
Waiters never hold a database connection while they wait. A waiter takes `Signal.mark()` *before* it
looks for work and waits on that mark afterwards, so a notification that arrives in between is not lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
import structlog
from sqlalchemy.engine import make_url

from allegro_link.accounts.events import EVENTS_CHANNEL

log = structlog.get_logger(__name__)

SEQUENCED_CHANNEL = "allegro_link_events_sequenced"
RECONNECT_SECONDS = 1.0


class Signal:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    def mark(self) -> asyncio.Event:
        return self._event

    @staticmethod
    async def wait(mark: asyncio.Event, seconds: float) -> bool:
        """True when fired since `mark` was taken, False after `seconds`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(mark.wait(), seconds)
            return True
        return False


class EventSignals:
    """`appended`: events committed (sequencer, webhook workers); `sequenced`: feed readers."""

    def __init__(self) -> None:
        self.appended = Signal()
        self.sequenced = Signal()

    def fire_all(self) -> None:
        self.appended.fire()
        self.sequenced.fire()

    async def listen_forever(self, database_url: str) -> None:
        dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        channels = {EVENTS_CHANNEL: self.appended, SEQUENCED_CHANNEL: self.sequenced}
        while True:
            connection: Any = None
            try:
                connection = await asyncpg.connect(
                    dsn, server_settings={"application_name": "allegro-link-listen"}
                )
                closed = asyncio.Event()
                connection.add_termination_listener(_callback_event(closed))
                for channel, signal in channels.items():
                    await connection.add_listener(channel, _callback(signal))
                # Anything may have happened while we were not listening.
                self.fire_all()
                await closed.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the pollers cover the gap; keep trying
                log.warning("events.listen_failed", error=type(exc).__name__)
            finally:
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(connection.close(timeout=2))
            await asyncio.sleep(RECONNECT_SECONDS)


def _callback(signal: Signal) -> Any:
    def notified(*_args: Any) -> None:
        signal.fire()

    return notified


def _callback_event(event: asyncio.Event) -> Any:
    def terminated(*_args: Any) -> None:
        event.set()

    return terminated
