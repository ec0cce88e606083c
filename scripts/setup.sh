#!/usr/bin/env bash
# Install what llmcc needs on Debian 12 and put it in ./.venv. Safe to run again.
#   bash scripts/setup.sh          # runtime: clang-19, llvm-19, llmcc
#   bash scripts/setup.sh test     # plus what the tests and benchmarks use
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
packages=(clang-19 llvm-19 make dpkg-dev autoconf automake libtool autopoint)  # autotools: corpus tarballs without configure
[ "${1:-}" = test ] && packages+=(cmake ninja-build ccache csmith libcsmith-dev tcl-dev unicode-data python3-six redis-server)  # tcl-dev: SQLite's testfixture; unicode-data, python3-six: RE2's tables; redis-server: the shared-cache tests
# Source packages (apt-get source) feed the corpus, the project tests and the benchmark.
if ! grep -rqs '^Types: deb-src' /etc/apt/sources.list.d/ && [ -f /etc/apt/sources.list.d/debian.sources ]; then
  sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
    | $SUDO tee /etc/apt/sources.list.d/debian-src.sources >/dev/null
  stale=1
fi
missing=()
for p in "${packages[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ] || [ -n "${stale:-}" ]; then
  $SUDO apt-get update -qq
  [ ${#missing[@]} -gt 0 ] && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
# Bazel 2.1.0 for tests/test_bazel.py, from npm: the one registry here with a Bazel binary.
bazel_home="${XDG_CACHE_HOME:-$HOME/.cache}/llmcc-bazel"
if [ "${1:-}" = test ] && command -v npm >/dev/null \
    && [ ! -x "$bazel_home/node_modules/@bazel/bazel-linux_x64/bazel-2.1.0-linux-x86_64" ]; then
  npm install --silent --no-audit --no-fund --prefix "$bazel_home" @bazel/bazel-linux_x64@2.1.0 \
    || echo "warning: npm could not install Bazel; tests/test_bazel.py will skip" >&2
fi
python3 -m venv .venv
extras=""; [ "${1:-}" = test ] && extras="[test,bench,train]"  # train: the model tests (torch CPU wheel)
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q ".$extras"
echo "llmcc installed in $(pwd)/.venv/bin (add it to PATH: export PATH=\"$(pwd)/.venv/bin:\$PATH\")"
