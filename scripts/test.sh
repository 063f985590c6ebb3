#!/usr/bin/env bash
# The whole test suite: installs into .venv on first use (with the test and jionlp/cpca extras), then runs pytest.
# Extra arguments go to pytest, e.g. bash scripts/test.sh -k gazetteer; bash scripts/test.sh -m "not slow" is the
# fast subset (no training, merging, serving, export or SmolLM2; README "Tests").
source "$(dirname "$0")/_env.sh"
ensure_env
ensure_browser  # Debian's chromium + chromium-driver for tests/test_webpage.py (installed when missing and root)
cd "$REPO_ROOT"
"$PY" -m pytest "$@"
