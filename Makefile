# The two commands a newcomer needs: `make dev` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test lint typecheck unit openapi clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the project definition changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

dev: $(STAMP)
	$(BIN)/allegro-link dev

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff format --check src tests migrations
	$(BIN)/ruff check src tests migrations

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

openapi: $(STAMP)
	$(BIN)/allegro-link openapi > openapi/openapi.json

clean:
	rm -rf $(VENV) .allegro-link .mypy_cache .pytest_cache .ruff_cache
