#!/usr/bin/env bash
# Thin wrapper: bash scripts/merge.sh [options]  ==  address-completion merge [options]   (--help lists them)
source "$(dirname "$0")/_env.sh"
ensure_env
ac merge "$@"
