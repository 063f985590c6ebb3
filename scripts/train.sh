#!/usr/bin/env bash
# Thin wrapper: bash scripts/train.sh [options]  ==  address-completion train [options]   (--help lists them)
source "$(dirname "$0")/_env.sh"
ensure_env
ac train "$@"
