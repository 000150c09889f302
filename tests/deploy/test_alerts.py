"""The example Prometheus alerts (deploy/prometheus/) parse, fire when they should, and use real metrics."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from allegro_link.ops.metrics import Metrics
from tests.deploy.tools import DEPLOY, load_one, require_tool

PROMTOOL = Path("/usr/bin/promtool")
RULES = DEPLOY / "prometheus" / "alerts.yaml"
RULE_TESTS = DEPLOY / "prometheus" / "alerts.test.yaml"
SEVERITIES = {"page", "ticket"}
# Series Prometheus itself adds on every scrape.
SCRAPE_SERIES = {"up"}


def _promtool(*arguments: str) -> subprocess.CompletedProcess[str]:
    tool = require_tool(PROMTOOL, "prometheus")
    return subprocess.run(  # noqa: S603 - Debian's promtool on our files
        [str(tool), *arguments], capture_output=True, text=True, timeout=120, check=False, cwd=RULES.parent
    )


def exposed_series() -> set[str]:
    """Every series name /metrics can show, with the _total/_bucket/_sum/_count suffixes."""
    metrics = Metrics()
    metrics.requests.labels("GET", "/healthz", "200").inc()
    metrics.request_seconds.labels("GET", "/healthz").observe(0.01)
    metrics.refreshes.labels("refreshed", "due").inc()
    metrics.lock_wait_seconds.observe(0.01)
    metrics.accounts_by_status.labels("active").set(1)
    exposition = generate_latest(metrics.registry).decode()
    return {sample.name for family in text_string_to_metric_families(exposition) for sample in family.samples}


def rules() -> list[dict[str, object]]:
    groups = load_one(RULES)["groups"]
    return [rule for group in groups for rule in group["rules"]]


class TestWithPromtool:
    def test_the_rules_are_valid(self) -> None:
        result = _promtool("check", "rules", RULES.name)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_the_alerts_fire_on_the_series_they_watch(self) -> None:
        result = _promtool("test", "rules", RULE_TESTS.name)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_promtool_rejects_a_broken_expression(self, tmp_path: Path) -> None:
        broken = tmp_path / "alerts.yaml"
        broken.write_text(RULES.read_text().replace("> 0.05", "> > 0.05", 1))
        result = _promtool("check", "rules", str(broken))
        assert result.returncode != 0


class TestRulesAgainstTheService:
    def test_every_metric_an_alert_reads_is_one_the_service_exposes(self) -> None:
        exposed = exposed_series() | SCRAPE_SERIES
        for rule in rules():
            expression = str(rule["expr"])
            names = set(re.findall(r"\b(allegro_link_[a-z_]+|up)\b(?=\s*[{\[)=<>!]|\s*$)", expression))
            assert names, rule["alert"]
            assert names <= exposed, (rule["alert"], names - exposed)

    def test_every_alert_has_a_severity_and_a_summary(self) -> None:
        names = []
        for rule in rules():
            names.append(rule["alert"])
            labels = rule["labels"]
            annotations = rule["annotations"]
            assert isinstance(labels, dict) and isinstance(annotations, dict)
            assert labels["severity"] in SEVERITIES, rule["alert"]
            assert annotations["summary"], rule["alert"]
        assert len(names) == len(set(names))

    @pytest.mark.parametrize("alert", ["AllegroLinkDown", "AllegroLinkClientUnauthorized"])
    def test_the_paging_alerts_are_unit_tested(self, alert: str) -> None:
        assert f"alertname: {alert}\n" in RULE_TESTS.read_text()
