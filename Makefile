# The two commands a newcomer needs: `make dev` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test lint typecheck unit test-client deploy-check hadolint compose-check k8s-check lock lock-upgrade openapi docs bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the project definition or the locks change. Everything comes from the hashed
# locks in requirements/ (pip and hatchling from build.txt, the rest from dev.txt); the project itself
# goes in last without dependencies, so nothing unpinned is ever resolved here. The client library
# (clients/python) is its own distribution, needing only httpx (already locked); it goes into the same
# venv, editable, so that `make test` lints, type-checks and tests it.
$(STAMP): pyproject.toml clients/python/pyproject.toml requirements/build.txt requirements/dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/build.txt
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e . -e clients/python
	touch $(STAMP)

dev: $(STAMP)
	$(BIN)/allegro-link dev

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff format --check src tests migrations clients bench scripts
	$(BIN)/ruff check src tests migrations clients bench scripts

typecheck: $(STAMP)
	$(BIN)/mypy

# The suite mostly waits on PostgreSQL, sockets and subprocesses, so four workers pay off even on two
# cores (about 70 s instead of 160 s). Each worker migrates its own database; `PYTEST_ARGS=` runs serially.
# loadgroup: tests marked xdist_group (the heavy ones in tests/deploy) share one worker.
PYTEST_ARGS ?= -n 4 --dist loadgroup
unit: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

# The client library's own suite (tests/client, also part of `make test`): its lint, its types as a
# package of its own (clients/python/pyproject.toml), and its tests against the service and the fake.
test-client: $(STAMP)
	$(BIN)/ruff format --check clients tests/client
	$(BIN)/ruff check clients tests/client
	cd clients/python && ../../$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS) tests/client

# Static checks of what ships: the Dockerfile (hadolint), compose against the vendored Compose
# specification schema, the Kubernetes manifests against the schemas kubernetes-validate carries.
# All offline. `make test` runs the same checks, and more, in tests/deploy/ (with broken copies too).
KUBERNETES_VERSION := 1.33.0
deploy-check: hadolint compose-check k8s-check

hadolint: $(STAMP)
	$(BIN)/hadolint --config deploy/hadolint.yaml Dockerfile

compose-check: $(STAMP)
	$(BIN)/check-jsonschema --schemafile deploy/schemas/compose-spec.json deploy/compose.yaml

k8s-check: $(STAMP)
	$(BIN)/kubernetes-validate --strict --kubernetes-version $(KUBERNETES_VERSION) deploy/kubernetes/*.yaml

# Refresh the hashed locks from pyproject.toml and requirements/*.in, keeping every pin that still fits
# (after a merge that added a dependency, this adds just that one and what it needs). `make lock-upgrade`
# moves everything to the newest allowed versions. Needs only the registry and .venv's Python; the lock
# tool itself is pinned in requirements/lock.txt. Commit requirements/*.txt afterwards.
UV := $(BIN)/uv
LOCK_ARGS ?=
UV_COMPILE = $(UV) pip compile --quiet --generate-hashes --universal --python-version 3.11 \
	--custom-compile-command 'make lock' $(LOCK_ARGS)
$(UV): requirements/lock.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/lock.txt
	touch $(UV)

lock: $(UV)
	$(UV_COMPILE) requirements/lock.in -o requirements/lock.txt
	$(UV_COMPILE) requirements/build.in -o requirements/build.txt
	$(UV_COMPILE) pyproject.toml -o requirements/runtime.txt
	$(UV_COMPILE) pyproject.toml --extra dev -c requirements/runtime.txt -c requirements/build.txt \
		-o requirements/dev.txt

lock-upgrade:
	$(MAKE) lock LOCK_ARGS=--upgrade

# Not part of `make test`: about 15-20 minutes of load on this machine (2-4 of them seeding 1,000,000
# accounts). Needs PostgreSQL at 127.0.0.1:5432 (or BENCH_PG_URL) and wrk (installed with apt-get when
# missing). Writes docs/performance.md.
bench: $(STAMP)
	BENCH_VIA_MAKE=1 $(BIN)/python bench/run.py $(BENCH_ARGS)

openapi: $(STAMP)
	$(BIN)/allegro-link openapi > openapi/openapi.json

# docs/configuration.md is generated from the settings classes; a test fails when it is out of date.
docs: $(STAMP)
	$(BIN)/python -m allegro_link.configdoc > docs/configuration.md

clean:
	rm -rf $(VENV) .allegro-link .mypy_cache .pytest_cache .ruff_cache
