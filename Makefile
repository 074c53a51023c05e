# FlashOptim tissue-mechanics study. `make help` lists the targets.
# Two commands on a fresh machine: `make mvt` (the main job) and `make test` (the tests).
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# SCALE: smoke | pilot | protocol. Empty = protocol when a CUDA device is visible, else smoke.
SCALE ?=
DATA ?= smoke
SWEEP_DIR ?=
PYTEST_ARGS ?=
# TEST_WORKERS: pytest-xdist processes for make test / test-slow / test-all (auto = one per physical
# core). --dist loadfile keeps each test file on one worker, so a module-scoped fixture (a real run,
# a dataset, a 2-process FSDP2 run) is built once; every test writes under its worker's own tmp dir.
# TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= auto
XDIST := -n $(TEST_WORKERS) --dist loadfile
# PRETRAINED: the model's weights for mvt/sweep (Hugging Face directory or .gguf file); MODEL: `make model`.
PRETRAINED ?=
MODEL ?= smollm2-135m
RUN_OVERRIDES := $(if $(PRETRAINED),'sweep.run_overrides=["model.pretrained_path=$(PRETRAINED)"]')

.PHONY: help env model mvt sweep sweep-dry data report test test-slow test-all test-gpu test-slurm lint typecheck ci format wheels clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  variables: SCALE=smoke|pilot|protocol (mvt), PRETRAINED=<hf dir or .gguf> (mvt, sweep), DATA=smoke|pilot|protocol (data), MODEL=<preset> (model), SWEEP_DIR=... (report)"

$(STAMP): pyproject.toml uv.lock scripts/bootstrap_env.sh
	@scripts/bootstrap_env.sh
	@touch $@

env: $(STAMP) ## create .venv and install the locked environment (done by every target that needs it)

mvt: $(STAMP) ## the minimal viable test: data, 9 runs (3 arms x 3 seeds), analysis, verdict
	@scale="$(SCALE)"; \
	if [ -z "$$scale" ]; then \
	  if $(PY) -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then \
	    scale=protocol; echo "mvt: CUDA device found -> scale=protocol (set SCALE=pilot for a short 1B run)"; \
	  else \
	    scale=smoke; echo "mvt: no CUDA device -> scale=smoke: exercises the pipeline, is no evidence about the hypothesis"; \
	  fi; \
	fi; \
	$(PY) -m experiments.sweep sweep=mvt scale=$$scale $(RUN_OVERRIDES)

sweep: $(STAMP) ## the full validation grid (python -m experiments.sweep)
	$(PY) -m experiments.sweep sweep=full $(if $(SCALE),scale=$(SCALE)) $(RUN_OVERRIDES)

sweep-dry: $(STAMP) ## list the full grid's runs, predicted memory and GPU-hours, run nothing
	$(PY) -m experiments.sweep sweep=full sweep.dry_run=true $(if $(SCALE),scale=$(SCALE))

model: $(STAMP) ## fetch + convert a preset's pretrained weights ahead of time (MODEL=smollm2-135m)
	$(PY) -m experiments.pretrained model=$(MODEL)

data: $(STAMP) ## generate a dataset (DATA=smoke|pilot|protocol)
	$(PY) -m datagen data=$(DATA)

report: $(STAMP) ## analyse a sweep (SWEEP_DIR=results/sweeps/<id>; default: the newest)
	@dir="$(SWEEP_DIR)"; [ -n "$$dir" ] || dir=$$(ls -td results/sweeps/*/ 2>/dev/null | head -1); \
	[ -n "$$dir" ] || { echo "report: no sweep under results/sweeps; run make mvt first"; exit 2; }; \
	$(PY) -m analysis "$$dir"

test: $(STAMP) ## the tests (no slow, no GPU); what CI runs first
	@scripts/ensure_chromium.sh
	$(VENV)/bin/pytest -q $(XDIST) $(PYTEST_ARGS)

test-slow: $(STAMP) ## the slow tests, not SLURM, not GPU (not yet in CI)
	@scripts/ensure_chromium.sh
	$(VENV)/bin/pytest -q $(XDIST) -m "slow and not gpu" --ignore=tests/slurm $(PYTEST_ARGS)

# test-all: the CPU tests over TEST_WORKERS processes; the GPU tests (one device, memory figures)
# and the SLURM tests (one cluster per pytest session, tests/slurm/conftest.py) in one process each.
test-all: $(STAMP) ## every test including slow ones (GPU tests skip without CUDA)
	@scripts/ensure_chromium.sh
	$(VENV)/bin/pytest -q $(XDIST) -m "not gpu" --ignore=tests/slurm $(PYTEST_ARGS)
	$(VENV)/bin/pytest -q -m gpu --ignore=tests/slurm $(PYTEST_ARGS)
	$(VENV)/bin/pytest -q -m "" tests/slurm $(PYTEST_ARGS)

test-gpu: $(STAMP) ## the GPU tests (needs CUDA)
	$(VENV)/bin/pytest -q -m gpu $(PYTEST_ARGS)

test-slurm: $(STAMP) ## the SLURM tests on a local one-node cluster (root; installs slurm-wlm + munge)
	$(VENV)/bin/pytest -q -m slow tests/slurm $(PYTEST_ARGS)

lint: $(STAMP) ## ruff check + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP) ## mypy --strict on the flashoptim library (settings in pyproject.toml [tool.mypy])
	$(VENV)/bin/mypy

ci: ## what CI runs (.ci/run): lint, then typecheck, then test, then test-slurm
	@.ci/run

format: $(STAMP) ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

wheels: ## fetch wheels for a GPU box with no internet into .whl/ (see README)
	WITH_WANDB=$${WITH_WANDB:-1} scripts/fetch_wheels.sh .whl

clean: ## remove caches (keeps .venv and results/)
	rm -rf .pytest_cache .ruff_cache .mypy_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
