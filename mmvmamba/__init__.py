"""mmvmamba: VMamba backbones for OpenMMLab (mmdet, mmseg, mmpretrain)."""
from .version import __version__
from .registry import MODELS

__all__ = ['__version__', 'MODELS']
