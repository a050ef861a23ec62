# Two commands on a fresh machine: `make dev` (UI with sample drops flowing) and
# `make test` (the whole suite). Both create or reuse .venv and install from the lock.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_STAMP := $(VENV)/.installed-torch
DATA_DIR ?= .clinical_data
KEY_DIR ?= .clinical_keys
DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export CLINICAL_PIPELINES_DATA_DIR ?= $(CURDIR)/$(DATA_DIR)
export CLINICAL_PIPELINES_KEY_DIR ?= $(CURDIR)/$(KEY_DIR)
export GX_ANALYTICS_ENABLED := False

.PHONY: dev demo test lint lock sample browser dicom-tools bench-peers clean

$(STAMP): pyproject.toml requirements.lock requirements-models.lock requirements-eval.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --require-hashes -r requirements-models.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --require-hashes -r requirements-eval.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

# The optional PyTorch adapter's dependency (CPU build), for the tests only: `make dev` does not need it.
$(TORCH_STAMP): $(STAMP) requirements-torch.lock
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-torch.lock
	touch $(TORCH_STAMP)

# Synthetic sample drops (with a few broken ones, to show quarantine) in the landing zone.
sample: $(STAMP)
	@if [ -z "$$(ls -A $(DATA_DIR)/landing 2>/dev/null)" ]; then \
	  $(BIN)/clinical-pipelines synth --out $(DATA_DIR) --seed 7 --faults; fi

# The Dagster UI on http://127.0.0.1:3000 with the landing sensor on: drops flow by themselves.
dev: sample
	mkdir -p $(DAGSTER_HOME) && cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	DAGSTER_HOME=$(DAGSTER_HOME) $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# Headless: process the sample drops end to end, print a summary, exit.
demo: sample
	mkdir -p $(DAGSTER_HOME) && cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	DAGSTER_HOME=$(DAGSTER_HOME) $(BIN)/clinical-pipelines run --data-dir $(DATA_DIR)

# Debian's Chromium for the UI test (never a downloaded browser build).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian chromium for the UI test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "could not install chromium: the UI test will fail"; }

# Debian's dicom3tools: dciodvfy, the independent IOD validator the conformance test runs.
dicom-tools:
	@command -v dciodvfy >/dev/null 2>&1 || { \
	  echo "installing Debian dicom3tools for the conformance test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dicom3tools >/dev/null) \
	  || echo "could not install dicom3tools: the conformance test will fail"; }

test: $(STAMP) $(TORCH_STAMP) browser dicom-tools
	$(BIN)/ruff check clinical_pipelines clinical_pipelines_tests benchmarks
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check clinical_pipelines clinical_pipelines_tests benchmarks

# Regenerate requirements.lock from pyproject.toml in a scratch venv.
lock:
	rm -rf /tmp/cp-lock-venv && $(PYTHON) -m venv /tmp/cp-lock-venv
	/tmp/cp-lock-venv/bin/pip install --quiet --disable-pip-version-check ".[dev]"
	/tmp/cp-lock-venv/bin/pip freeze --exclude clinical-pipelines | grep -v '^-e ' \
	  | grep -viE '^en[-_]core[-_]web' > requirements.lock  # the model is pinned by hash in requirements-models.lock

# Peer de-identification tools, only for benchmarks/deid_speed.py --peers-python .venv-peers/bin/python
bench-peers:
	test -x .venv-peers/bin/python || $(PYTHON) -m venv .venv-peers
	.venv-peers/bin/pip install --quiet --disable-pip-version-check "dicognito==0.19.0" "deid==0.4.13" "dicom-anonymizer==2.1.0"

clean:
	rm -rf $(DATA_DIR) $(DAGSTER_HOME) .test-output
