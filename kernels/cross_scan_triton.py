"""Triton cross scan / cross merge (spec §3.1) as custom ops with autograd.

One program copies a (channels × rows × columns) tile: the scan reads it once
(any memory format of x, through strides) and writes it to the four routes;
the merge reads the four routes and writes their float32 sum. Sizes are
runtime arguments, so a new image size does not recompile.
"""
import torch
import triton
import triton.language as tl
from torch import Tensor

from ._util import cdiv

__all__ = ['cross_scan_triton', 'cross_merge_triton']

_BC, _BH, _BW = 4, 16, 32


@triton.jit(
    do_not_specialize=['C', 'H', 'W', 'NW', 's_b', 's_c', 's_h', 's_w'])
def _cross_kernel(x_ptr, y_ptr, C, H, W, NW, s_b, s_c, s_h, s_w,
                  MERGE: tl.constexpr, BC: tl.constexpr, BH: tl.constexpr,
                  BW: tl.constexpr):
    """Scan: x (B, C, H, W) with strides s_* → y (B, 4, C, L) contiguous.
    Merge: y (B, 4, C, L) contiguous → x (B, C, H, W) with strides s_*.

    A program owns a (BC, BH, BW) tile: rows are contiguous in the row-major
    routes and columns in the column-major ones, so every route is written
    (or read) in contiguous runs (the compiler transposes through shared
    memory).
    """
    pid_hw = tl.program_id(0)
    pid_c = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    L = H * W
    hh = (pid_hw // NW) * BH + tl.arange(0, BH)
    ww = (pid_hw % NW) * BW + tl.arange(0, BW)
    c = pid_c * BC + tl.arange(0, BC)
    c3 = c[:, None, None]
    h3 = hh[None, :, None]
    w3 = ww[None, None, :]
    mask = (c3 < C) & (h3 < H) & (w3 < W)
    x_ptrs = x_ptr + b * s_b + c3 * s_c + h3 * s_h + w3 * s_w
    y_base = y_ptr + b * 4 * C * L + c3 * L
    t0 = h3 * W + w3
    t1 = w3 * H + h3
    if MERGE:
        acc = tl.load(y_base + t0, mask=mask, other=0.).to(tl.float32)
        acc += tl.load(y_base + C * L + t1, mask=mask, other=0.).to(tl.float32)
        acc += tl.load(
            y_base + 2 * C * L + (L - 1 - t0), mask=mask,
            other=0.).to(tl.float32)
        acc += tl.load(
            y_base + 3 * C * L + (L - 1 - t1), mask=mask,
            other=0.).to(tl.float32)
        tl.store(x_ptrs, acc.to(x_ptr.dtype.element_ty), mask=mask)
    else:
        v = tl.load(x_ptrs, mask=mask)
        tl.store(y_base + t0, v, mask=mask)
        tl.store(y_base + C * L + t1, v, mask=mask)
        tl.store(y_base + 2 * C * L + (L - 1 - t0), v, mask=mask)
        tl.store(y_base + 3 * C * L + (L - 1 - t1), v, mask=mask)


def _launch(x: Tensor, y: Tensor, merge: bool) -> None:
    B, C, H, W = x.shape
    NW = cdiv(W, _BW)
    grid = (cdiv(H, _BH) * NW, cdiv(C, _BC), B)
    _cross_kernel[grid](
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
