#!/usr/bin/env bash
# Puts the Python sources of a base revision into .device/base (carried to
# the GPU machine with .device), for gpu_speed.sh's ab stage: the pair
# kernels of that revision timed beside this tree's in one call.
#   bash tools/benchmark/prepare_base.sh REV
set -euo pipefail
rev=${1:?usage: prepare_base.sh REV}
sha=$(git rev-parse --verify "$rev^{commit}")
rm -rf .device/base
mkdir -p .device/base
git archive "$sha" setup.cfg mmvmamba kernels tools | tar -x -C .device/base
echo "$sha" > .device/base/REV
echo "base $sha in .device/base ($(du -sh .device/base | cut -f1))"
