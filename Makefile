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
# Every install of dependencies is hash-checked: a file of requirements/ (or the image's
# docker/requirements.txt), which `make lock` writes from requirements.lock with every
# file's SHA-256, installed with --require-hashes (pip refuses a file whose digest is not
# listed, and any dependency the file lacks). The projects themselves come after, with
# --no-deps --no-build-isolation: in hash-checking mode pip refuses a local directory
# and an editable (pip 26.3, src/pip/_internal/operations/prepare.py:
# DirectoryUrlHashUnsupported, "no single file to hash"), and build isolation would
# fetch the build backend without hashes (build_env/installer.py: require_hashes=False,
# "TODO: hash-checking should be extended to build deps"); so setuptools comes in each
# of those files and builds from the venv. (A constraints file's hashes are not
# checked: pypa/pip#8792, #12956.)
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
HASHED := $(PIP) --require-hashes --requirement
LOCAL := $(PIP) --no-deps --no-build-isolation
say = @echo "make: $(1)"

.PHONY: help prerequisites install run test tiers restore-drill lock bench rehearse clean

help: ## List the targets
	@grep -E '^[a-z%-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

prerequisites: ## Install the system programs every test tier needs (Debian/Ubuntu, as root)
	.ci/setup-system.sh

# requirements.lock pins the whole tree (regenerate with `make lock`). The stamps record
# what is installed: serving needs the runtime dependencies alone (requirements/run.txt);
# tests add the rest (requirements/dev.txt: the extras server, test, bench and security,
# and the deploy tool with its ci extra).
$(VENV)/.runtime: pyproject.toml requirements/run.txt
	$(call say,creating $(VENV) with the runtime dependencies (first run: about half a minute))
	$(PYTHON) -m venv $(VENV)
	$(HASHED) requirements/run.txt
	$(LOCAL) --editable .
	touch $@

$(VENV)/.test: $(VENV)/.runtime deploy/pyproject.toml requirements/dev.txt
	$(call say,adding the test tools$(,) uWSGI$(,) Node and the deploy tool to $(VENV) (first run: a few minutes))
	$(HASHED) requirements/dev.txt
	$(LOCAL) --editable ./deploy
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
$(BENCH_SERVER_VENV)/.installed: pyproject.toml docker/requirements.txt
	$(call say,creating $(BENCH_SERVER_VENV) with what the image installs (runtime dependencies$(,) uWSGI))
	rm -rf $(BENCH_SERVER_VENV)
	$(PYTHON) -m venv $(BENCH_SERVER_VENV)
	$(BENCH_SERVER_VENV)/bin/$(subst $(BIN)/,,$(HASHED)) docker/requirements.txt
	$(BENCH_SERVER_VENV)/bin/$(subst $(BIN)/,,$(LOCAL)) --editable .
	# Bytecode at every optimisation level, compiled now as the image's build does (the
	# image runs at PYTHONOPTIMIZE=2): with PYTHONDONTWRITEBYTECODE set, each server
	# start would compile every module again, and hold more memory after it.
	$(BENCH_SERVER_VENV)/bin/python -m compileall -q -j0 -o 0 -o 1 -o 2 $(BENCH_SERVER_VENV)/lib >/dev/null
	touch $@

rehearse: ## Run .gitlab-ci.yml's jobs here in stand-in images (Docker, root: ci/rehearsal/README.md)
	$(MAKE) test TIERS=rehearsal

# requirements.lock pins the whole tree, the build backend and pip included (--allow-unsafe),
# for every virtualenv; it is what pip-audit and the SBOM read. Each hash-checked file is
# one install's part of it (--constraint: the lock's versions) with every file's SHA-256
# (--generate-hashes), compiled from its sources below; the requirements/*.in name what a
# job installs without the app. tests/test_requirements.py fails when a file drifts from
# the lock or from its sources, or has an entry without a hash. The files compile in
# parallel (each looks up every pinned package's hashes on the index: minutes).
#   who installs it                           file                       sources
#   docker/Dockerfile, the benchmark server   docker/requirements.txt    the app, server extra
#   make run ($(VENV)/.runtime)               requirements/run.txt       the app
#   make install ($(VENV)/.test)              requirements/dev.txt       the app's server, test, bench,
#                                                                         security extras; deploy[ci]
#   .gitlab-ci.yml lint / security            requirements/lint.txt, security.txt
#   .gitlab-ci.yml pack (the deploy tool)     requirements/pack.txt      deploy, pip-audit
#   .gitlab-ci.yml cluster, deploy, review    requirements/deploy.txt    deploy[ci]
#   .gitlab-ci.yml sign                       requirements/sign.txt      deploy[ci,sign]
#   noxfile.py drill (build/barman)           requirements/build.txt,    pip, setuptools: first, to
#                                             drill.txt                  build psycopg2 (no wheel); the
#                                                                        drill extra
#   .ci/postgres-binaries.sh                  requirements/postgres.txt  the postgres extra
# Those that build a project add requirements/build.in (pip and setuptools).
BUILD_IN := requirements/build.in
sources.docker/requirements.txt := --extra server pyproject.toml $(BUILD_IN)
sources.requirements/run.txt := pyproject.toml $(BUILD_IN)
sources.requirements/dev.txt := --extra server --extra test --extra bench --extra security \
	--extra ci pyproject.toml deploy/pyproject.toml $(BUILD_IN)
sources.requirements/lint.txt := requirements/lint.in
sources.requirements/security.txt := requirements/security.in
sources.requirements/pack.txt := deploy/pyproject.toml requirements/pack.in $(BUILD_IN)
sources.requirements/deploy.txt := --extra ci deploy/pyproject.toml $(BUILD_IN)
sources.requirements/sign.txt := --extra ci --extra sign deploy/pyproject.toml $(BUILD_IN)
sources.requirements/build.txt := $(BUILD_IN)
sources.requirements/drill.txt := requirements/drill.in $(BUILD_IN)
sources.requirements/postgres.txt := requirements/postgres.in
REQUIREMENTS := $(sort $(patsubst sources.%,%,$(filter sources.%,$(.VARIABLES))))
COMPILE := $(BIN)/pip-compile --quiet --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links

lock: $(VENV)/.test ## Re-pin every dependency into requirements.lock, then its hash-checked parts (pip-tools)
	$(call say,pinning requirements.lock)
	$(COMPILE) --all-extras --all-build-deps --output-file requirements.lock pyproject.toml deploy/pyproject.toml
	$(call say,writing $(REQUIREMENTS) with hashes (a few minutes))
	pids=(); $(foreach file,$(REQUIREMENTS),\
	  $(COMPILE) --generate-hashes --constraint requirements.lock --output-file $(file) $(sources.$(file)) & pids+=($$!);) \
	for pid in "$${pids[@]}"; do wait "$$pid"; done

clean: ## Remove the virtualenv, caches and local databases
	rm -rf $(VENV) node_modules build reports instance .pytest_cache .ruff_cache .coverage coverage.xml
