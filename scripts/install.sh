#!/usr/bin/env bash
# Install sortsight with every optional door (app, studio, ONNX, Ray, ...) and the test tools
# into the current Python, plus Debian's chromium for the browser tests. Safe to run again:
# what is already there is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

# quietly LOG WHAT CMD...: run CMD with its output in LOG (pip's warnings about this machine's pip
# configuration, apt's debconf notes), shown, its last lines, only when it fails
quietly() {
  local log="$1" what="$2"
  shift 2
  if ! "$@" >"$log" 2>&1; then
    tail -n 25 "$log" >&2
    echo "$what failed (the last lines of its output above; all of it: $log)." >&2
    exit 1
  fi
}

# pip's output is read whole first: piped into `grep -q`, pip gets "Pipe to stdout was broken" when
# grep stops early, and under pipefail that failure would trigger a needless reinstall.
shown="$("$PY" -m pip show sortsight 2>/dev/null || true)"
if ! "$PY" -c "import sortsight, torch, timm, gradio, fastapi, ray, playwright, pytest, xdist" >/dev/null 2>&1 \
   || [[ "$shown" != *"Editable project location: $(pwd)"* ]]; then
  echo "==> installing sortsight and its dependencies (first time: a few minutes)"
  quietly "${TMPDIR:-/tmp}/sortsight-install.log" "Installing sortsight" \
    "$PY" -m pip install --disable-pip-version-check -c scripts/constraints.txt -e ".[all,dev]"
fi

if [ "${SORTSIGHT_SKIP_BROWSER:-0}" != "1" ] && [ ! -x /usr/bin/chromium ]; then
  echo "==> installing Debian's chromium for the browser tests"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  log="${TMPDIR:-/tmp}/sortsight-chromium-install.log"
  quietly "$log" "Updating apt's package lists" $SUDO apt-get update -qq
  quietly "$log" "Installing chromium" $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
echo "==> sortsight $("$PY" -m sortsight --version | awk '{print $NF}') is installed"
