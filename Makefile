# Two commands on a fresh clone: `make demo` (build everything) and `make test` (run every test).
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed

# Everything runs from the venv; services stay quiet and offline.
export PATH := $(BIN):$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test install data repro sheet clean help

help:
	@echo "make demo   build the venv, materialise data/, run the DVC pipeline, print what was produced"
	@echo "make test   build the venv if needed and run the whole test suite"

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -q -c requirements.lock -e ".[dev]"
	@touch $@

install: $(STAMP)

data: $(STAMP)
	mint-iqa data fetch

repro: data
	dvc repro

sheet: $(STAMP)
	mint-iqa data sheet

demo: $(STAMP)
	@start=$$(date +%s); \
	mint-iqa data fetch && dvc repro && mint-iqa data sheet && mint-iqa summary; \
	rc=$$?; echo "demo finished in $$(( $$(date +%s) - start )) s (install excluded)"; exit $$rc

test: $(STAMP)
	python -m pytest

clean:
	rm -rf artifacts metrics/validation.json plots
