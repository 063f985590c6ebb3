#!/usr/bin/env bash
# Thin wrapper: bash scripts/split.sh [options]  ==  address-completion split [options]   (--help lists them)
source "$(dirname "$0")/_env.sh"
ensure_env
ac split "$@"
