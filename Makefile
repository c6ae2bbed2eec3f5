# webhook-stream: `make run` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: help install run test lint format bench topics clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing webhook-stream with dev extras"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install the project

run: $(STAMP)  ## embedded broker + worker + API on :6066 (Ctrl-C stops all)
	$(VENV)/bin/webhook-stream dev

CHROMIUM := /usr/bin/chromium

test: $(STAMP)  ## the whole suite, against a real embedded broker (console tests: Chromium)
	@test -x $(CHROMIUM) || printf '%s\n' \
	  "make test: $(CHROMIUM) is missing, so the console tests (tests/ui) will FAIL." \
	  "  Install it (Debian/Ubuntu, as root):  apt-get install -y chromium" >&2
	$(PY) -m pytest

lint: $(STAMP)  ## ruff, the layering contracts (import-linter) and unused dependencies (deptry)
	$(VENV)/bin/ruff check webhook_stream tests bench
	$(VENV)/bin/ruff format --check webhook_stream tests bench
	$(VENV)/bin/lint-imports
	$(VENV)/bin/deptry webhook_stream

format: $(STAMP)
	$(VENV)/bin/ruff format webhook_stream tests bench
	$(VENV)/bin/ruff check --fix webhook_stream tests bench

bench: $(STAMP)  ## throughput and latency benchmark (prints a table); ARGS=--quick etc.
	$(PY) -m bench $(ARGS)

topics: $(STAMP)  ## print the topic plan and create missing topics
	$(VENV)/bin/webhook-stream topics

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
