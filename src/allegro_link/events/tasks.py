"""The background tasks of events and webhooks that every replica runs, started by the app's lifespan."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from allegro_link.events.sequencer import sequence_forever
from allegro_link.webhooks.delivery import DeliveryPolicy, DeliveryWorkers
from allegro_link.webhooks.stats import outbox_gauges_forever

if TYPE_CHECKING:
    from allegro_link.resources import Resources


def start_event_tasks(resources: Resources) -> list[asyncio.Task[None]]:
    settings = resources.settings
    tasks = [
        asyncio.create_task(
            resources.signals.listen_forever(settings.database_url.get_secret_value()), name="events-listen"
        ),
        asyncio.create_task(
            sequence_forever(
                resources.events_sessionmaker,
                resources.signals,
                resources.metrics,
                poll_seconds=settings.events_poll_seconds,
            ),
            name="events-sequencer",
        ),
    ]
    if settings.webhooks_enabled:
        workers = DeliveryWorkers(
            resources.events_sessionmaker,
            resources.vault,
            resources.metrics,
            resources.signals,
            DeliveryPolicy(
                retry_delays=tuple(settings.webhook_retry_delays),
                timeout_seconds=settings.webhook_timeout_seconds,
                concurrency=settings.webhook_concurrency,
                poll_seconds=settings.events_poll_seconds,
            ),
        )
        tasks.append(asyncio.create_task(workers.run_forever(), name="webhooks-deliver"))
        tasks.append(
            asyncio.create_task(
                outbox_gauges_forever(resources.events_sessionmaker, resources.metrics),
                name="webhooks-gauges",
            )
        )
    return tasks
