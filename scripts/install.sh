#!/usr/bin/env bash
# Install sortsight with every optional door (app, studio, ONNX, Ray, ...) and the test tools
# into the current Python, plus Debian's chromium for the browser tests. Safe to run again:
# what is already there is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

# pip's output is read whole first: piped into `grep -q`, pip gets "Pipe to stdout was broken" when
# grep stops early, and under pipefail that failure would trigger a needless reinstall.
shown="$("$PY" -m pip show sortsight 2>/dev/null || true)"
if ! "$PY" -c "import sortsight, torch, timm, gradio, fastapi, ray, playwright, pytest, xdist" >/dev/null 2>&1 \
   || [[ "$shown" != *"Editable project location: $(pwd)"* ]]; then
  echo "==> installing sortsight and its dependencies (first time: a few minutes)"
  # pip's own output (its warnings about this machine's pip configuration included) goes to a log,
  # shown only when the install fails
  log="${TMPDIR:-/tmp}/sortsight-install.log"
  if ! "$PY" -m pip install --disable-pip-version-check -c scripts/constraints.txt -e ".[all,dev]" \
       >"$log" 2>&1; then
    tail -n 25 "$log" >&2
    echo "sortsight's install failed (pip's last lines above; all of its output: $log)." >&2
    exit 1
  fi
fi

if [ "${SORTSIGHT_SKIP_BROWSER:-0}" != "1" ] && [ ! -x /usr/bin/chromium ]; then
  echo "==> installing Debian's chromium for the browser tests"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  log="${TMPDIR:-/tmp}/sortsight-chromium-install.log"
  if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium; } \
       >"$log" 2>&1; then
    tail -n 25 "$log" >&2
    echo "Installing chromium failed (apt's last lines above; all of its output: $log)." >&2
    exit 1
  fi
fi
echo "==> sortsight $("$PY" -m sortsight --version | awk '{print $NF}') is installed"
