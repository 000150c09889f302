"""What ships to production passes its linters and says what docs/deploy.md promises. All offline.

Each linter is also shown a broken copy, so that a linter that checks nothing would fail here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from allegro_link.settings import Settings
from tests.deploy.tools import DEPLOY, KUBERNETES, REPO, kubernetes_objects, load_one

BIN = Path(sys.executable).parent
KUBERNETES_VERSION = "1.33.0"
COMPOSE = DEPLOY / "compose.yaml"
COMPOSE_SCHEMA = DEPLOY / "schemas" / "compose-spec.json"
DOCKERFILE = REPO / "Dockerfile"
# uvicorn's graceful shutdown in allegro_link/server.py.
GRACEFUL_SHUTDOWN_SECONDS = 20


def _run(*command: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - the linters from this venv
        [str(part) for part in command], capture_output=True, text=True, timeout=120, check=False
    )


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return _run(BIN / "hadolint", "--no-color", "--config", DEPLOY / "hadolint.yaml", path)


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    return _run(BIN / "check-jsonschema", "--schemafile", COMPOSE_SCHEMA, path)


def kubernetes_validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    return _run(BIN / "kubernetes-validate", "--strict", "-k", KUBERNETES_VERSION, *paths)


def _container(pod_spec: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod_spec["containers"]
    assert len(containers) == 1
    return containers[0]


class TestDockerfile:
    def test_hadolint_finds_nothing(self) -> None:
        result = hadolint(DOCKERFILE)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_hadolint_rejects_an_unpinned_dockerfile(self, tmp_path: Path) -> None:
        broken = tmp_path / "Dockerfile"
        broken.write_text("FROM python:3.11-slim\nRUN pip install --no-cache-dir requests\n")
        result = hadolint(broken)
        assert result.returncode != 0
        assert "DL3013" in result.stdout

    def test_every_stage_starts_from_an_exact_version_tag(self) -> None:
        bases = re.findall(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), flags=re.MULTILINE)
        assert len(bases) >= 2, "a build stage and a runtime stage"
        for base in bases:
            assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base), base

    def test_everything_pip_installs_comes_from_a_hashed_lock_or_the_wheel_just_built(self) -> None:
        text = DOCKERFILE.read_text().replace("\\\n", " ")
        installs = re.findall(r"pip (?:--python \S+ )?install ([^&\n]+)", text)
        assert installs
        for arguments in installs:
            if "-r requirements/" in arguments:
                assert "--require-hashes" in arguments, arguments
            else:
                assert arguments.split()[-1] == "/dist/allegro_link-*.whl", arguments
                assert "--no-deps" in arguments

    def test_the_final_stage_runs_serve_as_a_non_root_user_and_copies_only_the_venv(self) -> None:
        final = DOCKERFILE.read_text().rsplit("\nFROM ", 1)[1]
        assert re.search(r"^USER 10001:10001$", final, flags=re.MULTILINE)
        assert re.findall(r"^COPY .*$", final, flags=re.MULTILINE) == [
            "COPY --from=build /opt/allegro-link /opt/allegro-link"
        ]
        assert 'CMD ["allegro-link", "serve", "--host", "0.0.0.0", "--port", "8000"]' in final
        assert "apt-get" not in final and "gcc" not in final

    def test_the_build_context_leaves_out_local_state_and_tests(self) -> None:
        ignored = set((REPO / ".dockerignore").read_text().split())
        assert {".venv", ".git", "tests", ".env", ".allegro-link"} <= ignored


class TestCompose:
    def test_matches_the_compose_specification(self) -> None:
        result = check_compose(COMPOSE)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_the_schema_rejects_a_misspelt_key(self, tmp_path: Path) -> None:
        compose = yaml.safe_load(COMPOSE.read_text())
        compose["services"]["allegro-link"]["helthcheck"] = compose["services"]["allegro-link"].pop(
            "healthcheck"
        )
        broken = tmp_path / "compose.yaml"
        broken.write_text(yaml.safe_dump(compose))
        assert check_compose(broken).returncode != 0

    def test_the_service_waits_for_migrations_which_wait_for_postgres(self) -> None:
        services = load_one(COMPOSE)["services"]
        assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
        assert services["allegro-link"]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"}
        }
        for name in ("postgres", "allegro-link"):
            assert services[name]["healthcheck"]["test"][0] == "CMD"
        assert "/readyz" in " ".join(services["allegro-link"]["healthcheck"]["test"])

    def test_the_demo_profile_adds_the_fake_allegro_with_its_test_controls(self) -> None:
        services = load_one(COMPOSE)["services"]
        demo = [name for name, service in services.items() if "demo" in service.get("profiles", [])]
        assert demo == ["fake-allegro"]
        command = services["fake-allegro"]["command"]
        assert command[:2] == ["allegro-link", "fake-allegro"]
        assert "--controls" in command
        assert all("profiles" not in services[name] for name in ("postgres", "migrate", "allegro-link"))

    def test_containers_are_read_only_without_capabilities(self) -> None:
        services = load_one(COMPOSE)["services"]
        for name in ("migrate", "allegro-link", "fake-allegro"):
            assert services[name]["read_only"] is True
            assert services[name]["cap_drop"] == ["ALL"]


class TestKubernetes:
    def test_every_manifest_is_valid_for_the_kubernetes_version(self) -> None:
        manifests = sorted(KUBERNETES.glob("*.yaml"))
        assert len(manifests) >= 7
        result = kubernetes_validate(*manifests)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_the_validator_rejects_an_unknown_field(self, tmp_path: Path) -> None:
        deployment = load_one(KUBERNETES / "deployment.yaml")
        deployment["spec"]["replica"] = 2
        broken = tmp_path / "deployment.yaml"
        broken.write_text(yaml.safe_dump(deployment))
        assert kubernetes_validate(broken).returncode != 0

    def test_the_deployment_runs_two_or_more_probed_replicas(self) -> None:
        objects = kubernetes_objects()
        deployment = objects["Deployment"]
        assert deployment["spec"]["replicas"] >= 2
        assert objects["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= 2
        assert objects["PodDisruptionBudget"]["spec"]["minAvailable"] >= 1
        container = _container(deployment["spec"]["template"]["spec"])
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
        assert "memory" in container["resources"]["limits"]

    def test_termination_outlasts_the_drain_and_a_refresh_deadline(self) -> None:
        pod = kubernetes_objects()["Deployment"]["spec"]["template"]["spec"]
        pre_stop = _container(pod)["lifecycle"]["preStop"]["sleep"]["seconds"]
        refresh_deadline = Settings.model_fields["token_refresh_deadline_seconds"].default
        assert refresh_deadline < GRACEFUL_SHUTDOWN_SECONDS
        assert pod["terminationGracePeriodSeconds"] > pre_stop + GRACEFUL_SHUTDOWN_SECONDS

    @pytest.mark.parametrize("kind", ["Deployment", "Job"])
    def test_pods_run_locked_down(self, kind: str) -> None:
        pod = kubernetes_objects()[kind]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        context = _container(pod)["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]

    def test_the_secret_template_holds_only_placeholders(self) -> None:
        secret = kubernetes_objects()["Secret"]
        assert "data" not in secret
        for name, value in secret["stringData"].items():
            assert "CHANGE-ME" in value, name

    def test_the_service_selects_the_deployment_pods(self) -> None:
        objects = kubernetes_objects()
        labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
        for kind in ("Service", "PodDisruptionBudget"):
            spec = objects[kind]["spec"]
            selector = spec["selector"] if kind == "Service" else spec["selector"]["matchLabels"]
            assert selector.items() <= labels.items(), kind
        assert objects["Deployment"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
