#!/usr/bin/env bash
# Rebuild the training data from Debian sources, resuming wherever an earlier run stopped:
# the corpus (every allowlisted package, recorded through llmcc) -> labels (per-TU search,
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
python -m llmcc.train.corpus --work "$work"
python -m llmcc.train.labels --work "$work" --commit
