"""The cross scan and cross merge in plain PyTorch: the four scan orders of an
H×W map (spec §3.1) and their adjoint. Differentiable by autograd, any device.

The four directions of an H×W map are row-major, column-major, reversed
row-major and reversed column-major, stacked as (B, 4, C, L) with L = H·W.
"""
import torch
from torch import Tensor

__all__ = ['cross_scan_ref', 'cross_merge_ref']


def cross_scan_ref(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, 4, C, H·W) in the four scan orders."""
    B, C, H, W = x.shape
    row = x.flatten(2)
    col = x.transpose(2, 3).flatten(2)
    return torch.stack([row, col, row.flip(-1), col.flip(-1)], dim=1)


def cross_merge_ref(y: Tensor) -> Tensor:
    """(B, 4, C, H, W) -> (B, C, H·W): the adjoint of :func:`cross_scan_ref`.

    ``y[:, k]`` holds direction k's sequence laid out as an H×W buffer (the
    official layout), i.e. position t of direction k is ``y[:, k].flatten(2)[..., t]``.
    """
    B, K, C, H, W = y.shape
    assert K == 4, f'cross_merge expects 4 directions, got {K}'
    y = y.flatten(3)
    y = y[:, 0:2] + y[:, 2:4].flip(-1)
    col = y[:, 1].view(B, C, W, H).transpose(2, 3).flatten(2)
    return y[:, 0] + col
