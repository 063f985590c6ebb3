#!/usr/bin/env bash
# The main job on the embedded offline default: installs into .venv on first use, then runs
# address-completion demo (prepare -> split -> build-model -> ...). Options: address-completion demo --help
source "$(dirname "$0")/_env.sh"
ensure_env
ac demo "$@"
