# Ironhold: `make demo` to try it, `make test` to check it. Only Python >= 3.11 is needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench install services clean help

help:
	@echo "make demo   create .venv, install, serve the bundled Gemma model on 127.0.0.1:8080"
	@echo "make test   create .venv, install dev deps, start needed services, run lint + tests"
	@echo "make bench  run bench/overhead.py (added latency and max requests/s)"

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Ironhold needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when the dependencies change.
$(STAMP): pyproject.toml scripts/install.sh | $(BIN)/python
	scripts/install.sh $(BIN)
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ironhold demo

services:
	scripts/ensure-services.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

test: $(STAMP) services lint
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) .ironhold .pytest_cache .mypy_cache .ruff_cache
