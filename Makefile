# The README's two commands: `make demo` runs ACCI, `make test` checks it. Each does all set-up
# from a fresh clone (a .venv with the project and its dev tools) and checks the services first.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install services tools test lint demo bench chaos clean

$(STAMP): pyproject.toml examples/invoicing/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	# The example application (examples/invoicing): the tests run it through the whole stack.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e examples/invoicing
	@touch $(STAMP)

install: $(STAMP)

services: $(STAMP)
	@$(BIN)/acci check-services

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# promtool (Debian's prometheus package) checks the worker's metrics and the Prometheus config
# in the tests: installed when missing (about 10 s), else the tests fail saying so.
tools:
	@command -v promtool >/dev/null 2>&1 \
	  || apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1 \
	  || { apt-get update >/dev/null 2>&1 \
	       && apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1; } \
	  || echo "make: promtool is missing and Debian's prometheus package did not install;" \
	       "the tests that need it will fail" >&2

test: services lint tools
	$(BIN)/pytest

chaos: services
	$(BIN)/pytest -m chaos

demo: services
	$(BIN)/acci dev --demo

bench: services
	$(BIN)/python bench/eventstore_bench.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
