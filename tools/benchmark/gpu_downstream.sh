#!/usr/bin/env bash
# Downstream numbers on one H100 (run from the repository root):
#  (a) the demo Mask R-CNN (VMamba-T, Triton kernels) trained end to end,
#  (b) s/iter of the full-size COCO Mask R-CNN train step (batch 2,
#      800x1344, AMP, random boxes/masks), VMamba-T beside mmdet's Swin-T.
# Results land in $OUT (default ./outputs/gpu_downstream).
# Usage: bash tools/benchmark/gpu_downstream.sh
set -euo pipefail
OUT=${OUT:-outputs/gpu_downstream}
mkdir -p "$OUT"
# the OpenMMLab wheels of .device/ go to /tmp/site (see .device/setup.sh)
if ! python3 -c "import mmdet" >/dev/null 2>&1; then
  bash .device/setup.sh
fi
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
# mmvmamba.kernels is served from ./kernels (package_dir in setup.cfg); in a plain
# source tree on the GPU box, a git-ignored link does the same without installing.
if ! python3 -c "import mmvmamba.kernels" >/dev/null 2>&1; then
  ln -sfn ../kernels mmvmamba/kernels
fi
python3 -c "import torch, triton, mmcv, mmdet; print('torch', torch.__version__, 'triton', triton.__version__, 'mmcv', mmcv.__version__, 'mmdet', mmdet.__version__, torch.cuda.get_device_name())" | tee "$OUT/env.txt"

echo "== (b) Mask R-CNN train step, batch 2, 800x1344, AMP: VMamba-T vs Swin-T"
python3 tools/benchmark/maskrcnn_step_speed.py --batch 2 --height 800 --width 1344 \
  --amp --iters 30 --warmup 5 --out "$OUT/maskrcnn_step.json" 2>&1 | tee "$OUT/maskrcnn_step.log" | grep -v Warning

echo "== (a) demo Mask R-CNN training (Triton kernels on CUDA)"
start=$(date +%s)
python3 tools/train.py configs/demo/maskrcnn_vmamba_t_demo-shapes.py \
  --work-dir "$OUT/demo" > "$OUT/demo_train.log" 2>&1
echo "demo training took $(( $(date +%s) - start )) s" | tee "$OUT/demo_time.txt"
grep -E "coco/bbox_mAP:|coco/segm_mAP:" "$OUT/demo_train.log" | sed 's/.*Epoch(val)/Epoch(val)/' | tee "$OUT/demo_map.txt"
python3 tools/test.py configs/demo/maskrcnn_vmamba_t_demo-shapes.py \
  "$(cat "$OUT/demo/last_checkpoint")" --work-dir "$OUT/demo_test" \
  --show-dir pictures > "$OUT/demo_test.log" 2>&1
grep -E "bbox_mAP_copypaste|segm_mAP_copypaste" "$OUT/demo_test.log" | tee -a "$OUT/demo_map.txt"
