#!/usr/bin/env bash
# Thin wrapper: bash scripts/evaluate.sh [options]  ==  address-completion evaluate [options]   (--help lists them)
source "$(dirname "$0")/_env.sh"
ensure_env
ac evaluate "$@"
