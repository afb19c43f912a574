# nbops: every front door is a target here; CI calls the same ones (`.ci/run` -> `make test`).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
ENV_FILE ?= env.yaml
# make run DATA=path/to/table.csv TARGET=column  (any CSV or Parquet with a binary, multiclass or numeric target)
DATA ?=
TARGET ?=
ARGS ?=

export PLOOMBER_STATS_ENABLED := false
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The installed packages are byte-compiled at install time; this keeps imports fast even where the
# environment sets PYTHONDONTWRITEBYTECODE.
# make run ENGINE=dask: train with lightgbm.dask, score and profile with dask.dataframe (local cluster
# unless dask_scheduler in the env file names one)
ENGINE ?=
RUN_FLAGS := $(if $(DATA),--set data=$(DATA)) $(if $(TARGET),--set target=$(TARGET)) $(if $(ENGINE),--set engine=$(ENGINE))

$(VENV)/.installed: requirements.lock pyproject.toml requirements/overrides.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --python $(BIN)/python --compile-bytecode --quiet -r requirements.lock --override requirements/overrides.txt
	$(BIN)/uv pip install --python $(BIN)/python --compile-bytecode --quiet --no-deps -e .
	@touch $@

.PHONY: install
install: $(VENV)/.installed git-filter ## Create .venv with the pinned dependencies (from requirements.lock)

# nbstripout as a git filter and diff driver for *.ipynb (.gitattributes), with the pre-commit hook's
# flags: notebook outputs JupyterLab saved never reach `git diff` or a commit; cells with metadata
# keep_output keep theirs (nbval checks them). The path is relative because git runs filters from the
# top of the work tree: every clone and worktree uses its own .venv. Idempotent; outside git, nothing.
NBSTRIPOUT := $(BIN)/nbstripout --keep-count --extra-keys 'metadata.widgets cell.metadata.execution'

.PHONY: git-filter
git-filter: ## Install nbstripout as the git filter of notebooks (part of install)
	@if command -v git >/dev/null && [ "$$(git rev-parse --is-inside-work-tree 2>/dev/null)" = true ]; then \
		git config filter.nbstripout.clean "$(NBSTRIPOUT)" && \
		git config filter.nbstripout.smudge cat && \
		git config filter.nbstripout.required true && \
		git config diff.ipynb.textconv "$(NBSTRIPOUT) -t"; \
	fi

.PHONY: run
run: install ## Run the whole pipeline on the simulated data (DATA=file TARGET=col for your own)
	$(BIN)/nbops build --env $(ENV_FILE) $(RUN_FLAGS) $(ARGS)

.PHONY: check
check: install ## Check env.yaml and pipeline.yaml parameters without running anything
	$(BIN)/nbops check --env $(ENV_FILE) $(RUN_FLAGS) $(ARGS)

# Debian packages the tests and benchmarks use for real: chromium (dashboards, headless), cron
# (`nbops schedule`), prometheus (a real scrape of the service; promtool checks /metrics) and wrk (the
# throughput benchmark's load generator).
SYSTEM_PACKAGES := $(strip $(if $(shell command -v chromium),,chromium) $(if $(shell command -v crontab),,cron) \
	$(if $(shell command -v prometheus),,prometheus) $(if $(shell command -v wrk),,wrk) \
	$(if $(shell command -v cc),,gcc))

.PHONY: browser
browser: ## Install Debian's chromium, cron, prometheus, wrk and a C compiler (tests, benchmarks, nbops package --compiled) if missing
	@$(if $(SYSTEM_PACKAGES),echo "installing Debian packages: $(SYSTEM_PACKAGES)"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null,true)

.PHONY: test
# Both tiers run a pytest worker per core. The slow tier is mostly separate processes (kernels, servers, browsers, builds) that each keep one
# core busy, so make test runs a pytest worker per core; a test file stays on one worker (its module
# fixtures are built once). TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= auto

test: install browser ## Run the whole test suite (what CI runs): the fast tier and the slow one, one worker per core
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(ARGS)

.PHONY: test-fast
test-fast: install ## The tests a developer runs all day: no pipeline build, no server, under a minute
	$(BIN)/python -m pytest -m "not slow" -p no:cacheprovider -q -n $(TEST_WORKERS) $(ARGS)

.PHONY: lab
lab: install ## JupyterLab on http://127.0.0.1:8888 (URL with token printed); notebooks write under build/interactive/
	JUPYTER_CONFIG_DIR=$(CURDIR)/.jupyter $(BIN)/jupyter lab --ip=127.0.0.1 --no-browser --allow-root $(ARGS)

.PHONY: serve
serve: install ## Serve the production model over REST on http://127.0.0.1:8000 (docs at /docs)
	$(BIN)/nbops serve --env $(ENV_FILE) $(ARGS)

DASHBOARD_PORT ?= 8866
# Empty: a new random token per `make dashboard`. It is drawn once, in the recipe's one shell, so the
# printed links and Voila carry the same token (a make variable set with $(shell) would draw one per use).
DASHBOARD_TOKEN ?=

.PHONY: site
site: install ## Write <root>/site/: reports, model cards, registry, runs, monitoring, the DAG; opens offline
	$(BIN)/nbops site --env $(ENV_FILE)

.PHONY: dashboard
dashboard: install ## Serve the Voila dashboards (monitoring, model, experiments) on http://127.0.0.1:8866 (token printed), code hidden
	@token='$(DASHBOARD_TOKEN)'; token="$${token:-$$($(BIN)/python -c 'import secrets; print(secrets.token_hex(16))')}"; \
	echo "monitoring: http://127.0.0.1:$(DASHBOARD_PORT)/voila/render/monitoring.ipynb?token=$$token"; \
	echo "model:      http://127.0.0.1:$(DASHBOARD_PORT)/voila/render/model.ipynb?token=$$token"; \
	echo "experiments: http://127.0.0.1:$(DASHBOARD_PORT)/voila/render/experiments.ipynb?token=$$token"; \
	NBOPS_ENV=$(ENV_FILE) exec $(BIN)/voila dashboards --no-browser --port=$(DASHBOARD_PORT) --Voila.ip=127.0.0.1 \
		--token="$$token" --preheat_kernel=True --pool_size=1 $(ARGS)

.PHONY: bench
bench: install browser ## Run the benchmarks; results go to bench/results/
	$(BIN)/python bench/bench_build.py $(ARGS)
	$(BIN)/python bench/bench_scoring.py
	$(BIN)/python bench/bench_throughput.py
	$(BIN)/python bench/bench_batch.py
	$(BIN)/python bench/bench_drift.py
	$(BIN)/python bench/bench_estimate.py
	$(BIN)/python bench/bench_dashboard.py

.PHONY: bench-scale
bench-scale: install ## 10M rows through ingest, train, scoring and drift, pandas vs local Dask (~30 min)
	$(BIN)/python bench/bench_scale.py $(ARGS)

.PHONY: notebook-outputs
notebook-outputs: install ## Refresh the notebook outputs that nbval checks (cells with keep_output)
	$(BIN)/python tests/nbval_outputs.py

.PHONY: lint
lint: install ## ruff (lint and format), mypy, import-linter, nbstripout and file checks on every file
	$(BIN)/pre-commit run --all-files

.PHONY: lock
lock: install ## Recompile requirements.lock from pyproject.toml and requirements/pins.txt
	$(BIN)/uv pip compile pyproject.toml --extra pipeline --extra dev -c requirements/pins.txt \
		--override requirements/overrides.txt --python-version 3.11 --no-header --no-annotate -o requirements.lock
	$(BIN)/python requirements/write_environment_yml.py

.PHONY: clean
clean: ## Remove products (data/, models/, registry/, dist/, reports/ outputs, build/, wandb/); keeps .venv
	rm -rf build data models registry dist wandb .nbops reports/*.ipynb reports/*.html reports/*.json reports/*.jsonl reports/*.parquet reports/figures env.nbops-build-*.yaml

.PHONY: help
help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-17s %s\n", $$1, $$2}'
