#!/usr/bin/env bash
# Thin wrapper: bash scripts/prepare.sh [options]  ==  address-completion prepare [options]   (--help lists them)
source "$(dirname "$0")/_env.sh"
ensure_env
ac prepare "$@"
