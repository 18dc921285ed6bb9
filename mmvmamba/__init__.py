"""mmvmamba: VMamba backbones for OpenMMLab (mmdet, mmseg, mmpretrain).

Importing it registers the ``mmvmamba`` model scope and routes MMEngine's
checkpoint loading (``load_from``, ``resume``, ``init_cfg``; every scheme:
local files, http(s), ``open-mmlab://``, ``torchvision://``, ``s3://``, ...)
through :func:`mmvmamba.checkpoint.safe_load`, the weights-only loader that
also reads official VMamba files; it never imports mmdet, mmseg or
mmpretrain.
"""
from .checkpoint import allow_mmengine_checkpoints
from .registry import MODELS
from .version import __version__

allow_mmengine_checkpoints()

__all__ = ['__version__', 'MODELS']
