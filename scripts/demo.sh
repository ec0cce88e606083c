#!/usr/bin/env bash
# Set up (see setup.sh), then build real projects with plain clang -Oz and with llmcc and print
# the size and build-time table (bench/build.py; pass --full for every project and k).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
export PATH="$(pwd)/.venv/bin:$PATH"
if [ "${1:-}" = --full ]; then shift; exec .venv/bin/python bench/build.py "$@"; fi
exec .venv/bin/python bench/build.py --quick "$@"
