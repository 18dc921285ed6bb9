"""LayerNorm in plain PyTorch with the output in its consumer's dtype:
``F.layer_norm`` followed by the cast, over the last dimension or over the
channels (dim 1) of a (B, C, H, W) map. The ground truth of the Triton op, and
the path of other layouts and of ``torch.compile`` (whose Inductor fuses the
norm with its neighbours itself).
"""
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['layer_norm_ref']


def layer_norm_ref(x: Tensor, weight: Tensor, bias: Tensor, eps: float,
                   out_dtype: torch.dtype, dim: int = -1) -> Tensor:
    """``F.layer_norm`` over ``dim`` (-1, or 1 of a 4-D map, moved last and
    back), cast to ``out_dtype``."""
    if dim == 1:
        return F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], weight, bias,
                            eps).to(out_dtype).permute(0, 3, 1, 2)
    return F.layer_norm(x, x.shape[-1:], weight, bias, eps).to(out_dtype)
