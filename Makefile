# Two commands on a fresh machine with Python >= 3.11 and make: `make run` and `make test`.
# uv is bootstrapped into .tools/ when it is not on PATH; dependencies come from uv.lock.

PYTHON ?= python3
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := .tools/bin/uv
endif
export UV_PYTHON_DOWNLOADS := never
RUN := $(UV) run --locked

.PHONY: help install model run api test lint format clean

help:
	@echo "make run      train the model if missing, then start the product"
	@echo "make test     run the test suite"
	@echo "make lint     ruff check + ruff format --check"
	@echo "make model    (re)train the model into model/"

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

.venv/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --locked
	@touch $@

install: .venv/.synced

model: install
	$(RUN) python -m inferlog train

run: install
	$(RUN) python -m inferlog run

api: install
	$(RUN) python -m inferlog api

test: install
	$(RUN) pytest

lint: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .

format: install
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

clean:
	rm -rf .venv .tools .pytest_cache .ruff_cache
