"""mmvmamba: VMamba backbones for OpenMMLab (mmdet, mmseg, mmpretrain).

Importing it registers the ``mmvmamba`` model scope and lets
``torch.load(weights_only=True)`` read MMEngine's own checkpoints (resume);
it never imports mmdet, mmseg or mmpretrain.
"""
from .engine import allow_mmengine_checkpoints
from .registry import MODELS
from .version import __version__

allow_mmengine_checkpoints()

__all__ = ['__version__', 'MODELS']
