#!/usr/bin/env bash
# Sourced by the GPU scripts (run from the repository root on the GPU box):
# installs the OpenMMLab wheels of .device/ into /tmp/site when missing and
# makes this source tree importable.
if ! python3 -c "import mmdet, mmseg, mmpretrain" >/dev/null 2>&1; then
  bash .device/setup.sh >/dev/null
fi
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
# mmvmamba.kernels is served from ./kernels: package_dir in setup.cfg for an
# install, mmvmamba/__init__.py in this plain source tree.
