#!/usr/bin/env bash
# tools/dist_train.sh and tools/dist_test.sh on 2 GPUs of one host (NCCL),
# with the demo Mask R-CNN. Run from the repository root on the 2-GPU box.
# Usage: bash tools/benchmark/gpu_dist.sh
set -euo pipefail
OUT=${OUT:-outputs/gpu_dist}
mkdir -p "$OUT"
source tools/benchmark/device_env.sh
export NCCL_NVLS_ENABLE=0 PYTHON=python3
nvidia-smi -L | tee "$OUT/gpus.txt"
start=$(date +%s)
PORT=29511 bash tools/dist_train.sh configs/demo/maskrcnn_vmamba_t_demo-shapes.py 2 \
  --work-dir "$OUT/train" > "$OUT/dist_train.log" 2>&1
echo "dist_train (2 GPUs) took $(( $(date +%s) - start )) s" | tee "$OUT/times.txt"
grep -E "Distributed training|coco/bbox_mAP:" "$OUT/dist_train.log" | tail -3 | tee -a "$OUT/times.txt"
start=$(date +%s)
PORT=29512 bash tools/dist_test.sh configs/demo/maskrcnn_vmamba_t_demo-shapes.py \
  "$(cat "$OUT/train/last_checkpoint")" 2 --work-dir "$OUT/test" > "$OUT/dist_test.log" 2>&1
echo "dist_test (2 GPUs) took $(( $(date +%s) - start )) s" | tee -a "$OUT/times.txt"
grep -E "coco/bbox_mAP:" "$OUT/dist_test.log" | tail -1 | tee -a "$OUT/times.txt"
