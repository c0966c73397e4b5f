#!/usr/bin/env bash
# Create .venv27, a Python 2.7 virtualenv with the Autobahn WebSocket testsuite (wstest),
# which tests/conformance/run.py drives.  The testsuite only runs on Python 2.7; it comes
# from pyenv's 2.7.18.
#
# Idempotent: does nothing when .venv27/bin/wstest already exists and runs.
# Usage (from anywhere): scripts/setup-wstest.sh
set -euo pipefail

cd "$(dirname "$0")/.."

fail() {
    echo "setup-wstest: $*" >&2
    exit 1
}

if [ -x .venv27/bin/wstest ] && .venv27/bin/wstest --autobahnversion >/dev/null 2>&1; then
    echo "setup-wstest: .venv27 is ready ($(.venv27/bin/wstest --autobahnversion | tr '\n' ' '))"
    exit 0
fi

command -v pyenv >/dev/null || fail "pyenv is not installed; it must provide Python 2.7.18"
PY27="$(pyenv root)/versions/2.7.18/bin/python"
[ -x "$PY27" ] || fail "$PY27 not found; install it with: pyenv install 2.7.18"

"$PY27" -m pip install "virtualenv<20.22" \
    || fail "could not install virtualenv<20.22 into $PY27"
"$PY27" -m virtualenv .venv27 \
    || fail "could not create the virtualenv .venv27 with $PY27"
.venv27/bin/pip install autobahntestsuite \
    || fail "could not install autobahntestsuite into .venv27"
.venv27/bin/wstest --autobahnversion >/dev/null \
    || fail ".venv27/bin/wstest was installed but does not run"

echo "setup-wstest: .venv27 created ($(.venv27/bin/wstest --autobahnversion | tr '\n' ' '))"
