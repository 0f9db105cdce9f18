#!/usr/bin/env bash
# Layer Explorer: set up .venv (Python 3.11 + requirements.txt) if needed, then start the app.
#
#   bash run_app.sh                      # opens on the built-in default: demo CNN + shapes, offline
#   bash run_app.sh --server.port 8502   # any `streamlit run` option passes through
#   bash run_app.sh --setup-only [FILE]  # only set up, with FILE (default requirements.txt); used by run_tests.sh
#
# Idempotent and quick the second time: pip runs only when the requirements files changed
# (their hash is kept in .venv/.requirements-hash-<file>).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

PYTHON="${PYTHON:-python3.11}"

requirements_hash() {
    # The file itself and any file it includes with -r, plus the interpreter version.
    local file="$1"
    {
        "$PYTHON" --version 2>&1
        cat "$file"
        sed -n 's/^[[:space:]]*-r[[:space:]]*\(.*\)$/\1/p' "$file" | while read -r inc; do cat "$inc"; done
    } | sha256sum | cut -d' ' -f1
}

setup_venv() {
    local file="${1:-requirements.txt}"
    if ! command -v "$PYTHON" >/dev/null 2>&1; then
        echo "run_app.sh: $PYTHON not found; install Python 3.11 or set PYTHON=/path/to/python3.11" >&2
        exit 1
    fi
    if [ ! -x .venv/bin/python ]; then
        echo "Creating .venv with $("$PYTHON" --version 2>&1)…"
        "$PYTHON" -m venv .venv
    fi
    local stamp=".venv/.requirements-hash-$(basename "$file")"
    local want
    want="$(requirements_hash "$file")"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "Installing $file into .venv…"
        .venv/bin/python -m pip install --quiet -r "$file"
        echo "$want" > "$stamp"
    fi
}

if [ "${1:-}" = "--setup-only" ]; then
    setup_venv "${2:-requirements.txt}"
    exit 0
fi

setup_venv requirements.txt
exec .venv/bin/python -m streamlit run app.py "$@"
