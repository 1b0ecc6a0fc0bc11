#!/usr/bin/env bash
# Install what the tests need (packages, chromium), then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
set +e
# one pytest-xdist worker per core (SORTSIGHT_TEST_WORKERS=0 runs in this process); tests/conftest.py
# gives each worker its own cores, so N workers never run more torch threads than there are cores
"${PYTHON:-python3}" -m pytest -q -n "${SORTSIGHT_TEST_WORKERS:-auto}" "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  # pytest's "no tests collected": a wrong path or -k, or a broken collection; nothing was tested
  echo "pytest collected no tests (exit 5): nothing was tested, so this run fails" >&2
  exit 5
fi
exit "$status"
