#!/usr/bin/env bash
# Set up, index the corpus, then run the bot (TELEGRAM_BOT_TOKEN set) or a terminal chat.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
export TRANSFORMERS_VERBOSITY="${TRANSFORMERS_VERBOSITY:-error}"
talks index
exec talks run
