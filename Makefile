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

.PHONY: demo test lint system-deps install data repro sheet train-full serve clean help

help:
	@echo "make demo   build the venv, materialise data/, run the DVC pipeline, print what was produced"
	@echo "make test   build the venv if needed and run the whole test suite"
	@echo "make lint   ruff (lint + format check) and the import layers (lint-imports)"

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

# The model `make demo` trains is recorded as this user's default (mint-iqa use-model): score, rank and
# explain find it from any folder.
DEMO_MODEL := artifacts/explainer/paper/best
demo: $(STAMP)
	@start=$$(date +%s); \
	mint-iqa data fetch && dvc repro && mint-iqa data sheet && mint-iqa use-model $(DEMO_MODEL) && mint-iqa summary; \
	rc=$$?; echo "demo finished in $$(( $$(date +%s) - start )) s (install excluded)"; exit $$rc

# REST endpoint for the champion (POST /invocations with base64 images + prompts); see README.
PORT ?= 5001
serve: $(STAMP)
	MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db} \
	mint-iqa serve --model models:/mint-iqa@champion --host 127.0.0.1 --port $(PORT)

# Two workers: the suite is mostly single-threaded process start-up (imports); on 2 cores the tests take
# 12-15 minutes instead of 38 (the pipeline tests stay together on one worker: tests/conftest.py).
TEST_WORKERS ?= 2
test: $(STAMP) system-deps
	python -m pytest -n $(TEST_WORKERS)

# Style and structure: ruff's rules and formatting, and the import layers in pyproject.toml
# ([tool.importlinter]; docs/architecture.md).
lint: $(STAMP)
	ruff check .
	ruff format --check .
	lint-imports

# The Debian packages the tests drive: chromium (headless, the HTML report test) and postgresql (its server
# binaries, /usr/lib/postgresql/*/bin/initdb, the infra stack test). Only what is missing is installed, with
# apt-get as root or through sudo; nothing is printed when both are present.
system-deps:
	@missing=(); \
	command -v chromium >/dev/null || command -v chromium-browser >/dev/null \
	  || command -v google-chrome >/dev/null || missing+=(chromium); \
	compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql); \
	(($${#missing[@]})) || exit 0; \
	if ((EUID == 0)); then sudo=; elif command -v sudo >/dev/null; then sudo=sudo; else \
	  echo "make test needs the Debian packages $${missing[*]}: run as root, or with sudo installed," \
	    "or apt-get install $${missing[*]} first" >&2; exit 1; fi; \
	command -v apt-get >/dev/null || { echo "make test needs $${missing[*]} (Debian packages);" \
	  "apt-get is not here: install them with this system's package manager" >&2; exit 1; }; \
	echo "make test: installing the Debian packages $${missing[*]} (apt-get)"; \
	apt=($$sudo env DEBIAN_FRONTEND=noninteractive apt-get -y -q); log=$$(mktemp); \
	"$${apt[@]}" install "$${missing[@]}" >"$$log" 2>&1 \
	  || { "$${apt[@]}" update >"$$log" 2>&1 && "$${apt[@]}" install "$${missing[@]}" >"$$log" 2>&1; } \
	  || { tail -n 20 "$$log" >&2; rm -f "$$log"; \
	       echo "make test: apt-get install $${missing[*]} failed (above)" >&2; exit 1; }; \
	rm -f "$$log"

# The longer run, both protocols: same recipe, FULL_EPOCHS epochs, its own folders (docs/results.md, Full runs).
# FULL_EXTRA adds overrides, e.g. FULL_EXTRA="-S train.loss.locate=0".
FULL_EPOCHS ?= 10
FULL := -S train.epochs=$(FULL_EPOCHS) -S train.out_dir=artifacts/scorer_full -S train.checkpoint_dir=artifacts/checkpoints_full $(FULL_EXTRA)
train-full: $(STAMP)
	@start=$$(date +%s); \
	mint-iqa train-scorer $(FULL) && \
	mint-iqa evaluate $(FULL) -S evaluate.metrics=metrics/scorer_full.json -S evaluate.plots=plots/scorer_full; \
	rc=$$?; echo "train-full finished in $$(( $$(date +%s) - start )) s"; exit $$rc

clean:
	rm -rf artifacts metrics/validation.json plots
