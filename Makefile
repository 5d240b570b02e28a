# Two commands on a fresh machine with Python >= 3.11 and make: `make run` and `make test`.
# uv is bootstrapped into .tools/ when it is not on PATH; dependencies come from uv.lock.

PYTHON ?= python3
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := .tools/bin/uv
endif
export UV_PYTHON_DOWNLOADS := never
RUN := $(UV) run --locked --all-extras

# The profiler behaves differently from Python 3.12 on (one process-wide profiler that sees every
# thread): its concurrency test also runs under the newest 3.12+ interpreter found here.
NEWER_PYTHON_TEST := tests/integration/test_profiling_concurrency.py
NEWER_PYTHON := $(shell for candidate in python3.13 python3.12 \
	$$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.1[23]*/bin/python3 2>/dev/null | sort -r); do \
	command -v $$candidate >/dev/null 2>&1 && $$candidate -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null \
	&& command -v $$candidate && break; done)

.PHONY: help install model run api ui simulate up secrets down logs test test-newer-python lint format clean

help:
	@echo "make run      train the model if missing, then start the product"
	@echo "make test     run the test suite"
	@echo "make lint     ruff check, ruff format --check, mypy --strict (src, logs_pipeline)"
	@echo "make ui       the Gradio UI on :7860 (next to a running API)"
	@echo "make simulate traffic for the dashboards (ARGS=\"--rate 20 --duration 60\")"
	@echo "make model    (re)train the model into model/"
	@echo "make up       the full Docker stack (down, logs)"

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# --compile-bytecode: installed packages are compiled once here, so every process starts in half
# the time (the pipeline's `once` in 0.6 s instead of 1.4 s), also where PYTHONDONTWRITEBYTECODE
# is set. Not a [tool.uv] setting: `uv run` would then re-check every file at each start.
.venv/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --locked --all-extras --compile-bytecode
	@touch $@

install: .venv/.synced

model: install
	$(RUN) python -m inferlog train

run: install
	$(RUN) python -m inferlog run

api: install
	$(RUN) python -m inferlog api

ui: install
	$(RUN) python -m inferlog.ui

# e.g. make simulate ARGS="--rate 20 --duration 60 --drift radius_mean=2"
simulate: install
	$(RUN) python -m inferlog simulate $(ARGS)

# The full stack (needs Docker with the compose plugin, and a .env with the passwords).
up: secrets
	docker compose up -d --build

# Compose's file secrets (docker-compose.yml), written from the passwords in .env to secrets/
# (src/inferlog/compose_secrets.py): no password on a command line or in an environment that
# `docker inspect` shows.
secrets: install
	$(RUN) python -m inferlog secrets

down:
	docker compose down

logs:
	docker compose logs -f --tail=100

test: install
	$(MAKE) --no-print-directory test-newer-python
	$(RUN) pytest

test-newer-python: | $(UV)
ifeq ($(NEWER_PYTHON),)
ifeq ($(CI),true)
	@echo "no Python >= 3.12 found: the profiler's 3.12+ behaviour cannot be tested" >&2; exit 1
else
	@echo "skipping the 3.12+ profiler test: no Python >= 3.12 found"
endif
else
	UV_PROJECT_ENVIRONMENT=.venv-newer $(UV) run --locked --all-extras --python $(NEWER_PYTHON) pytest $(NEWER_PYTHON_TEST)
endif

lint: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy

format: install
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

clean:
	rm -rf .venv .venv-newer .tools .pytest_cache .ruff_cache .mypy_cache
