#!/usr/bin/env bash
# Set up (see setup.sh) and run the whole test suite: unit, integration, real projects.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
export PATH="$(pwd)/.venv/bin:$PATH"
exec .venv/bin/python -m pytest -q -rs "$@"  # -rs: say why each skipped test was skipped
