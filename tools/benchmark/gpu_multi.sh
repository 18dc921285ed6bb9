#!/usr/bin/env bash
# Multi-GPU on one host, for N = 1, 2, 4, 8 GPUs (those visible; or the
# counts given as arguments), run from the repository root on the GPU box:
#   demo   tools/dist_train.sh + tools/dist_test.sh on the demo Mask R-CNN:
#          mAP, time, replicas compared after training (--replica-digest)
#   speed  Mask R-CNN training throughput, VMamba-T and mmdet's Swin-T in the
#          same run (batch 2 per GPU, 800x1344, AMP, DDP under torchrun)
#   twonode two torchrun "nodes" on this host (NNODES=2, NODE_RANK=0/1,
#          MASTER_ADDR=127.0.0.1, one GPU each; needs 2 GPUs)
# then tools/benchmark/multi_gpu_report.py writes the table (scaling
# efficiency = throughput_N / (N x throughput_1)) to $OUT/multi_gpu.md.
# Usage: bash tools/benchmark/gpu_multi.sh [N ...]
# Environment: OUT (outputs/multi_gpu), PARTS ("demo speed twonode"),
#   SPEED_ITERS (30), SPEED_WARMUP (5), DEMO_ARGS (more tools/train.py
#   options, e.g. --auto-scale-lr), T_TRAIN / T_TEST / T_SPEED (time caps in
#   seconds per run: 300 / 120 / 300), NGPUS (default: nvidia-smi -L),
#   KEEP_CHECKPOINTS=1 (keep the ~0.5 GB demo checkpoints, deleted after the
#   report by default), PLAN_ONLY=1 (print the commands, run nothing).
set -euo pipefail
OUT=${OUT:-outputs/multi_gpu}
PARTS=${PARTS:-demo speed twonode}
CONFIG=configs/demo/maskrcnn_vmamba_t_demo-shapes.py
PLAN_ONLY=${PLAN_ONLY:-0}
mkdir -p "$OUT"

die() {
  echo "[mmvmamba] error: $*" >&2
  exit 2
}
for p in $PARTS; do
  [[ $p =~ ^(demo|speed|twonode)$ ]] ||
    die "unknown part '$p' in PARTS; choose from: demo speed twonode"
done
part() { [[ " $PARTS " == *" $1 "* ]]; }

if [[ $PLAN_ONLY != 1 ]]; then
  source tools/benchmark/device_env.sh
  export NCCL_NVLS_ENABLE=0 PYTHON=python3
  nvidia-smi -L > "$OUT/gpus.txt"
  python3 -c "import torch; print('torch', torch.__version__)" >> "$OUT/gpus.txt"
fi
NGPUS=${NGPUS:-$({ nvidia-smi -L 2>/dev/null || true; } | grep -c "^GPU" || true)}
[[ $NGPUS =~ ^[0-9]+$ ]] && ((NGPUS > 0)) ||
  die "no GPU visible (nvidia-smi -L lists none); set NGPUS=N to plan anyway"

counts=()
if (($# > 0)); then
  for n in "$@"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "GPU counts must be positive integers, got '$n'"
    ((n <= NGPUS)) || die "asked for $n GPUs but $NGPUS are visible; run with counts up to $NGPUS"
    counts+=("$n")
  done
else
  for n in 1 2 4 8; do
    ((n <= NGPUS)) && counts+=("$n")
  done
fi
echo "[mmvmamba] GPU counts: ${counts[*]} ($NGPUS visible); parts: $PARTS; results in $OUT"

failed=()
# step NAME LOG CAP COMMAND...: run with a time cap, output into LOG
step() {
  local name=$1 log=$2 cap=$3
  shift 3
  echo "+ $*" | tee -a "$OUT/commands.txt"
  [[ $PLAN_ONLY == 1 ]] && return 0
  local start=$SECONDS rc=0
  timeout "$cap" "$@" > "$log" 2>&1 || rc=$?
  echo "  $name: rc=$rc, $((SECONDS - start)) s (log: $log)"
  if ((rc != 0)); then
    failed+=("$name")
    grep -v -i warn "$log" | tail -5 | sed 's/^/    /'
    return 1
  fi
  echo $((SECONDS - start)) > "${log%.log}_seconds"
}

for n in "${counts[@]}"; do
  if part demo; then
    d=$OUT/demo_n$n
    rm -rf "$d" && mkdir -p "$d"
    if step "dist_train n=$n" "$d/train.log" "${T_TRAIN:-300}" \
      env PORT=$((29610 + n)) bash tools/dist_train.sh "$CONFIG" "$n" \
      --work-dir "$d/train" --replica-digest "$d/replicas" ${DEMO_ARGS:-}; then
      ckpt="$d/train/<last checkpoint>"
      [[ $PLAN_ONLY == 1 ]] || ckpt=$(cat "$d/train/last_checkpoint")
      step "dist_test n=$n" "$d/test.log" "${T_TEST:-120}" \
        env PORT=$((29630 + n)) bash tools/dist_test.sh "$CONFIG" "$ckpt" "$n" \
        --work-dir "$d/test" || true
    fi
  fi
  if part speed; then
    step "speed n=$n" "$OUT/speed_n$n.log" "${T_SPEED:-300}" \
      python3 -m torch.distributed.run --nproc_per_node "$n" \
      --master_port $((29650 + n)) tools/benchmark/maskrcnn_step_speed.py \
      --amp --batch 2 --height 800 --width 1344 \
      --iters "${SPEED_ITERS:-30}" --warmup "${SPEED_WARMUP:-5}" \
      --out "$OUT/speed_n$n.json" || true
  fi
done

if part twonode; then
  if ((NGPUS < 2)); then
    echo "[mmvmamba] twonode skipped: needs 2 GPUs (one per \"node\"), $NGPUS visible"
  else
    d=$OUT/twonode
    rm -rf "$d" && mkdir -p "$d"
    # the same command on both "nodes"; each sees one GPU as its cuda:0
    train=(MASTER_ADDR=127.0.0.1 PORT=29670 bash tools/dist_train.sh "$CONFIG" 1
           --work-dir "$d/train" --replica-digest "$d/replicas"
           --cfg-options train_cfg.max_epochs=2)
    node0=(env CUDA_VISIBLE_DEVICES=0 NNODES=2 NODE_RANK=0 "${train[@]}")
    node1=(env CUDA_VISIBLE_DEVICES=1 NNODES=2 NODE_RANK=1 "${train[@]}")
    # node 1 in the background, node 0 in the foreground: both wait
    echo "+ ${node1[*]} &" | tee -a "$OUT/commands.txt"
    if [[ $PLAN_ONLY != 1 ]]; then
      timeout "${T_TRAIN:-300}" "${node1[@]}" > "$d/node1.log" 2>&1 &
      pid1=$!
    fi
    step "twonode" "$d/node0.log" "${T_TRAIN:-300}" "${node0[@]}" || true
    if [[ $PLAN_ONLY != 1 ]]; then
      rc=0
      wait "$pid1" || rc=$?
      if ((rc != 0)); then
        failed+=("twonode node 1")
        echo "  twonode node 1: rc=$rc (log: $d/node1.log)"
      fi
      [[ -f $d/node0_seconds ]] && cp "$d/node0_seconds" "$d/train_seconds"
    fi
  fi
fi

[[ $PLAN_ONLY == 1 ]] && exit 0
rc=0
python3 tools/benchmark/multi_gpu_report.py "$OUT" || rc=$?
if [[ ${KEEP_CHECKPOINTS:-0} != 1 ]]; then
  # compared with the replicas by the report; too large to keep around
  find "$OUT" -name '*.pth' -delete
fi
if ((${#failed[@]})); then
  echo "[mmvmamba] failed: ${failed[*]} (logs in $OUT)" >&2
  rc=1
fi
exit $rc
