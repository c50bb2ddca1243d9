#!/usr/bin/env bash
# Sets up .venv with a Python >= 3.12 and installs the project (and, with --dev, its test tools).
# Idempotent: a second run only reinstalls when pyproject.toml or the Node test clients changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
dev=0
[ "${1:-}" = "--dev" ] && dev=1

# Progress: a line per step, and pip's own progress bars when a person watches (a terminal);
# in a log (CI) pip stays quiet and the step lines say what is happening.
step() { echo "halton-meter set-up: $*" >&2; }
pip_quiet=--quiet
[ -t 2 ] && pip_quiet=--progress-bar=on

usable() {
    # A pyenv shim exists on PATH even when its version is not selected: run it to be sure.
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1
}

find_python() {
    local pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}" candidate
    for candidate in python3.13 python3.12 \
        "$pyenv_root"/versions/3.13*/bin/python3 "$pyenv_root"/versions/3.12*/bin/python3 \
        python3 python; do
        if command -v "$candidate" >/dev/null 2>&1 && usable "$candidate"; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

if [ ! -x .venv/bin/python ] || ! usable .venv/bin/python; then
    python="$(find_python)" || {
        echo "Halton Meter needs Python 3.12 or newer (mitmproxy 12 requires it)." >&2
        echo "Install one (for example: pyenv install 3.12) and run this again." >&2
        exit 1
    }
    step "creating .venv with $python"
    rm -rf .venv
    "$python" -m venv .venv
fi

# One stamp per flavour; a dev install also satisfies a plain one.
base_stamp="$(sha256sum pyproject.toml | cut -d' ' -f1)"
dev_stamp="$(cat pyproject.toml tests/node/package-lock.json 2>/dev/null | sha256sum | cut -d' ' -f1)"
if [ "$dev" = 1 ]; then
    if [ "$(cat .venv/.halton-dev-stamp 2>/dev/null)" != "$dev_stamp" ]; then
        step "upgrading pip"
        .venv/bin/python -m pip install "$pip_quiet" --upgrade pip >&2
        step "installing the project and its test tools into .venv (a minute or two the first time)"
        .venv/bin/python -m pip install "$pip_quiet" -e ".[dev]" >&2
        if [ -f tests/node/package.json ] && command -v npm >/dev/null 2>&1; then
            step "installing the Node test clients (npm ci in tests/node)"
            (cd tests/node && npm ci --no-audit --no-fund --loglevel=error >&2)
        fi
        step "done"
        echo "$dev_stamp" > .venv/.halton-dev-stamp
        echo "$base_stamp" > .venv/.halton-stamp
    fi
elif [ "$(cat .venv/.halton-stamp 2>/dev/null)" != "$base_stamp" ]; then
    step "upgrading pip"
    .venv/bin/python -m pip install "$pip_quiet" --upgrade pip >&2
    step "installing the project and its dependencies into .venv (about a minute the first time)"
    .venv/bin/python -m pip install "$pip_quiet" -e . >&2
    echo "$base_stamp" > .venv/.halton-stamp
    step "done"
fi
