# safecompress: every set-up step lives here. `make demo` and `make test` work on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The default test set: everything except end-to-end runs marked slow.
PYTEST_ARGS ?= -m "not slow"

.PHONY: install sysdeps demo test test-all bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned to the CPU wheel on local disk (see pyproject.toml); pip, not uv, finds it.
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

# Debian packages the data loaders and browser tests need (installed as root, only when missing).
sysdeps:
	@.ci/system-deps.sh

demo: install sysdeps
	$(VENV)/bin/safecompress run configs/quickstart.yaml --out runs/demo

test: install sysdeps
	$(PY) -m pytest $(PYTEST_ARGS)

test-all: install sysdeps
	$(PY) -m pytest

bench: install sysdeps
	$(PY) -m benchmarks.run

clean:
	rm -rf runs .pytest_cache tests/_artifacts
