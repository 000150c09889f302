# The two commands a newcomer needs: `make dev` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test lint typecheck unit test-client openapi docs bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the project definition changes. The client library (clients/python) is its own
# distribution; it goes into the same venv, editable, so that `make test` lints, type-checks and tests it.
$(STAMP): pyproject.toml clients/python/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e clients/python
	touch $(STAMP)

dev: $(STAMP)
	$(BIN)/allegro-link dev

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff format --check src tests migrations clients
	$(BIN)/ruff check src tests migrations clients

typecheck: $(STAMP)
	$(BIN)/mypy

# The suite mostly waits on PostgreSQL, sockets and subprocesses, so four workers pay off even on two
# cores (about 70 s instead of 160 s). Each worker migrates its own database; `PYTEST_ARGS=` runs serially.
PYTEST_ARGS ?= -n 4
unit: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

# The client library's own suite (tests/client, also part of `make test`): its lint, its types as a
# package of its own (clients/python/pyproject.toml), and its tests against the service and the fake.
test-client: $(STAMP)
	$(BIN)/ruff format --check clients tests/client
	$(BIN)/ruff check clients tests/client
	cd clients/python && ../../$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS) tests/client

# Not part of `make test`: about 15 minutes of load on this machine. Needs PostgreSQL at 127.0.0.1:5432
# (or BENCH_PG_URL) and wrk (installed with apt-get when missing). Writes docs/performance.md.
bench: $(STAMP)
	BENCH_VIA_MAKE=1 $(BIN)/python bench/run.py $(BENCH_ARGS)

openapi: $(STAMP)
	$(BIN)/allegro-link openapi > openapi/openapi.json

# docs/configuration.md is generated from the settings classes; a test fails when it is out of date.
docs: $(STAMP)
	$(BIN)/python -m allegro_link.configdoc > docs/configuration.md

clean:
	rm -rf $(VENV) .allegro-link .mypy_cache .pytest_cache .ruff_cache
