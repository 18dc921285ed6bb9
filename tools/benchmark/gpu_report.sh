#!/usr/bin/env bash
# One-call GPU report on a single H100 (run from the repository root):
#   (1) Mask R-CNN train step, batch 2, 800x1344, AMP: VMamba-T vs mmdet Swin-T
#   (2) the demo Mask R-CNN trained and tested on the GPU (Triton kernels)
#   (3) throughput / pixels/s / peak memory vs input size (AMP fp16)
# Everything lands in $RES (default outputs/gpu_report); each stage has a time cap
# so that one call of a limited GPU session always finishes.
set -uo pipefail
RES=${RES:-outputs/gpu_report}
mkdir -p "$RES"
source tools/benchmark/device_env.sh
nvidia-smi -L | tee "$RES/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$RES/gpu.txt"

echo "== (1) Mask R-CNN step (VMamba-T vs Swin-T)"
timeout "${T1:-170}" python3 tools/benchmark/maskrcnn_step_speed.py --batch 2 --height 800 --width 1344 \
  --amp --iters "${STEP_ITERS:-15}" --warmup 3 --out "$RES/maskrcnn_step.json" > "$RES/maskrcnn_step.log" 2>&1
echo "rc=$?"; grep -v -i warn "$RES/maskrcnn_step.log" | tail -6

echo "== (2) demo Mask R-CNN on the GPU"
start=$(date +%s)
timeout "${T2:-170}" python3 tools/train.py configs/demo/maskrcnn_vmamba_t_demo-shapes.py \
  --work-dir "$RES/demo" > "$RES/demo_train.log" 2>&1
echo "rc=$? demo training took $(( $(date +%s) - start )) s"
grep -E "coco/bbox_mAP:|coco/segm_mAP:" "$RES/demo_train.log" | sed 's/.*Epoch(val)/Epoch(val)/' | cut -c1-160
grep -E "Epoch\(train\)" "$RES/demo_train.log" | tail -1 | cut -c1-220
if [[ -f "$RES/demo/last_checkpoint" ]]; then
  timeout 60 python3 tools/test.py configs/demo/maskrcnn_vmamba_t_demo-shapes.py \
    "$(cat "$RES/demo/last_checkpoint")" --work-dir "$RES/demo_test" --show-dir pictures \
    > "$RES/demo_test.log" 2>&1
  grep -E "bbox_mAP_copypaste|segm_mAP_copypaste" "$RES/demo_test.log"
fi

echo "== (3) scaling (AMP fp16)"
timeout "${T3:-170}" python3 tools/analysis/scaling.py vmamba-t swin-t convnext-t --dtype fp16 \
  --batch-224 "${BATCH:-64}" --sizes ${SIZES:-224 384 512 768 1024} --iters 10 --warmup 3 \
  --out "$RES/scaling_fp16" > "$RES/scaling.log" 2>&1
echo "rc=$?"; grep -v -i warn "$RES/scaling.log" | tail -22
