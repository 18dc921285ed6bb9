"""The cross scan and cross merge as custom ops with autograd (each is the
other's backward), launching :func:`.kernels.cross_kernel`; the reference is
:mod:`.reference`.
"""
import torch
from torch import Tensor

from ..common.util import cdiv
from .kernels import cross_kernel

__all__ = ['cross_scan_triton', 'cross_merge_triton']

#: the tile of one program: channels, rows, columns
_BC, _BH, _BW = 4, 16, 32


def _launch(x: Tensor, y: Tensor, merge: bool) -> None:
    B, C, H, W = x.shape
    NW = cdiv(W, _BW)
    grid = (cdiv(H, _BH) * NW, cdiv(C, _BC), B)
    cross_kernel[grid](
        x, y, C, H, W, NW, *x.stride(), MERGE=merge, BC=_BC, BH=_BH, BW=_BW)


@torch.library.custom_op('mmvmamba::cross_scan', mutates_args=())
def _cross_scan(x: Tensor) -> Tensor:
    B, C, H, W = x.shape
    y = x.new_empty((B, 4, C, H * W))
    _launch(x, y, merge=False)
    return y


@_cross_scan.register_fake
def _(x):
    B, C, H, W = x.shape
    return x.new_empty((B, 4, C, H * W))


@torch.library.custom_op('mmvmamba::cross_merge', mutates_args=())
def _cross_merge(y: Tensor) -> Tensor:
    B, K, C, H, W = y.shape
    out = y.new_empty((B, C, H, W))
    _launch(out, y.contiguous(), merge=True)
    return out.view(B, C, H * W)


@_cross_merge.register_fake
def _(y):
    B, K, C, H, W = y.shape
    return y.new_empty((B, C, H * W))


def _scan_setup(ctx, inputs, output):
    ctx.hw = inputs[0].shape[2:]


def _scan_backward(ctx, gy):
    B, K, C, L = gy.shape
    H, W = ctx.hw
    return _cross_merge(gy.reshape(B, K, C, H, W)).view(B, C, H, W)


def _merge_setup(ctx, inputs, output):
    ctx.hw = inputs[0].shape[3:]


def _merge_backward(ctx, gx):
    B, C, L = gx.shape
    H, W = ctx.hw
    return _cross_scan(gx.view(B, C, H, W)).view(B, 4, C, H, W)


_cross_scan.register_autograd(_scan_backward, setup_context=_scan_setup)
_cross_merge.register_autograd(_merge_backward, setup_context=_merge_setup)


def cross_scan_triton(x: Tensor) -> Tensor:
    """(B, C, H, W), any memory format → (B, 4, C, H·W) in the four orders."""
    if x.dim() != 4:
        raise ValueError(f'cross_scan expects x of shape (B, C, H, W), got '
                         f'{tuple(x.shape)}')
    return _cross_scan(x)


def cross_merge_triton(y: Tensor) -> Tensor:
    """(B, 4, C, H, W) → (B, C, H·W): the adjoint of :func:`cross_scan_triton`.
    """
    if y.dim() != 5 or y.shape[1] != 4:
        raise ValueError(f'cross_merge expects y of shape (B, 4, C, H, W), '
                         f'got {tuple(y.shape)}')
    return _cross_merge(y)
