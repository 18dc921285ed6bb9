#!/usr/bin/env bash
# Puts the Python sources of a revision into .device/base (carried to the
# GPU machine with .device), for gpu_speed.sh's ab stage: the pair kernels of
# that revision timed beside this tree's in one call. With NAME, into
# .device/NAME instead: one more candidate for the stage's AB_TREES.
#   bash tools/benchmark/prepare_base.sh REV [NAME]
set -euo pipefail
rev=${1:?usage: prepare_base.sh REV [NAME]}
name=${2:-base}
[[ $name =~ ^[A-Za-z0-9_-]+$ && $name != new && $name != wheels ]] \
  || { echo "prepare_base.sh: NAME must be a plain word other than 'new' and 'wheels'" >&2; exit 2; }
sha=$(git rev-parse --verify "$rev^{commit}")
rm -rf ".device/$name"
mkdir -p ".device/$name"
git archive "$sha" setup.cfg mmvmamba kernels tools | tar -x -C ".device/$name"
echo "$sha" > ".device/$name/REV"
echo "$name $sha in .device/$name ($(du -sh ".device/$name" | cut -f1))"
