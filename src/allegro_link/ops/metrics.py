"""Prometheus metrics, one registry per app so that tests can build many apps in one process."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))

    def __post_init__(self) -> None:
        self.requests = Counter(
            "allegro_link_http_requests",
            "HTTP requests by route template, method and status.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "allegro_link_http_request_duration_seconds",
            "HTTP request latency by route template and method.",
            ("method", "route"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.refreshes = Counter(
            "allegro_link_token_refreshes",
            "Refresh attempts at Allegro by outcome.",
            ("outcome", "trigger"),
            registry=self.registry,
        )
        self.coalesced_waiters = Counter(
            "allegro_link_token_refresh_coalesced_waiters",
            "Callers that waited for a refresh already in flight in this process instead of starting one.",
            registry=self.registry,
        )
        self.lock_wait_seconds = Histogram(
            "allegro_link_token_refresh_lock_wait_seconds",
            "Time spent waiting for an account's refresh lock.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.token_audit_dropped = Counter(
            "allegro_link_token_audit_dropped",
            "Token issue records dropped because the audit buffer was full.",
            registry=self.registry,
        )
        self.accounts_by_status = Gauge(
            "allegro_link_accounts",
            "Accounts by effective status (counted at start, then every minute).",
            ("status",),
            registry=self.registry,
        )
        self.accounts_relogin_soon = Gauge(
            "allegro_link_accounts_relogin_soon",
            "Active accounts whose re-login deadline is within the warning window (keep-alive loop).",
            registry=self.registry,
        )
        self.keepalive_oldest_failure_seconds = Gauge(
            "allegro_link_keepalive_oldest_failure_age_seconds",
            "Age of the oldest keep-alive call still failing, 0 when none is (keep-alive loop).",
            registry=self.registry,
        )
        self.keepalive_uses = Counter(
            "allegro_link_keepalive_uses",
            "Keep-alive calls to GET /me by outcome (used, failed, relogin_required).",
            ("outcome",),
            registry=self.registry,
        )
        self.breaker_open = Gauge(
            "allegro_link_allegro_breaker_open",
            "1 while calls to Allegro's token endpoint are suspended after failures.",
            registry=self.registry,
        )
        self.events_appended = Counter(
            "allegro_link_events_appended",
            "Account events committed (counted once, by the sequencer), by type.",
            ("type",),
            registry=self.registry,
        )
        self.webhook_deliveries = Counter(
            "allegro_link_webhook_deliveries",
            "Webhook delivery attempts by outcome (delivered, retry, failed, gone).",
            ("outcome",),
            registry=self.registry,
        )
        self.webhook_oldest_undelivered_seconds = Gauge(
            "allegro_link_webhook_oldest_undelivered_seconds",
            "Age of the oldest undelivered event per enabled endpoint (0 when none).",
            ("endpoint_id",),
            registry=self.registry,
        )
        self.webhook_endpoints_disabled = Gauge(
            "allegro_link_webhook_endpoints_disabled",
            "Endpoints disabled (after 410 Gone).",
            registry=self.registry,
        )
