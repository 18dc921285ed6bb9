"""LayerNorm over the last (contiguous) dimension in Triton, with the output
written directly in the dtype its consumer wants.

Under autocast ``F.layer_norm`` returns float32, and the next linear layer
casts that to 16 bits in a separate kernel (and its backward casts the
gradient back). Here the normalisation is computed in float32 and stored
once in ``out_dtype``; the backward reads the 16-bit gradient directly. The
statistics and the reductions are float32 as in PyTorch's kernel.

Registered as ``mmvmamba::layer_norm_fwd`` / ``_bwd`` custom ops, so
``torch.compile`` and CUDA graphs see one opaque call.
"""
import functools
from typing import Tuple

import torch
import triton
import triton.language as tl
from torch import Tensor

__all__ = ['layer_norm_triton']


@triton.jit(do_not_specialize=['M', 'C'])
def _ln_fwd_kernel(x_ptr, w_ptr, b_ptr, y_ptr, mean_ptr, rstd_ptr, M, C, eps,
                   BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_C)
    mask_r = rows < M
    mask_c = cols < C
    mask = mask_r[:, None] & mask_c[None, :]
    offs = rows[:, None] * C + cols[None, :]
    x = tl.load(x_ptr + offs, mask=mask, other=0.).to(tl.float32)
    mean = tl.sum(x, 1) / C
    xc = tl.where(mask, x - mean[:, None], 0.)
    rstd = 1. / tl.sqrt(tl.sum(xc * xc, 1) / C + eps)
    w = tl.load(w_ptr + cols, mask=mask_c, other=0.).to(tl.float32)
    b = tl.load(b_ptr + cols, mask=mask_c, other=0.).to(tl.float32)
    y = xc * rstd[:, None] * w[None, :] + b[None, :]
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)
    tl.store(mean_ptr + rows, mean, mask=mask_r)
    tl.store(rstd_ptr + rows, rstd, mask=mask_r)


@triton.jit(do_not_specialize=['M', 'C', 'rows_per_prog'])
def _ln_bwd_kernel(x_ptr, w_ptr, dy_ptr, mean_ptr, rstd_ptr, dx_ptr, dw_ptr,
                   db_ptr, M, C, rows_per_prog, BLOCK_M: tl.constexpr,
                   BLOCK_C: tl.constexpr):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_C)
    mask_c = cols < C
    w = tl.load(w_ptr + cols, mask=mask_c, other=0.).to(tl.float32)
    dw = tl.zeros((BLOCK_C, ), dtype=tl.float32)
    db = tl.zeros((BLOCK_C, ), dtype=tl.float32)
    row0 = pid.to(tl.int64) * rows_per_prog
    row1 = tl.minimum(row0 + rows_per_prog, M)
    for start in range(row0, row1, BLOCK_M):
        rows = start + tl.arange(0, BLOCK_M)
        mask_r = rows < row1
        mask = mask_r[:, None] & mask_c[None, :]
        offs = rows[:, None] * C + cols[None, :]
        x = tl.load(x_ptr + offs, mask=mask, other=0.).to(tl.float32)
        dy = tl.load(dy_ptr + offs, mask=mask, other=0.).to(tl.float32)
        mean = tl.load(mean_ptr + rows, mask=mask_r, other=0.)
        rstd = tl.load(rstd_ptr + rows, mask=mask_r, other=0.)
        xhat = tl.where(mask, (x - mean[:, None]) * rstd[:, None], 0.)
        wdy = dy * w[None, :]
        c1 = tl.sum(xhat * wdy, 1) / C
        c2 = tl.sum(wdy, 1) / C
        dx = (wdy - (xhat * c1[:, None] + c2[:, None])) * rstd[:, None]
        tl.store(dx_ptr + offs, dx.to(dx_ptr.dtype.element_ty), mask=mask)
        dw += tl.sum(dy * xhat, 0)
        db += tl.sum(dy, 0)
    tl.store(dw_ptr + pid * C + cols, dw, mask=mask_c)
    tl.store(db_ptr + pid * C + cols, db, mask=mask_c)


def _blocks(C: int) -> Tuple[int, int, int]:
    """(BLOCK_M rows, BLOCK_C, warps): about 4k elements per program."""
    BC = triton.next_power_of_2(C)
    BM = max(1, min(64, 4096 // BC))
    return BM, BC, 4 if BC * BM <= 4096 else 8


@functools.lru_cache(maxsize=None)
def _num_sms(device: torch.device) -> int:
    if device.type != 'cuda':
        return 2
    return torch.cuda.get_device_properties(device).multi_processor_count


@torch.library.custom_op('mmvmamba::layer_norm_fwd', mutates_args=())
def _ln_fwd(x: Tensor, weight: Tensor, bias: Tensor, eps: float,
            out_dtype: torch.dtype) -> Tuple[Tensor, Tensor, Tensor]:
    C = x.shape[-1]
    M = x.numel() // C
    y = torch.empty(x.shape, dtype=out_dtype, device=x.device)
    mean = torch.empty(M, dtype=torch.float32, device=x.device)
    rstd = torch.empty(M, dtype=torch.float32, device=x.device)
    if M:
        BM, BC, warps = _blocks(C)
        _ln_fwd_kernel[(triton.cdiv(M, BM), )](
            x, weight, bias, y, mean, rstd, M, C, eps, BM, BC,
            num_warps=warps)
    return y, mean, rstd


@_ln_fwd.register_fake
def _(x, weight, bias, eps, out_dtype):
    M = x.numel() // x.shape[-1]
    return (x.new_empty(x.shape, dtype=out_dtype),
            x.new_empty((M, ), dtype=torch.float32),
            x.new_empty((M, ), dtype=torch.float32))


@torch.library.custom_op('mmvmamba::layer_norm_bwd', mutates_args=())
def _ln_bwd(x: Tensor, weight: Tensor, dy: Tensor, mean: Tensor,
            rstd: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    C = x.shape[-1]
    M = x.numel() // C
    dy = dy.contiguous()
    dx = torch.empty_like(x)
    BM, BC, warps = _blocks(C)
    progs = max(1, min(triton.cdiv(M, BM), 4 * _num_sms(x.device)))
    rows = triton.cdiv(triton.cdiv(M, progs), BM) * BM
    progs = max(1, triton.cdiv(M, rows))
    f32 = dict(dtype=torch.float32, device=x.device)
    dw = torch.zeros((progs, C), **f32)
    db = torch.zeros((progs, C), **f32)
    if M:
        _ln_bwd_kernel[(progs, )](
            x, weight, dy, mean, rstd, dx, dw, db, M, C, rows, BM, BC,
            num_warps=warps)
    return dx, dw.sum(0), db.sum(0)


@_ln_bwd.register_fake
def _(x, weight, dy, mean, rstd):
    C = x.shape[-1]
    f32 = dict(dtype=torch.float32)
    return (torch.empty_like(x), x.new_empty((C, ), **f32),
            x.new_empty((C, ), **f32))


def _setup(ctx, inputs, output):
    x, weight, _, _, _ = inputs
    ctx.save_for_backward(x, weight, output[1], output[2])


def _backward(ctx, dy, _dmean, _drstd):
    x, weight, mean, rstd = ctx.saved_tensors
    dx, dw, db = _ln_bwd(x, weight, dy, mean, rstd)
    return dx, dw.to(weight.dtype), db.to(weight.dtype), None, None


_ln_fwd.register_autograd(_backward, setup_context=_setup)


def layer_norm_triton(x: Tensor, weight: Tensor, bias: Tensor, eps: float,
                      out_dtype: torch.dtype) -> Tensor:
    """LayerNorm over the last dimension of a contiguous ``x``, returned in
    ``out_dtype`` (float32 arithmetic)."""
    if not x.is_contiguous():
        raise ValueError('layer_norm_triton needs a contiguous input (the '
                         'normalised dimension last)')
    C = x.shape[-1]
    if weight.shape != (C, ) or bias.shape != (C, ):
        raise ValueError(f'weight and bias must be ({C},), got '
                         f'{tuple(weight.shape)} and {tuple(bias.shape)}')
    return _ln_fwd(x, weight, bias, float(eps), out_dtype)[0]
