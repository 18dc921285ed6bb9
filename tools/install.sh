#!/usr/bin/env bash
# One-shot environment set-up for mmvmamba: creates .venv and installs the pinned
# OpenMMLab stack (mmcv 2.1.0 built with ops), torch, triton and mmvmamba itself.
# Re-running is quick: a stamp file records a finished install of the same recipe.
#
# Environment knobs:
#   PYTHON=python3.11            interpreter used to create .venv
#   VENV=.venv                   where the environment lives
#   MMVMAMBA_WHEEL_CACHE=DIR     extra folder searched for a prebuilt mmcv wheel (CI: ../shared/wheels)
#   TORCH_SPEC="torch==2.14.1 torchvision==0.29.1"  torch pair to install when none is present
#   MAX_JOBS=N                   parallel compile jobs for the mmcv build
#   TORCH_CUDA_ARCH_LIST=9.0     CUDA archs for the mmcv build when nvcc and a GPU are present
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
TORCH_SPEC="${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
MMCV_VERSION=2.1.0
LOCAL_WHEELS="$ROOT/.cache/wheels"    # mmcv wheels built here are kept for the next run
START=$(date +%s)

say() { printf '\033[1m[install]\033[0m %s\n' "$*"; }
fail() {
  printf '\033[31m[install] FAILED:\033[0m %s\n' "$1" >&2
  shift || true
  for hint in "$@"; do printf '  -> %s\n' "$hint" >&2; done
  exit 1
}
# pip's index lookups: a brief outage of the index reads as "no versions found"
# (seen once in CI for mmdet 3.3.0 right after mmengine came from the same index),
# so each step that asks the network is tried three times before the install fails.
net() {
  local try
  for try in 1 2 3; do
    "$@" && return 0
    if (( try < 3 )); then
      say "step \"$STEP\" failed (try $try of 3); trying again in $(( 30 * try )) s"
      sleep $(( 30 * try ))
    fi
  done
  return 1
}
trap 'fail "step \"$STEP\" stopped with an error (see the output above)" "re-run: make install (finished steps are skipped)" "troubleshooting: README.md#troubleshooting"' ERR
STEP=start

RECIPE_HASH=$(cat tools/install.sh setup.cfg setup.py 2>/dev/null | sha256sum | cut -c1-16)
STAMP="$VENV/.mmvmamba-install-$RECIPE_HASH"
if [[ -f "$STAMP" ]] && "$VENV/bin/python" -c "import mmvmamba, mmcv.ops" >/dev/null 2>&1; then
  say "environment $VENV is up to date (delete $STAMP to force a re-install)"
  exit 0
fi

STEP="create $VENV"
if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating $VENV with $($PYTHON --version 2>&1)"
  "$PYTHON" -m venv "$VENV"
fi
PY="$ROOT/$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)
# setuptools >= 82 dropped pkg_resources, which mmcv's setup.py and mmengine's
# 'mmdet::' configs import; torch would otherwise upgrade it.
CONSTRAINTS="$ROOT/$VENV/mmvmamba-constraints.txt"
printf 'setuptools<82\nnumpy<2.4\nmmcv==%s\n' "$MMCV_VERSION" > "$CONSTRAINTS"
PIPI=("${PIP[@]}" install -c "$CONSTRAINTS")
"${PIP[@]}" install -q --upgrade "pip>=24" >/dev/null 2>&1 || true

STEP="build tools"
say "build tools: setuptools<82 (mmcv and mmengine still import pkg_resources), wheel, ninja"
net "${PIPI[@]}" -q "setuptools<82" wheel ninja "numpy<2.4" psutil
# mmcv imports mmengine: install it first so a cached mmcv wheel can be checked
net "${PIPI[@]}" -q "mmengine==0.10.7"

STEP="torch"
if "$PY" -c "import torch, torchvision" >/dev/null 2>&1; then
  say "keeping the installed torch $("$PY" -c 'import torch; print(torch.__version__)') / torchvision $("$PY" -c 'import torchvision; print(torchvision.__version__)')"
else
  say "installing $TORCH_SPEC (large download on a machine without a local copy)"
  # shellcheck disable=SC2086
  net "${PIPI[@]}" -q $TORCH_SPEC || fail "could not install $TORCH_SPEC" \
    "set TORCH_SPEC to a torch/torchvision pair available to pip, e.g. TORCH_SPEC='torch==2.14.1 torchvision==0.29.1'"
fi
"$PY" -c "import torchvision.ops; import torch; torch.ops.torchvision.nms" >/dev/null 2>&1 || fail \
  "torchvision does not match torch ('torchvision::nms does not exist')" \
  "install a matching pair, e.g.: $VENV/bin/pip install torch==2.14.1 torchvision==0.29.1"

STEP="mmcv"
have_mmcv() { "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'; from mmcv.ops import nms, RoIAlign" >/dev/null 2>&1; }
if have_mmcv; then
  say "mmcv $MMCV_VERSION with ops already installed"
else
  mkdir -p "$LOCAL_WHEELS"
  for cache in ${MMVMAMBA_WHEEL_CACHE:-} "$LOCAL_WHEELS"; do
    [[ -d "$cache" ]] || continue
    if ls "$cache"/mmcv-$MMCV_VERSION-*.whl >/dev/null 2>&1; then
      say "trying cached mmcv wheel from $cache"
      if "${PIP[@]}" install -q --no-deps --force-reinstall --no-index --find-links "$cache" "mmcv==$MMCV_VERSION" \
          && have_mmcv; then
        say "cached mmcv wheel works with this torch"
        break
      fi
      say "cached wheel in $cache does not fit this torch/python; ignoring it"
      "${PIP[@]}" uninstall -q -y mmcv >/dev/null 2>&1 || true
    fi
  done
  if ! have_mmcv; then
    BUILD=$(mktemp -d)
    say "building mmcv $MMCV_VERSION with ops from the PyPI sdist in $BUILD (about 30 min on 2 CPU cores, 4 min on 16)"
    net "${PIP[@]}" download -q --no-deps --no-binary :all: --no-build-isolation -d "$BUILD" "mmcv==$MMCV_VERSION"
    tar xzf "$BUILD/mmcv-$MMCV_VERSION.tar.gz" -C "$BUILD"
    # torch >= 2.14 headers need C++20; mmcv hard-codes -std=c++17 for cxx and nvcc
    sed -i 's/-std=c++17/-std=c++20/g' "$BUILD/mmcv-$MMCV_VERSION/setup.py"
    export MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}"
    if command -v nvcc >/dev/null 2>&1 && "$PY" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
      export FORCE_CUDA=1
      export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')}"
      say "CUDA ops for TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST"
    fi
    "${PIP[@]}" wheel -q --no-build-isolation --no-deps -w "$LOCAL_WHEELS" "$BUILD/mmcv-$MMCV_VERSION"
    "${PIP[@]}" install -q --no-deps --force-reinstall "$LOCAL_WHEELS"/mmcv-$MMCV_VERSION-*.whl
    have_mmcv || fail "mmcv built but 'import mmcv.ops' fails" "see the build log above; check that gcc supports C++20"
    rm -rf "$BUILD"
    say "mmcv wheel kept in $LOCAL_WHEELS for the next install"
  fi
fi

STEP="OpenMMLab stack"
say "installing mmengine 0.10.7, mmdet 3.3.0, mmsegmentation 1.2.2, mmpretrain 1.2.0 and their undeclared deps"
# mmcv is installed above: pin it so pip never replaces it with the op-less sdist.
net "${PIPI[@]}" -q "mmcv==$MMCV_VERSION" "mmengine==0.10.7" "mmdet==3.3.0" "mmsegmentation==1.2.2" \
  "mmpretrain==1.2.0" ftfy regex model-index pycocotools shapely terminaltables \
  timm matplotlib opencv-python-headless pytest flake8 isort yapf "numpy<2.4" "setuptools<82"
# tools and their tests: ONNX export (tools/export.py) and OpenMMLab's mim.
# openmim without its declared deps: they pull openxlab, which pins an old
# setuptools and requests; mim itself needs only these.
net "${PIPI[@]}" -q onnx onnxscript tabulate pandas colorama requests
net "${PIPI[@]}" -q --no-deps "openmim==0.3.9"
# mmpretrain 1.2.0 crashes at import with transformers >= 5; we need none at all
"${PIP[@]}" uninstall -q -y transformers >/dev/null 2>&1 || true
have_mmcv || fail "mmcv lost its ops while installing the stack" "re-run make install"

STEP="mmvmamba"
say "installing mmvmamba (editable)"
"${PIP[@]}" install -q --no-deps --no-build-isolation -e .

STEP="check"
"$PY" - <<'PYCHECK'
import torch, mmcv, mmcv.ops, mmengine, mmdet.models, mmseg.models, mmpretrain.models, triton
import mmvmamba, mmvmamba.kernels
print(f'[install] ok: torch {torch.__version__}, triton {triton.__version__}, mmcv {mmcv.__version__} (ops), '
      f'mmengine {mmengine.__version__}, mmvmamba {mmvmamba.__version__}, CUDA available: {torch.cuda.is_available()}')
PYCHECK
touch "$STAMP"
say "done in $(( $(date +%s) - START )) s; activate with: source $VENV/bin/activate"
