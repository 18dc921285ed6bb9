#!/usr/bin/env bash
# Distributed testing with torchrun (see tools/dist_launch.sh for NNODES,
# NODE_RANK, MASTER_ADDR, PORT, PYTHON).
# Usage: bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py options]
set -euo pipefail
if [[ $# -lt 3 ]]; then
  echo "usage: $0 CONFIG CHECKPOINT GPUS [tools/test.py options]" >&2
  exit 2
fi
exec bash "$(dirname "$0")/dist_launch.sh" test.py "$3" "$1" "$2" \
    --launcher pytorch "${@:4}"
