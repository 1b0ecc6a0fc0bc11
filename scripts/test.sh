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
  echo "pytest collected no tests (exit 5): nothing failed, but nothing was tested either" >&2
  exit 0
fi
exit "$status"
