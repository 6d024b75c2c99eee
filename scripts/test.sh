#!/usr/bin/env bash
# Set up, then run the whole test suite (real model, real Chroma, local fake Telegram/LLM/web servers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
exec python -m pytest -q "$@"
