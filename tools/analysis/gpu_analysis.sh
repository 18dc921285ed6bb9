#!/usr/bin/env bash
# The issue-5 pictures on one GPU (run from the repository root):
#  (1) ERF of VMamba-T beside Swin-T, ConvNeXt-T and ResNet-50 (random init,
#      1024², the demo images), (2) throughput / pixels/s / peak memory from
#      224² to 1024², fp32 and AMP fp16, (3) optionally (FLOPS=1) the FLOPs
#      table against the official numbers (device-independent; CPU is fine).
# Results land in $OUT (default ./outputs/analysis).
# Usage: bash tools/analysis/gpu_analysis.sh
# (ERF_SIZE, ERF_IMAGES, SIZES, BATCH, ITERS override the defaults, e.g. for a
# quick CPU check: ERF_SIZE=64 ERF_IMAGES=1 SIZES="32 64" BATCH=1 ITERS=1)
set -euo pipefail
OUT=${OUT:-outputs/analysis}
ERF_SIZE=${ERF_SIZE:-1024}
ERF_IMAGES=${ERF_IMAGES:-50}
SIZES=${SIZES:-224 288 384 512 640 768 1024}
BATCH=${BATCH:-128}
ITERS=${ITERS:-20}
mkdir -p "$OUT"
source tools/benchmark/device_env.sh
python3 -c "import torch, triton, timm, mmpretrain; print('torch', torch.__version__, 'triton', triton.__version__, 'timm', timm.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')" | tee "$OUT/env.txt"

echo "== (1) ERF at ${ERF_SIZE}², VMamba-T vs Swin-T / ConvNeXt-T / ResNet-50"
ERF_MODELS="vmamba-t swin-t convnext-t resnet50"
python3 tools/analysis/erf.py $ERF_MODELS --size "$ERF_SIZE" \
  --num-images "$ERF_IMAGES" --out "$OUT/erf" 2>&1 | grep -v Warning | tee "$OUT/erf.log" ||
python3 tools/analysis/erf.py $ERF_MODELS --size "$ERF_SIZE" \
  --num-images "$ERF_IMAGES" --synthetic --out "$OUT/erf" 2>&1 | grep -v Warning | tee "$OUT/erf.log"

echo "== (2) scaling over $SIZES, batch $BATCH at 224² (constant pixels)"
for dtype in fp16 fp32; do
  python3 tools/analysis/scaling.py vmamba-t swin-t convnext-t resnet50 \
    --dtype "$dtype" --batch-224 "$BATCH" --sizes $SIZES --iters "$ITERS" \
    --warmup "$(( ITERS < 5 ? ITERS : 5 ))" --out "$OUT/scaling_$dtype" 2>&1 |
    grep -v Warning | tee "$OUT/scaling_$dtype.log"
done

if [ "${FLOPS:-0}" = 1 ]; then
  echo "== (3) FLOPs against the official numbers"
  python3 tools/analysis/flops.py tiny tiny_s2l5 small small_s1l20 base \
    base_s1l20 vanilla_tiny vanilla_small vanilla_base \
    configs/maskrcnn_vmamba_t_coco.py configs/upernet_vmamba_t_ade20k-512x512-160k.py \
    --out "$OUT/flops.md" 2>&1 | grep -v Warning | tee "$OUT/flops.log"
fi
