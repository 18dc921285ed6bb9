#!/usr/bin/env bash
# The speed issue's measurements on one GPU, in one call (run from the
# repository root on the GPU box). STAGES picks what runs (default: all):
#   tests   the kernel/model test suite on the GPU; a failure is printed loudly
#           and makes the script exit non-zero at the end
#   sweep   configuration sweep of the SS2D pair kernels (sweep_scan.py;
#           SWEEP_ARGS adds arguments)
#   ncu     Nsight Compute on one SS2D core forward + backward at T-stage1,
#           pair and chunked kernels (ncu_scan.py; NCU_SHAPE picks the shape,
#           NCU_KERNELS="pair" one of them)
#   ab      the pair kernels of this tree against those of a base revision
#           (.device/base, made by tools/benchmark/prepare_base.sh REV before
#           the call), bench_kernels.py in each tree in turn, AB_ROUNDS times
#           (default 2; AB_SHAPES limits the shapes; AB_PROFILE="T-stage1"
#           adds each kernel's time at those shapes, AB_MODELS="vmamba_t
#           swin_t" bench_models.py of each tree, AB_MODELS_ROUNDS times;
#           AB_TREES="t8 chain new" times more candidates in the same call,
#           each .device/NAME made by prepare_base.sh REV NAME, "new" this tree)
#   kernels the SS2D core against its memory floor and the public
#           recurrence kernels (bench_kernels.py, each library in its own
#           process), merged into one markdown table (kernels.md)
#   dispatch the pair against the chunked kernels on the small maps of
#           VMamba-T/S/B at batch 128, GPU and wall ms (dispatch_gpu.py;
#           DISPATCH_ARGS adds arguments): the data for config.use_pairs
#   layernorm the LayerNorm op at VMamba-T's shapes against its floor and
#           PyTorch (bench_layernorm.py; LN_ARGS adds arguments)
#   host    the host's cost per op call and per small training step
#           (host_cost.py): where an eager step waits for Python
#   models  VMamba-T/S/B vs Swin and ConvNeXt, batch 128 + batch-1 latency,
#           wall / host / GPU ms per step, a training step from a CUDA graph,
#           VMamba's AMP step with the backbone's training graphs (MODELS
#           picks the models, MODELS_ARGS adds arguments, e.g.
#           "--compile-models vmamba_t swin_t")
#   profile where a VMamba-T AMP training step spends its GPU time
#           (PROFILE_ARGS adds arguments, e.g. --pairs)
#   maskrcnn Mask R-CNN train step, VMamba-T vs mmdet Swin-T (batch 2, AMP)
#   scaling pixel throughput 224² -> 1024² (AMP fp16)
#   demo    the demo Mask R-CNN trained and tested on the GPU
# Stages run in the order given. Results land in $RES (default
# outputs/gpu_speed); each stage has a time cap. The device tool brings back
# at most 8 files: there, RES=/tmp/res and `tar czf $OUT/res.tgz -C /tmp res`.
set -uo pipefail
RES=${RES:-outputs/gpu_speed}
STAGES=${STAGES:-tests sweep kernels layernorm models profile maskrcnn scaling demo}
mkdir -p "$RES"
RES=$(cd "$RES" && pwd)  # the ab stage runs from another directory
source tools/benchmark/device_env.sh
nvidia-smi -L | tee "$RES/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$RES/gpu.txt"
# the host too: an eager step's speed is the host's (its CPU and driver)
{ nvidia-smi --query-gpu=driver_version,clocks.max.sm --format=csv,noheader
  lscpu | grep -E 'Model name|^CPU\(s\)'; } 2>/dev/null | tee -a "$RES/gpu.txt"
status=0

stage_tests() {
  # TEST_JOBS pytest processes (default 3), the test functions dealt round-robin: the
  # suite's time is mostly Triton compiling, which is CPU-bound. TESTS_SKIP (a
  # grep -E pattern of test ids) leaves tests out: by default the whole-model
  # compile test, CPU-only (the interpreter; CI runs it), which took over 300 s
  # among eight processes on the GPU machine and timed its process out
  echo "== tests"
  local jobs=${TEST_JOBS:-3} j rc=0 pids=() parts=()
  python3 -m pytest ${TESTS:-tests/test_kernels tests/test_models tests/test_engine/test_graphed_train.py} \
    --collect-only -q -p no:cacheprovider 2>/dev/null | grep '::' | sed 's/\[.*//' | uniq \
    | grep -v -E "${TESTS_SKIP:-test_whole_model_compiles_without_graph_breaks}" > "$RES/tests.ids"
  for j in $(seq 0 $((jobs - 1))); do
    awk -v n="$jobs" -v j="$j" 'NR % n == j' "$RES/tests.ids" > "$RES/tests.ids$j"
    [[ -s "$RES/tests.ids$j" ]] || continue  # no ids: pytest would run everything
    timeout "${T_TESTS:-300}" python3 -m pytest $(cat "$RES/tests.ids$j") -q -rf -p no:cacheprovider \
      --durations=5 > "$RES/tests$j.log" 2>&1 &
    pids+=($!); parts+=($j)
  done
  for j in "${!pids[@]}"; do
    wait "${pids[$j]}" || rc=$?
    echo "tests part ${parts[$j]}: $(grep -E '(passed|failed|error)' "$RES/tests${parts[$j]}.log" | tail -1)"
  done
  cat "$RES"/tests[0-9]*.log > "$RES/tests.log"; rm -f "$RES"/tests[0-9]*.log "$RES"/tests.ids*
  if [[ $rc -ne 0 ]]; then
    status=1
    echo "!!!!!!!! GPU TEST SUITE FAILED (rc=$rc) !!!!!!!!"
    grep -E "^FAILED|^ERROR" "$RES/tests.log" | head -30
  fi
}
stage_sweep() {
  echo "== sweep"
  timeout "${T_SWEEP:-300}" python3 tools/benchmark/sweep_scan.py --json "$RES/sweep.json" \
    ${SWEEP_ARGS:-} > "$RES/sweep.log" 2>&1
  echo "rc=$?"; grep -v -i warn "$RES/sweep.log" | tail -40
}
stage_ncu() {
  echo "== ncu"
  local v
  for v in ${NCU_KERNELS:-pair chunked}; do
    timeout "${T_NCU:-150}" ncu --profile-from-start off --section SpeedOfLight \
      --section Occupancy --section LaunchStats --section WarpStateStats \
      --section SchedulerStats --section MemoryWorkloadAnalysis \
      --metrics 'regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio' \
      python3 tools/benchmark/ncu_scan.py --shape "${NCU_SHAPE:-T-stage1}" \
      $([[ $v == chunked ]] && echo --chunked) > "$RES/ncu_$v.txt" 2>&1
    echo "$v rc=$?"
    grep -E "^  [a-z_]+kernel|^  [a-zA-Z_].*\(|Duration|Achieved Occupancy|Theoretical Occupancy|Registers Per|Memory Throughput|DRAM Throughput|Compute \(SM\) Throughput|Issue Slots Busy|No Eligible|Warp Cycles Per Issued|Grid Size|Block Size" \
      "$RES/ncu_$v.txt" | head -120
  done
}
stage_kernels() {
  echo "== kernels"
  local lib
  timeout "${T_KERNELS:-200}" python3 tools/benchmark/bench_kernels.py --json "$RES/kernels.json" \
    > "$RES/kernels.log" 2>&1
  echo "rc=$?"; grep -v -i warn "$RES/kernels.log"
  timeout "${T_KERNELS:-200}" python3 tools/benchmark/bench_kernels.py --legacy \
    --json "$RES/kernels_legacy.json" > "$RES/kernels_legacy.log" 2>&1
  echo "legacy rc=$?"; grep -v -i warn "$RES/kernels_legacy.log"
  # public kernels last, each in its own process (accelerated-scan can fault)
  for lib in fla accel; do
    timeout "${T_PUBLIC:-150}" python3 tools/benchmark/bench_kernels.py --public $lib \
      --json "$RES/kernels_$lib.json" > "$RES/kernels_$lib.log" 2>&1
    echo "$lib rc=$?"; grep -v -i warn "$RES/kernels_$lib.log" | tail -20
  done
  python3 tools/benchmark/bench_kernels.py --report "$RES"/kernels*.json | tee "$RES/kernels.md"
}
# "$@" in a tree: "new" is this one, any other name .device/NAME (base, or a
# candidate of AB_TREES), importing that tree's code
in_tree() {
  local tree=$1; shift
  (if [[ $tree != new ]]; then cd ".device/$tree"; fi
   PYTHONPATH="/tmp/site:$PWD" "$@")
}
stage_ab() {
  local trees=${AB_TREES:-new} tree
  echo "== ab: base ($(cat .device/base/REV 2>/dev/null)) against: $trees"
  for tree in base $trees; do
    if [[ $tree != new && ! -f .device/$tree/REV ]]; then
      echo "no .device/$tree: run tools/benchmark/prepare_base.sh REV $tree before the call"
      status=1; return
    fi
    [[ $tree == base || $tree == new ]] || echo "$tree: $(cat ".device/$tree/REV")"
  done
  local round shapes=${AB_SHAPES:+--shapes $AB_SHAPES}
  declare -A jsons=()
  for round in $(seq "${AB_ROUNDS:-2}"); do
    for tree in base $trees; do
      in_tree $tree timeout "${T_AB:-150}" python3 tools/benchmark/bench_kernels.py $shapes \
        --json "$RES/ab_$tree$round.json" > "$RES/ab_$tree$round.log" 2>&1
      echo "$tree $round rc=$?"
      jsons[$tree]+=${jsons[$tree]:+,}$RES/ab_$tree$round.json
    done
  done
  for tree in $trees; do
    echo "-- base against $tree"
    python3 tools/benchmark/bench_kernels.py --compare "${jsons[base]}" "${jsons[$tree]}" \
      | tee "$RES/ab_$tree.md"
  done
  # AB_PROFILE (e.g. "T-stage1 MaskRCNN-s1"): each kernel's GPU time per
  # forward + backward in every tree (this tree's ncu_scan.py --torch-profile)
  local shape script=$PWD/tools/benchmark/ncu_scan.py
  for shape in ${AB_PROFILE:-}; do
    for tree in base $trees; do
      in_tree $tree timeout 60 python3 "$script" --torch-profile 5 --shape "$shape" \
        > "$RES/ab_prof_${tree}_$shape.log" 2>&1
      echo "$tree $shape profile rc=$?"; grep -v -i warn "$RES/ab_prof_${tree}_$shape.log" | head -12
    done
  done
  # AB_MODELS (e.g. "vmamba_t swin_t"): the models too, one bench_models.py
  # process per tree holding all of them (AB_MODELS_ARGS: its flags, default
  # --graph-train), base then the others, AB_MODELS_ROUNDS times (default 1):
  # a model whose code is the same in all trees (Swin-T) shows the machine's drift
  local mround
  if [[ -n ${AB_MODELS:-} ]]; then
    for mround in $(seq "${AB_MODELS_ROUNDS:-1}"); do
      for tree in base $trees; do
        in_tree $tree timeout "${T_AB_MODELS:-300}" python3 tools/benchmark/bench_models.py \
          ${AB_MODELS_ARGS:---graph-train} --models $AB_MODELS --iters 10 \
          --json "$RES/ab_${tree}_models$mround.json" > "$RES/ab_${tree}_models$mround.log" 2>&1
        echo "$tree models round $mround rc=$?"
        grep -v -i -E "warn|^ *_warn" "$RES/ab_${tree}_models$mround.log" | tail -16
      done
    done
  fi
}
stage_dispatch() {
  echo "== dispatch"
  timeout "${T_DISPATCH:-240}" python3 tools/benchmark/dispatch_gpu.py --json "$RES/dispatch.json" \
    ${DISPATCH_ARGS:-} > "$RES/dispatch.log" 2>&1
  echo "rc=$?"; grep -v -i warn "$RES/dispatch.log"
}
stage_layernorm() {
  echo "== layernorm"
  timeout "${T_LN:-150}" python3 tools/benchmark/bench_layernorm.py --json "$RES/layernorm.json" \
    ${LN_ARGS:-} > "$RES/layernorm.log" 2>&1
  echo "rc=$?"; grep -v -i warn "$RES/layernorm.log"
}
stage_host() {
  echo "== host"
  timeout "${T_HOST:-150}" python3 tools/benchmark/host_cost.py --json "$RES/host.json" ${HOST_ARGS:-} \
    > "$RES/host.log" 2>&1
  echo "rc=$?"; grep -v -i warn "$RES/host.log" | head -${HOST_ROWS:-16}
}
stage_models() {
  echo "== models"
  timeout "${T_MODELS:-300}" python3 tools/benchmark/bench_models.py --latency --breakdown --graph-train --backbone-graph \
    --models ${MODELS:-vmamba_t swin_t convnext_t vmamba_s swin_s vmamba_b swin_b} ${MODELS_ARGS:-} \
    --json "$RES/models.json" > "$RES/models.log" 2>&1
  echo "rc=$?"; grep -v -i warn "$RES/models.log"
}
stage_profile() {
  echo "== profile"
  timeout "${T_PROFILE:-120}" python3 tools/benchmark/profile_model.py --model vmamba_t \
    ${PROFILE_ARGS:-} > "$RES/profile.log" 2>&1
  echo "rc=$?"; grep -v -i warn "$RES/profile.log" | head -${PROFILE_ROWS:-45}
}
stage_maskrcnn() {
  echo "== maskrcnn"
  timeout "${T_MASKRCNN:-200}" python3 tools/benchmark/maskrcnn_step_speed.py --batch 2 --height 800 \
    --width 1344 --amp --predict --iters "${STEP_ITERS:-15}" --warmup 3 --out "$RES/maskrcnn_step.json" \
    > "$RES/maskrcnn_step.log" 2>&1
  echo "rc=$?"; grep -v -i warn "$RES/maskrcnn_step.log" | tail -8
}
stage_scaling() {
  echo "== scaling"
  timeout "${T_SCALING:-170}" python3 tools/analysis/scaling.py vmamba-t swin-t convnext-t --dtype fp16 \
    --batch-224 "${BATCH:-64}" --sizes ${SIZES:-224 384 512 768 1024} --iters 10 --warmup 3 \
    --out "$RES/scaling_fp16" > "$RES/scaling.log" 2>&1
  echo "rc=$?"; grep -v -i warn "$RES/scaling.log" | tail -12
}
stage_demo() {
  echo "== demo"
  local start=$(date +%s)
  timeout "${T_DEMO:-170}" python3 tools/train.py configs/demo/maskrcnn_vmamba_t_demo-shapes.py \
    --work-dir "$RES/demo" > "$RES/demo_train.log" 2>&1
  echo "rc=$? demo training took $(( $(date +%s) - start )) s"
  grep -E "coco/bbox_mAP:|coco/segm_mAP:" "$RES/demo_train.log" | sed 's/.*Epoch(val)/Epoch(val)/' | cut -c1-160
  if [[ -f "$RES/demo/last_checkpoint" ]]; then
    timeout 60 python3 tools/test.py configs/demo/maskrcnn_vmamba_t_demo-shapes.py \
      "$(cat "$RES/demo/last_checkpoint")" --work-dir "$RES/demo_test" --show-dir pictures \
      > "$RES/demo_test.log" 2>&1
    grep -E "bbox_mAP_copypaste|segm_mAP_copypaste" "$RES/demo_test.log"
  fi
}

for stage in $STAGES; do
  if ! declare -F "stage_$stage" >/dev/null; then
    echo "unknown stage '$stage' (known: tests sweep ncu ab kernels dispatch layernorm host models profile maskrcnn scaling demo)"
    exit 2
  fi
  "stage_$stage"
done
exit $status
