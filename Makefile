# The two commands a fresh machine needs: `make run` and `make test`.
# stdout carries only what the platform prints (API_KEY=… on the first run);
# make's own messages go to stderr.
# Both create the virtualenv (.venv) and install the pinned requirements first.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test chaos lint install install-test clean

$(PY):
	@echo 'creating the virtualenv in $(VENV)' >&2
	@$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: requirements.txt | $(PY)
	@echo 'installing requirements.txt' >&2
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt >&2
	@touch $@

$(VENV)/.installed-test: requirements.txt requirements-test.txt | $(PY)
	@echo 'installing requirements-test.txt' >&2
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-test.txt >&2
	@touch $(VENV)/.installed-run $@

install: $(VENV)/.installed-run
install-test: $(VENV)/.installed-test

## run: the whole platform in the foreground (embedded mode unless DATABASE_URL/REDIS_URL are set)
run: $(VENV)/.installed-run
	@exec $(PY) manage.py run_platform

## test: the whole suite, on SQLite and on PostgreSQL + Redis
test: $(VENV)/.installed-test
	PY=$(PY) bash scripts/test_all.sh

## chaos: the chaos tests (tests/chaos): real processes killed, and a throwaway PostgreSQL
## cluster and Redis server of their own stopped, restarted and flushed (never the suite's)
chaos: $(VENV)/.installed-test
	DATA_DIR=$$(mktemp -d) $(PY) -m pytest -m chaos -s -p no:cacheprovider tests/chaos

## lint: the layer contracts (import-linter, no imports inside functions), ruff, then mypy; the first failure stops it
# mypy's Django plugin loads the settings, which create DATA_DIR (and local
# secrets in it): give it one inside the virtualenv so linting never writes into ./var.
lint: $(VENV)/.installed-test
	$(VENV)/bin/lint-imports --config .importlinter
	$(PY) scripts/check_local_imports.py
	$(VENV)/bin/ruff check .
	DATA_DIR=$(VENV)/lint-data $(VENV)/bin/mypy

clean:
	rm -rf $(VENV) var
