#!/usr/bin/env bash
# Thin wrapper: bash scripts/build_model.sh [options]  ==  address-completion build-model [options]   (--help lists them)
source "$(dirname "$0")/_env.sh"
ensure_env
ac build-model "$@"
