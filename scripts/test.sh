#!/usr/bin/env bash
# Install what the tests need (packages, chromium), then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
set +e
"${PYTHON:-python3}" -m pytest -q "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  # pytest's "no tests collected": a wrong path or -k, or a broken collection; nothing was tested
  echo "pytest collected no tests (exit 5): nothing was tested, so this run fails" >&2
  exit 5
fi
exit "$status"
