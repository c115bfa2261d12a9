# Ironhold: `make demo` to try it, `make test` to check it. Only Python >= 3.11 is needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench install services clean help

help:
	@echo "make demo   create .venv, install, serve the bundled SmolLM2 model on 127.0.0.1:8080"
	@echo "make test   create .venv, install dev deps, start needed services, run lint + tests"
	@echo "make bench  what the trust stack costs (bare, +guard, +audit, default) beside LiteLLM"
	@echo "            and Portkey on one core, then the added latency at 1,000 requests/s"

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
	$(BIN)/ruff check src tests bench deploy
	$(BIN)/mypy

# checkov (the policy scanner the manifest tests run) has its own virtual environment: its
# many pinned dependencies stay out of the gateway's.
CHECKOV_VENV := .venv-checkov
CHECKOV      := $(CHECKOV_VENV)/bin/checkov

$(CHECKOV):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	@echo "Installing checkov into $(CHECKOV_VENV) for the manifest tests"
	$(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov==3.3.30'

test: $(STAMP) $(CHECKOV) services lint
	$(BIN)/pytest

# LiteLLM's proxy, for the side-by-side, lives in its own virtual environment.
LITELLM_VENV := .venv-litellm

$(LITELLM_VENV)/bin/litellm:
	$(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	@echo "Installing LiteLLM's proxy into $(LITELLM_VENV) for the side-by-side benchmark"
	$(LITELLM_VENV)/bin/python -m pip install --quiet 'litellm[proxy]'

# Portkey's gateway (Node.js), for the same side-by-side.
PORTKEY_DIR := .bench-peers/portkey
PORTKEY     := $(PORTKEY_DIR)/node_modules/@portkey-ai/gateway/build/start-server.js

$(PORTKEY):
	@command -v npm >/dev/null || { echo "make bench needs Node.js and npm for Portkey's gateway"; exit 1; }
	@echo "Installing Portkey's gateway into $(PORTKEY_DIR) for the side-by-side benchmark"
	mkdir -p $(PORTKEY_DIR)
	npm install --silent --no-audit --no-fund --prefix $(PORTKEY_DIR) @portkey-ai/gateway

bench: $(STAMP) $(LITELLM_VENV)/bin/litellm $(PORTKEY)
	$(BIN)/python bench/trust_stack.py --litellm $(LITELLM_VENV)/bin/litellm \
		--portkey $(PORTKEY) $(BENCH_ARGS)
	$(BIN)/python bench/overhead.py $(OVERHEAD_ARGS)

clean:
	rm -rf $(VENV) $(LITELLM_VENV) $(CHECKOV_VENV) .bench-peers .ironhold .pytest_cache .mypy_cache .ruff_cache
