"""What each phase of `make bench` measured, as frozen dataclasses; `Results.as_json()` is what it prints."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from common import Series
from scale import SweepPlan
from storm import StormResult

# The apps measured side by side, by name: `ours`, `floor`, `baseline` and, with --before-src, `before`.
ByApp = dict[str, Series]
# Keep-alive connections of wrk: the `c64` figures (the machine saturated) and the `c4` ones.
MANY_CLIENTS = 64
FEW_CLIENTS = 4


def _series_json(by_app: ByApp) -> dict[str, Any]:
    return {name: series.as_json() for name, series in by_app.items()}


@dataclass(frozen=True)
class Loadgen:
    """wrk alone against a static endpoint."""

    static_rps: float
    static_p99_ms: float
    wrk_cpu_us_per_request: float


@dataclass(frozen=True)
class Seeding:
    """One growth step's seeding: the accounts added since the previous size, and how long it took."""

    added: int
    copy_seconds: float  # making, sealing and COPYing the rows
    vacuum_seconds: float  # VACUUM ANALYZE afterwards
    workers: int  # processes making and copying batches at once

    @property
    def seconds(self) -> float:
        return self.copy_seconds + self.vacuum_seconds


@dataclass(frozen=True)
class SizeFigures:
    """One growth step: its seeding, fresh tokens and the keep-alive query's plans at that size."""

    seeding: Seeding
    c64: ByApp
    c4: ByApp | None  # at the largest size only
    peak_rss_kb: dict[str, int]  # by app, under the 64-client load
    sweep_plans: list[SweepPlan]  # as configured and with a busy window; none with --fresh-only


@dataclass(frozen=True)
class FreshTokens:
    """Phases 1 and 4: the fresh-token path at each size, next to the floor and the baseline; and the
    keep-alive's candidate query at each size (phase 2's plans)."""

    by_size: dict[int, SizeFigures]
    account_ids: list[str] = field(repr=False)  # every seeded account, for the storm's warm-up
    sweep_query: str = ""  # as `sweep_once` sends it; empty with --fresh-only

    @property
    def sizes(self) -> list[int]:
        return list(self.by_size)

    @property
    def largest(self) -> SizeFigures:
        return self.by_size[self.sizes[-1]]


@dataclass(frozen=True)
class OwnerListing:
    """`GET /accounts`, first page, as each owner in turn: `ours` and `floor`."""

    accounts: int  # in the database while it ran (the growth step it ran at)
    c4: ByApp
    c64: ByApp
    items_per_page: int
    peak_rss_kb: int


@dataclass(frozen=True)
class Scale:
    """Phase 2: the owner listing and the worker's memory (the keep-alive query's plans are taken at
    each growth step: `SizeFigures.sweep_plans`)."""

    listing: OwnerListing
    rss_after_load_kb: int
    rss_high_water_kb: int


@dataclass(frozen=True)
class StormRun:
    outcome: StormResult
    cpu_seconds: dict[str, float]  # by process, over the storm


@dataclass(frozen=True)
class Storm:
    """Phase 3: the refresh storm over two processes (and over two `before` processes if measured)."""

    accounts: int
    requests: int
    runs: list[StormRun]
    before_runs: list[StormRun] | None
    service_log_errors: int  # error-level lines in the logs of our processes, over the whole run


def _storm_runs_json(runs: list[StormRun]) -> list[dict[str, Any]]:
    return [{**asdict(run.outcome), "cpu_seconds": run.cpu_seconds} for run in runs]


@dataclass(frozen=True)
class Results:
    machine: dict[str, str]
    options: dict[str, Any]
    idle_rss_kb: dict[str, int]
    loadgen: Loadgen | None = None  # not with --storm-only
    fresh: FreshTokens | None = None  # not with --storm-only
    scale: Scale | None = None  # not with --storm-only, --fresh-only or --growth-only
    storm: Storm | None = None  # not with --fresh-only or --growth-only
    date: str = ""
    wall_seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"machine": self.machine, "options": self.options}
        if self.loadgen is not None:
            found["loadgen"] = asdict(self.loadgen)
        found["idle_rss_kb"] = self.idle_rss_kb
        if self.fresh is not None:
            found["fresh_token"] = {
                str(size): {"c64": _series_json(figures.c64)}
                | ({"c4": _series_json(figures.c4)} if figures.c4 is not None else {})
                for size, figures in self.fresh.by_size.items()
            }
            found["peak_rss_kb"] = {str(size): f.peak_rss_kb for size, f in self.fresh.by_size.items()}
            found["seeding"] = {
                str(size): {**asdict(f.seeding), "seconds": f.seeding.seconds}
                for size, f in self.fresh.by_size.items()
            }
            if self.fresh.sweep_query:
                found["sweep_query"] = self.fresh.sweep_query
                found["sweep_plans"] = {
                    str(size): [asdict(plan) for plan in f.sweep_plans]
                    for size, f in self.fresh.by_size.items()
                }
        if self.scale is not None:
            listing = self.scale.listing
            found["owner_list"] = {
                "accounts": listing.accounts,
                "c4": _series_json(listing.c4),
                "c64": _series_json(listing.c64),
                "items_per_page": listing.items_per_page,
            }
            found["owner_list_peak_rss_kb"] = listing.peak_rss_kb
            found["worker_rss_after_load_kb"] = self.scale.rss_after_load_kb
            found["worker_rss_high_water_kb"] = self.scale.rss_high_water_kb
        if self.storm is not None:
            storm: dict[str, Any] = {
                "accounts": self.storm.accounts,
                "requests": self.storm.requests,
                "runs": _storm_runs_json(self.storm.runs),
            }
            if self.storm.before_runs is not None:
                storm["before_runs"] = _storm_runs_json(self.storm.before_runs)
            found["storm"] = storm
            found["service_log_errors"] = self.storm.service_log_errors
        found["date"] = self.date
        found["wall_seconds"] = self.wall_seconds
        return found
