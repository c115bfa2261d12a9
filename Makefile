# Ironhold: `make demo` to try it, `make test` to check it. Only Python >= 3.11 is needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench install services clean help

help:
	@echo "make demo   create .venv, install, serve the bundled SmolLM2 model on 127.0.0.1:8080"
	@echo "make test   create .venv, install dev deps, start needed services, run lint + tests"
	@echo "make bench  added latency and max requests/s: direct, Ironhold, LiteLLM's proxy"

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Ironhold needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when the dependencies change.
$(STAMP): pyproject.toml constraints.txt scripts/install.sh | $(BIN)/python
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

# LiteLLM's proxy, for the side-by-side, lives in its own virtual environment.
LITELLM_VENV := .venv-litellm

$(LITELLM_VENV)/bin/litellm:
	$(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	@echo "Installing LiteLLM's proxy into $(LITELLM_VENV) for the side-by-side benchmark"
	$(LITELLM_VENV)/bin/python -m pip install --quiet 'litellm[proxy]'

bench: $(STAMP) $(LITELLM_VENV)/bin/litellm
	$(BIN)/python bench/overhead.py --litellm $(LITELLM_VENV)/bin/litellm $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(LITELLM_VENV) .ironhold .pytest_cache .mypy_cache .ruff_cache
