#!/usr/bin/env bash
# Rebuild the training data from Debian sources, resuming wherever an earlier run stopped:
# the corpus (every allowlisted package, recorded through llmcc) -> labels (per-TU search, then
# broadcast) -> data/dataset/, each package's labels committed as they complete.
#   bash scripts/dataset.sh [WORK_DIR]      # default ~/.cache/llmcc-corpus
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test  # cmake and the autotools build some of the packages
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
# libraries some allowlisted packages cannot be configured without (memcached, tmux)
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libevent-dev libncurses-dev
export PATH="$(pwd)/.venv/bin:$PATH"
work="${1:-$HOME/.cache/llmcc-corpus}"
# Package by package, train first, so that labels start within minutes on a fresh machine
# (whose corpus must be rebuilt) and every finished package is committed before the next.
for package in $(python -m llmcc.train.corpus --list); do
  python -m llmcc.train.corpus --work "$work" "$package"
  python -m llmcc.train.labels --work "$work" --splits train --stage search --commit
done
# What a model needs first: the broadcast to train (its training data), then the test sample
# searched and broadcast (its evaluation); validation last.
python -m llmcc.train.labels --work "$work" --splits train --stage broadcast --commit
python -m llmcc.train.labels --work "$work" --splits test --commit
python -m llmcc.train.labels --work "$work" --commit
