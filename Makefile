# One entry point for developers and CI. See README.md.
#   make run          serve the API on SQLite (installs only what serving needs)
#   make test         run every test tier whose programs are present (noxfile.py)
#   make prerequisites  install the system programs every tier needs (Debian, root)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
HOST ?= 127.0.0.1
PORT ?= 5000
# Test tiers to run (names from `make tiers`), or tags of tiers; both empty run them all.
TIERS ?=
TAGS ?=

export FLASK_APP := conduit
# The virtualenv's programs first: its node (from PyPI) runs npm and the Node tools.
export PATH := $(BIN):$(PATH)
NPM ?= npm
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock
say = @echo "make: $(1)"

.PHONY: help prerequisites install run test tiers restore-drill lock bench rehearse clean

help: ## List the targets
	@grep -E '^[a-z%-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

prerequisites: ## Install the system programs every test tier needs (Debian/Ubuntu, as root)
	.ci/setup-system.sh

# requirements.lock pins the whole tree (regenerate with `make lock`). The stamps record
# what is installed: serving needs the runtime dependencies alone; tests add the rest.
$(VENV)/.runtime: pyproject.toml requirements.lock
	$(call say,creating $(VENV) with the runtime dependencies (first run: about half a minute))
	$(PYTHON) -m venv $(VENV)
	$(PIP) --editable .
	touch $@

$(VENV)/.test: $(VENV)/.runtime deploy/pyproject.toml
	$(call say,adding the test tools$(,) uWSGI$(,) Node and the deploy tool to $(VENV) (first run: a few minutes))
	$(PIP) --editable '.[server,test,bench,security]' --editable './deploy[ci]'
	touch $@

, := ,

install: $(VENV)/.test ## Create .venv with everything the tests and tools need

# npm can crash and still exit 0, so the stamp needs the tools' programs to exist.
node_modules/.installed: $(VENV)/.test package.json package-lock.json
	$(call say,installing the Node tools of package.json (newman$(,) gitlab-ci-local) with npm ci)
	$(NPM) ci --no-audit --no-fund --loglevel=error
	for tool in newman gitlab-ci-local; do \
	  test -x node_modules/.bin/$$tool || { echo "make: npm ci did not install $$tool" >&2; exit 1; }; \
	done
	touch $@

# A port something listens on is named before migrating, with the way to pick another
# (Werkzeug would say it only after, and without PORT). The next line names the database.
run: $(VENV)/.runtime ## Apply migrations and serve the API on http://$HOST:$PORT (DATABASE_URL, else SQLite in instance/)
	@if $(BIN)/python -c 'import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1)' \
	    '$(HOST)' '$(PORT)' 2>/dev/null; then \
	  echo "make: port $(PORT) on $(HOST) is in use by another program; stop it, or choose another port: make run PORT=$$(( $(PORT) + 1 ))" >&2; \
	  exit 1; \
	fi
	$(call say,applying migrations (flask db upgrade))
	CONDUIT_ENV=development $(BIN)/flask db upgrade
	$(call say,serving on http://$(HOST):$(PORT)/api (Ctrl-C stops))
	CONDUIT_ENV=development $(BIN)/flask run --host $(HOST) --port $(PORT)

test: $(VENV)/.test node_modules/.installed ## Run the test tiers (TIERS="python postgres" or TAGS=no-docker picks some)
	$(BIN)/nox --no-color --noxfile noxfile.py $(if $(strip $(TIERS)),--sessions $(TIERS)) $(if $(strip $(TAGS)),--tags $(TAGS))

test-%: ## Run one tier, e.g. make test-postman
	$(MAKE) test TIERS=$*

restore-drill: ## The drill tier: PITR with Barman Cloud, sync standby, password rotation (~5 min)
	.ci/postgres-binaries.sh >/dev/null
	$(MAKE) test TIERS=drill

# Read from noxfile.py without nox, so listing installs nothing.
tiers: ## List the test tiers
	@$(PYTHON) .ci/list-tiers.py

bench: $(VENV)/.test ## Load benchmark on PostgreSQL under uWSGI; writes bench/results/
	bench/run.sh

# The benchmark's server runs from a virtualenv of its own with what the image installs
# (docker/Dockerfile: the runtime dependencies and the server extra, pinned by
# requirements.lock), not from .venv, whose tools add libraries the app then imports
# (cryptography, through the deploy tool's google-auth, is 10 MiB in every worker).
# bench/run.sh makes it.
BENCH_SERVER_VENV := build/bench/server-venv
$(BENCH_SERVER_VENV)/.installed: pyproject.toml requirements.lock
	$(call say,creating $(BENCH_SERVER_VENV) with what the image installs (runtime dependencies$(,) uWSGI))
	rm -rf $(BENCH_SERVER_VENV)
	$(PYTHON) -m venv $(BENCH_SERVER_VENV)
	$(BENCH_SERVER_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		-c requirements.lock --editable '.[server]'
	# Bytecode at every optimisation level, compiled now as the image's build does (the
	# image runs at PYTHONOPTIMIZE=2): with PYTHONDONTWRITEBYTECODE set, each server
	# start would compile every module again, and hold more memory after it.
	$(BENCH_SERVER_VENV)/bin/python -m compileall -q -j0 -o 0 -o 1 -o 2 $(BENCH_SERVER_VENV)/lib >/dev/null
	touch $@

rehearse: ## Run .gitlab-ci.yml's jobs here in stand-in images (Docker, root: ci/rehearsal/README.md)
	$(MAKE) test TIERS=rehearsal

# Two outputs: requirements.lock pins the whole tree for every virtualenv; the image's
# docker/requirements.txt is its runtime part (the dependencies and the server extra) at
# the lock's versions (--constraint), with every wheel's SHA-256 for pip's hash-checking
# mode. tests/image/test_image_requirements.py fails when the two disagree.
lock: $(VENV)/.runtime ## Re-pin every dependency into requirements.lock and docker/requirements.txt (pip-tools)
	$(BIN)/python -m pip install --quiet pip-tools==7.6.2
	$(BIN)/pip-compile --quiet --all-extras --strip-extras --no-emit-index-url --no-emit-find-links \
		--output-file requirements.lock pyproject.toml deploy/pyproject.toml
	$(BIN)/pip-compile --quiet --extra server --strip-extras --no-emit-index-url --no-emit-find-links \
		--generate-hashes --constraint requirements.lock \
		--output-file docker/requirements.txt pyproject.toml

clean: ## Remove the virtualenv, caches and local databases
	rm -rf $(VENV) node_modules build reports instance .pytest_cache .ruff_cache .coverage coverage.xml
