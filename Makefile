# One entry point for developers and CI. `make run` serves the API on SQLite,
# `make test` runs every test tier. See README.md.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
HOST ?= 127.0.0.1
PORT ?= 5000

export FLASK_APP := conduit

.PHONY: help install run test test-python test-postgres test-postman test-image restore-drill lint lock bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# requirements.lock pins the whole tree (regenerate with `make lock`).
$(VENV)/.installed: pyproject.toml requirements.lock deploy/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]' -e ./deploy
	touch $@

install: $(VENV)/.installed ## Create .venv with the pinned dependencies

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: install ## Apply migrations and serve the API on http://127.0.0.1:5000 (SQLite in instance/)
	CONDUIT_ENV=development $(BIN)/flask db upgrade
	CONDUIT_ENV=development $(BIN)/flask run --host $(HOST) --port $(PORT)

test: test-python test-postgres test-postman test-image ## Run every test tier (needs PostgreSQL, nginx, Docker: see README)

test-python: install node_modules/.installed ## Unit, API, deploy-tool, manifest and monitoring tests on SQLite
	$(BIN)/flask test

test-postgres: install ## API and migration tests against PostgreSQL at TEST_DATABASE_URL
	$(BIN)/flask test --postgres

test-postman: install node_modules/.installed ## Official Postman suite against uWSGI, on SQLite and PostgreSQL
	tests/postman/run.sh

test-image: install node_modules/.installed ## Build the image and prove it end to end with Docker, nginx and a registry
	docker/test-image.sh

# Barman Cloud runs as PostgreSQL's archive/restore command, so as the server's OS user:
# its virtualenv uses an interpreter every user can execute.
BARMAN_PYTHON ?= /usr/bin/python3
BARMAN_VENV ?= build/barman
$(BARMAN_VENV)/.installed: requirements.lock
	$(BARMAN_PYTHON) -m venv $(BARMAN_VENV)
	$(BARMAN_VENV)/bin/pip install --quiet -c requirements.lock 'barman[cloud,google]' gcp-storage-emulator
	touch $@

restore-drill: install $(BARMAN_VENV)/.installed ## Point-in-time restore from Barman Cloud backups while the API takes writes (about 4 min)
	BARMAN_VENV=$(abspath $(BARMAN_VENV)) timeout 600 $(BIN)/python -m pytest tests/drill -q

lint: install ## ruff: exits non-zero on findings
	$(BIN)/flask lint

bench: install ## Load benchmark on PostgreSQL under uWSGI; writes bench/results/
	bench/run.sh

lock: ## Re-pin every dependency into requirements.lock (pip-tools)
	$(BIN)/pip install --quiet pip-tools==7.6.2
	$(BIN)/pip-compile --quiet --extra dev --strip-extras --no-emit-index-url --no-emit-find-links \
		--extra drill --output-file requirements.lock pyproject.toml deploy/pyproject.toml

clean: ## Remove the virtualenv, caches and local databases
	rm -rf $(VENV) node_modules build reports instance .pytest_cache .ruff_cache .coverage coverage.xml
