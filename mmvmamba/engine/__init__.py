"""Runtime fixes for the released OpenMMLab stack on current PyTorch."""
from .safe_load import allow_mmengine_checkpoints

__all__ = ['allow_mmengine_checkpoints']
