#!/usr/bin/env bash
# torchrun launcher shared by dist_train.sh and dist_test.sh:
#   bash tools/dist_launch.sh SCRIPT NPROC [SCRIPT arguments]
# NPROC processes on this machine, one per GPU (or per CPU slot without CUDA:
# the tools switch to gloo).
# Environment:
#   NNODES       machines in the job (1)
#   NODE_RANK    this machine's index, 0 .. NNODES-1 (0)
#   MASTER_ADDR  address of the NODE_RANK=0 machine, reachable from all nodes
#                (127.0.0.1 on one machine; must be set when NNODES > 1)
#   PORT         a free TCP port on that machine, the same on all nodes (29500)
#   PYTHON       the interpreter (python)
# Multi-node: start the same command on every machine, e.g. two machines with
# 8 GPUs each, node0 at 10.0.0.1:
#   node0$ NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 PORT=29500 bash tools/dist_train.sh CONFIG 8
#   node1$ NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1 PORT=29500 bash tools/dist_train.sh CONFIG 8
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"

die() {
  echo "[mmvmamba] error: $*" >&2
  exit 2
}
# a non-negative decimal integer, without leading zeros (bash would read
# 08 as octal)
uint() { [[ $1 =~ ^(0|[1-9][0-9]*)$ ]]; }

if [[ $# -lt 2 ]]; then
  die "usage: $0 SCRIPT NPROC [SCRIPT arguments]"
fi
SCRIPT=$1
NPROC=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}

if ! uint "$NPROC" || ((NPROC < 1)); then
  die "GPUS (processes per machine) must be a positive integer, got" \
      "'$NPROC'; e.g. 'bash tools/dist_train.sh CONFIG 8' for 8 GPUs"
fi
if ! uint "$NNODES" || ((NNODES < 1)); then
  die "NNODES (the number of machines) must be a positive integer, got" \
      "'$NNODES'; unset it on a single machine"
fi
if ! uint "$NODE_RANK"; then
  die "NODE_RANK must be an integer from 0 to NNODES-1, got '$NODE_RANK'"
fi
if ((NODE_RANK >= NNODES)); then
  die "NODE_RANK=$NODE_RANK with NNODES=$NNODES: node ranks run from 0 to" \
      "$((NNODES - 1)) (0 on the MASTER_ADDR machine); set NNODES to the" \
      "number of machines and give each a different NODE_RANK"
fi
if ! uint "$PORT" || ((PORT < 1 || PORT > 65535)); then
  die "PORT must be a TCP port number (1-65535), got '$PORT'"
fi
if ((NNODES > 1)) && [[ -z ${MASTER_ADDR:-} ]]; then
  die "NNODES=$NNODES needs MASTER_ADDR: the address of the NODE_RANK=0" \
      "machine, reachable from every node, and the same PORT on all of them"
fi
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
if [[ ! -f $HERE/$SCRIPT ]]; then
  die "no script tools/$SCRIPT"
fi
if ((NNODES > 1)); then
  echo "[mmvmamba] node $NODE_RANK of $NNODES: $NPROC process(es) here," \
       "rendezvous at $MASTER_ADDR:$PORT (waits for all nodes)" >&2
fi

PYTHONPATH="$HERE/..${PYTHONPATH:+:$PYTHONPATH}" \
"${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --master_port="$PORT" \
    --nproc_per_node="$NPROC" \
    "$HERE/$SCRIPT" "${@:3}"
