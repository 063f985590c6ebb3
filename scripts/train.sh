#!/usr/bin/env bash
# Thin wrapper: bash scripts/train.sh [options]  ==  address-completion train [options]   (--help lists them)
# NPROC=N adds --nproc-per-node N: N data-parallel processes through python -m paddle.distributed.launch.
source "$(dirname "$0")/_env.sh"
ensure_env
if [ -n "${NPROC:-}" ]; then set -- "$@" --nproc-per-node "$NPROC"; fi
ac train "$@"
