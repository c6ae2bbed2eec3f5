# webhook-stream: `make run` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: help install run test test-unit chromium lint format docs docs-serve bench topics clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing webhook-stream (extras: dev, embedded broker, docs)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,embedded,docs]'
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install the project

run: $(STAMP)  ## embedded broker + worker + API on :6066 (Ctrl-C stops all)
	$(VENV)/bin/webhook-stream dev

CHROMIUM := /usr/bin/chromium

# The console tests drive Debian's Chromium (Playwright's own download is not reachable).
# As root with apt, it is installed here; otherwise make test stops with one line saying how.
chromium:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "==> installing Chromium (apt-get install chromium) for the console tests"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -qq chromium >/dev/null 2>&1 \
	      || { apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null; }; \
	  else \
	    echo "make test: the console tests need Chromium at $(CHROMIUM); as root run: apt-get install -y chromium" >&2; \
	    exit 1; \
	  fi; }

test: $(STAMP) chromium  ## the whole suite, against a real embedded broker (console tests: Chromium)
	$(PY) -m pytest

test-unit: $(STAMP)  ## the tests that need no broker or worker process (about a minute)
	$(PY) -m pytest -m "not integration" -q

lint: $(STAMP)  ## ruff, the types (mypy), the layering contracts (import-linter), unused dependencies (deptry)
	$(VENV)/bin/ruff check webhook_stream tests bench
	$(VENV)/bin/ruff format --check webhook_stream tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/deptry webhook_stream

format: $(STAMP)
	$(VENV)/bin/ruff format webhook_stream tests bench
	$(VENV)/bin/ruff check --fix webhook_stream tests bench

docs: $(STAMP)  ## build the documentation site into site/ (strict: a broken link fails)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet
	@echo "==> site/index.html"

docs-serve: $(STAMP)  ## the documentation site on http://127.0.0.1:8000, rebuilt on change
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

bench: $(STAMP)  ## throughput and latency benchmark (prints a table); ARGS=--quick etc.
	$(PY) -m bench $(ARGS)

topics: $(STAMP)  ## print the topic plan and create missing topics
	$(VENV)/bin/webhook-stream topics

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache site
