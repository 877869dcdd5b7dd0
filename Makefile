# The README's two commands: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export FLASK_APP := app:create_app
export PYTHONPATH := $(CURDIR)
# Postgres and Redis for the tests; the suites skip where they are unreachable, unless REQUIRE_SERVICES=1 (CI).
export TEST_POSTGRES_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
export TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: run setup test test-fast lint chromium bench clean

$(VENV)/.installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# One `pip install -r` so the torch pin applies before anything pulls a CUDA build.
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

setup: $(VENV)/.installed
	mkdir -p -m 700 instance && chmod 700 instance && mkdir -p models
	$(BIN)/flask db upgrade
	$(BIN)/flask models bootstrap

run: setup
	$(BIN)/python -m app.platform.launcher

chromium:
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium)

test: $(VENV)/.installed-dev chromium
	HF_HUB_OFFLINE=1 $(BIN)/pytest

test-fast: $(VENV)/.installed-dev
	HF_HUB_OFFLINE=1 $(BIN)/pytest -m "not slow and not browser"

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check app worker harness tests bench

# The benchmarks of docs/BENCHMARKS.md (each takes minutes; they build the default starters once into bench/out/).
bench: $(VENV)/.installed-dev
	HF_HUB_OFFLINE=1 $(BIN)/python bench/generation.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/click_latency.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/retrain.py

clean:
	rm -rf $(VENV) instance
