#!/usr/bin/env bash
# Thin wrapper: bash scripts/serve.sh [options]  ==  address-completion serve [options]   (--help lists them)
source "$(dirname "$0")/_env.sh"
ensure_env
ac serve "$@"
