#!/usr/bin/env bash
# Distributed training with torchrun (see tools/dist_launch.sh for NNODES,
# NODE_RANK, MASTER_ADDR, PORT, PYTHON).
# Usage: bash tools/dist_train.sh CONFIG GPUS [train.py options]
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 CONFIG GPUS [tools/train.py options]" >&2
  exit 2
fi
exec bash "$(dirname "$0")/dist_launch.sh" train.py "$2" "$1" \
    --launcher pytorch "${@:3}"
