#!/usr/bin/env bash
# Sourced by the GPU scripts (run from the repository root on the GPU box):
# installs the OpenMMLab wheels of .device/ into /tmp/site when missing and
# makes this source tree importable.
if ! python3 -c "import mmdet, mmseg, mmpretrain" >/dev/null 2>&1; then
  bash .device/setup.sh >/dev/null
fi
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
# mmvmamba.kernels is served from ./kernels (package_dir in setup.cfg); in a
# plain source tree a git-ignored link does the same without installing.
if ! python3 -c "import mmvmamba.kernels" >/dev/null 2>&1; then
  ln -sfn ../kernels mmvmamba/kernels
fi
