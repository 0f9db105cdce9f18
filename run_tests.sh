#!/usr/bin/env bash
# Layer Explorer: set up everything the tests need, then run the whole suite (what CI runs).
#
#   bash run_tests.sh              # the whole suite
#   bash run_tests.sh -k browser   # any pytest option passes through
#
# Runs `ruff check .` first, then pytest (doctests of the core included).
# Sets up .venv with requirements-dev.txt (via run_app.sh --setup-only, skipped when nothing
# changed) and, when /usr/bin/chromium is missing and we are root, Debian's chromium for the
# real-browser test (without it that test is skipped locally and fails under CI=true).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

bash ./run_app.sh --setup-only requirements-dev.txt

if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "Installing Debian's chromium for the browser test…"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq chromium
    else
        echo "run_tests.sh: /usr/bin/chromium is missing and apt-get cannot run as root here;" \
             "the browser test will be skipped (or fail under CI=true)." >&2
    fi
fi

# Lint first (config in pyproject.toml): a finding stops the run before the slow tests start.
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q "$@"
