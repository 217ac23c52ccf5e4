#!/usr/bin/env bash
# The whole suite, twice: embedded (SQLite + SqliteHuey) and distributed
# (PostgreSQL + Redis on 127.0.0.1). Extra arguments go to pytest.
# Without PostgreSQL or Redis the second run is skipped LOUDLY; under CI=true
# that is a failure.
set -u
PY=${PY:-.venv/bin/python}
# A database name per run: concurrent runs on one server must not share a test database.
PG_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/llmagentos_run$$}
REDIS=${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}
status=0

run_suite() {
  local label=$1; shift
  local data_dir
  data_dir=$(mktemp -d)
  echo "=== suite: $label ==="
  env "$@" DATA_DIR="$data_dir" HUEY_NAME="llmagentos-test-$$" "$PY" -m pytest $PYTEST_ARGS || status=1
  rm -rf "$data_dir"
}

PYTEST_ARGS="$*"
run_suite "embedded (SQLite, SqliteHuey)" -u DATABASE_URL -u REDIS_URL

if "$PY" scripts/check_services.py "$PG_URL" "$REDIS"; then
  run_suite "distributed (PostgreSQL, Redis)" DATABASE_URL="$PG_URL" REDIS_URL="$REDIS"
else
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
  echo "!!! PostgreSQL or Redis is unreachable: the distributed suite did NOT run" >&2
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
  if [ "${CI:-}" = "true" ]; then
    echo "CI=true: a missing PostgreSQL or Redis is a failure" >&2
    exit 1
  fi
fi
exit $status
