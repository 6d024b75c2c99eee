#!/usr/bin/env bash
# Set up, then run the whole test suite (real model, real Chroma, a real PostgreSQL server when
# PostgreSQL is installed, local fake Telegram/LLM/web servers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate

# The shared-state tests need a PostgreSQL server: a throwaway one, unless one is given.
if [ -z "${TALKS_TEST_DATABASE_URL:-}" ] && compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  pgdir="$(mktemp -d /tmp/talks-pg.XXXXXX)"
  port="$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  TALKS_TEST_DATABASE_URL="$(bash scripts/postgres.sh start "$pgdir" "$port")"
  export TALKS_TEST_DATABASE_URL
  trap 'bash scripts/postgres.sh stop "$pgdir"; rm -rf "$pgdir"' EXIT
  echo "PostgreSQL for the tests: $TALKS_TEST_DATABASE_URL"
fi
python -m pytest -q "$@"
