"""LayerNorm over the last (contiguous) dimension in Triton, with the output
written directly in the dtype its consumer wants.

Under autocast ``F.layer_norm`` returns float32, and the next linear layer
casts that to 16 bits in a separate kernel. Here the normalisation is
computed in float32 and stored once in ``out_dtype``. The statistics are
float32 and defined as PyTorch's (``rstd = 1/sqrt(var + eps)``), so the
backward is PyTorch's own LayerNorm backward kernel fed with them.

The forward is the custom op ``mmvmamba::layer_norm_fwd`` (an opaque call
for ``torch.compile`` and fake tensors); its backward is plain aten. In eager
mode on plain tensors the same function runs under a plain
``autograd.Function`` instead: the custom op's dispatcher and its generated
autograd wrapper cost several times the Python of the launch itself
(:func:`.eager.eager_call`).

What the backward keeps: when the output is 16-bit and the input wider (the
model's norms under autocast, whose input is the float32 residual stream or
scan output), the kernel also writes the normalised input
x̂ = (x − mean)·rstd in the output's dtype and the backward keeps that
instead of the float32 input: half the bytes, and the gradients carry x̂'s
16-bit rounding (the forward is unchanged). Otherwise it keeps the input, as
PyTorch does. Measured on an H200 (VMamba-T AMP training, batch 128, same
run): 1265 img/s against 1122 keeping the float32 input, peak memory 8.23
against 9.36 GiB.
"""
from typing import Tuple

import torch
import triton
import triton.language as tl
from torch import Tensor

from ._util import cdiv, next_power_of_2
from .eager import eager_call, eager_function

__all__ = ['layer_norm_triton']


@triton.jit(do_not_specialize=['M', 'C'])
def _ln_fwd_kernel(x_ptr, w_ptr, b_ptr, y_ptr, mean_ptr, rstd_ptr, xhat_ptr,
                   M, C, eps, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr,
                   STORE_XHAT: tl.constexpr):
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
    xhat = xc * rstd[:, None]
    y = xhat * w[None, :] + b[None, :]
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)
    if STORE_XHAT:
        tl.store(
            xhat_ptr + offs, xhat.to(xhat_ptr.dtype.element_ty), mask=mask)
    tl.store(mean_ptr + rows, mean, mask=mask_r)
    tl.store(rstd_ptr + rows, rstd, mask=mask_r)


def _blocks(C: int) -> Tuple[int, int, int]:
    """(BLOCK_M rows, BLOCK_C, warps): about 4k elements per program."""
    BC = next_power_of_2(C)
    BM = max(1, min(64, 4096 // BC))
    return BM, BC, 4 if BC * BM <= 4096 else 8


def _ln_fwd_impl(x: Tensor, weight: Tensor, bias: Tensor, eps: float,
                 out_dtype: torch.dtype,
                 store_xhat: bool) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    C = x.shape[-1]
    M = x.numel() // C
    y = torch.empty(x.shape, dtype=out_dtype, device=x.device)
    mean = torch.empty(M, dtype=torch.float32, device=x.device)
    rstd = torch.empty(M, dtype=torch.float32, device=x.device)
    xhat = torch.empty(
        x.shape if store_xhat else (0, ), dtype=out_dtype, device=x.device)
    if M:
        BM, BC, warps = _blocks(C)
        _ln_fwd_kernel[(cdiv(M, BM), )](
            x, weight, bias, y, mean, rstd, xhat if store_xhat else y, M, C,
            eps, BM, BC, store_xhat, num_warps=warps)
    return y, mean, rstd, xhat


_ln_fwd = torch.library.custom_op(
    'mmvmamba::layer_norm_fwd', mutates_args=())(
        _ln_fwd_impl)


@_ln_fwd.register_fake
def _(x, weight, bias, eps, out_dtype, store_xhat):
    M = x.numel() // x.shape[-1]
    return (x.new_empty(x.shape, dtype=out_dtype),
            x.new_empty((M, ), dtype=torch.float32),
            x.new_empty((M, ), dtype=torch.float32),
            x.new_empty(x.shape if store_xhat else (0, ), dtype=out_dtype))


def _setup(ctx, inputs, output):
    x, weight, bias, _, _, store_xhat = inputs
    ctx.x_dtype = x.dtype
    # the 16-bit x̂ instead of the input: the backward rebuilds x − mean
    kept = output[3] if store_xhat else x
    ctx.save_for_backward(kept, weight, bias, output[1], output[2])
    ctx.store_xhat = store_xhat


def _backward(ctx, dy, _dmean, _drstd, _dxhat):
    # PyTorch's own LayerNorm backward fed with the saved statistics, in
    # float32 as the forward. (A single-kernel Triton backward was slower in
    # the full training step: VMamba-T AMP training fell from 1285 to 1114
    # img/s on an H200 with it.)
    kept, weight, bias, mean, rstd = ctx.saved_tensors
    stats = kept.shape[:-1] + (1, )
    mean, rstd = mean.view(stats), rstd.view(stats)
    if ctx.store_xhat:
        # x − mean = x̂ / rstd, normalised around a zero mean
        x = kept.float() / rstd
        mean = torch.zeros_like(mean)
    else:
        x = kept.float()
    dx, dw, db = torch.ops.aten.native_layer_norm_backward(
        dy.float(), x, [x.shape[-1]], mean, rstd, weight.float(),
        bias.float(), [True, True, True])
    return (dx.to(ctx.x_dtype), dw.to(weight.dtype), db.to(bias.dtype), None,
            None, None)


_ln_fwd.register_autograd(_backward, setup_context=_setup)
_LayerNorm = eager_function(_ln_fwd_impl, _setup, _backward, outputs=1)


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
    store_xhat = (
        out_dtype.itemsize < x.dtype.itemsize
        and torch.is_grad_enabled()
        and (x.requires_grad or weight.requires_grad or bias.requires_grad))
    return eager_call(_LayerNorm, _ln_fwd, x, weight, bias, float(eps),
                      out_dtype, store_xhat)[0]
