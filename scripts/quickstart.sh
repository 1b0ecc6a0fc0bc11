#!/usr/bin/env bash
# Fresh machine → a trained classifier on the bundled sample, its report, and sorted images.
set -euo pipefail
cd "$(dirname "$0")/.."
SORTSIGHT_SKIP_BROWSER=1 bash scripts/install.sh
exec "${PYTHON:-python3}" -m sortsight quickstart "$@"
