"""The keep-alive sweep's candidate query, captured as the service sends it, and its plan.

`sweep_once` runs against the bench database with a listener that records the statement and its
parameters; that exact statement is then EXPLAIN ANALYZEd, once as configured (the default 14-day window) and
once with a window wide enough that a large share of the accounts is due, at every growth step. The
buffers the plan touched are the cost that does not depend on the machine's load: with an index scan
stopped by the LIMIT, they stay flat however many accounts there are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from allegro_link.db import create_engine, create_sessionmaker
from allegro_link.settings import DatabaseSettings, Settings
from allegro_link.tokens.keepalive import RateLimiter, sweep_once

# The keep-alive as `allegro-link serve` runs it by default.
CONFIGURED_WINDOW_DAYS = float(Settings.model_fields["keepalive_window_days"].default)
CONFIGURED_RATE_PER_MINUTE = int(Settings.model_fields["keepalive_max_per_minute"].default)


@dataclass(frozen=True)
class SweepPlan:
    """The candidate query's plan with a window of `window_days`."""

    window_days: float
    due_accounts: int
    nodes: list[str]
    uses_index: bool
    seq_scan: bool
    execution_ms: float
    buffers: int  # shared buffers the plan touched, found in the cache or read (EXPLAIN's BUFFERS)


async def capture_sweep_query(sqlalchemy_url: str) -> tuple[str, tuple[Any, ...]]:
    engine: AsyncEngine = create_engine(DatabaseSettings(database_url=sqlalchemy_url), pool_size=1)
    captured: list[tuple[str, tuple[Any, ...]]] = []

    def remember(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if "FROM accounts" in statement and "refresh_token_expires_at" in statement:
            captured.append((statement, tuple(parameters)))

    event.listen(engine.sync_engine, "before_cursor_execute", remember)
    try:
        # Nothing is due in the bench data, so the broker is never reached.
        refreshed = await sweep_once(
            create_sessionmaker(engine),
            None,  # type: ignore[arg-type]
            window=timedelta(days=CONFIGURED_WINDOW_DAYS),
            limiter=RateLimiter(CONFIGURED_RATE_PER_MINUTE),
        )
        if refreshed:
            raise RuntimeError(f"the keep-alive sweep refreshed {refreshed} bench accounts")
    finally:
        await engine.dispose()
    if not captured:
        raise RuntimeError("the keep-alive sweep ran no candidate query")
    return captured[0]


def _nodes(plan: dict[str, Any]) -> list[str]:
    found = [f"{plan['Node Type']}" + (f" using {plan['Index Name']}" if "Index Name" in plan else "")]
    for child in plan.get("Plans", []):
        found.extend(_nodes(child))
    return found


async def explain_sweep(
    dsn: str, statement: str, parameters: tuple[Any, ...], *, window_days: float
) -> SweepPlan:
    now = datetime.now(UTC)
    params = list(parameters)
    # The statement compares the expiry with `now + window` (later than now) and with `now`.
    datetimes = sorted((i for i, p in enumerate(params) if isinstance(p, datetime)), key=lambda i: params[i])
    params[datetimes[0]] = now
    params[datetimes[-1]] = now + timedelta(days=window_days)
    connection = await asyncpg.connect(dsn)
    try:
        raw = await connection.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {statement}", *params)
        due = await connection.fetchval(
            "SELECT count(*) FROM accounts WHERE status = 'active' AND refresh_token_expires_at < $1"
            " AND refresh_token_expires_at > $2",
            now + timedelta(days=window_days),
            now,
        )
    finally:
        await connection.close()
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]
    nodes = _nodes(plan["Plan"])
    return SweepPlan(
        window_days=window_days,
        due_accounts=due,
        nodes=nodes,
        uses_index=any("Index" in n for n in nodes),
        seq_scan=any("Seq Scan" in n for n in nodes),
        execution_ms=plan["Execution Time"],
        buffers=plan["Plan"].get("Shared Hit Blocks", 0) + plan["Plan"].get("Shared Read Blocks", 0),
    )
