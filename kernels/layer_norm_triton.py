"""LayerNorm over the innermost dimension in memory in Triton (the last of
a contiguous tensor, the channels of a channels_last map), with the output
written directly in the dtype its consumer wants.

Under autocast ``F.layer_norm`` returns float32, and the next linear layer
casts that to 16 bits in a separate kernel. Here the normalisation is
computed in float32 and stored once in ``out_dtype``. The statistics are
float32 and defined as PyTorch's (``rstd = 1/sqrt(var + eps)``).

C is specialised (not ``do_not_specialize``): knowing that C is a multiple
of 16 lets the compiler prove the rows aligned and load 16 bytes per thread
instead of one element (PTX of both kernels, sm_90: 97 scalar global loads
against 8 ``v4`` loads in the backward); a model has a few widths, so a few
compilations. H200, VMamba-T stage 1 (128, 56², 96), forward 0.220 → 0.056
ms (do_bench, two calls), at its memory floor (1.0-1.2× at stages 1-4).

The backward is one Triton kernel too (``mmvmamba::layer_norm_bwd``): it
reads the kept tensor and the gradient in their own dtypes, writes dx and
one row of weight/bias partial sums per program, summed by one fixed-order
``sum``: deterministic, no atomics. It replaced PyTorch's LayerNorm backward
fed with the saved statistics, which needed the gradient and the kept
tensor cast to float32 first (two elementwise passes) and ran its own two
kernels (grad-input, then gamma/beta). H200, one run, GPU time of forward +
backward (``tools/benchmark/bench_layernorm.py``) at VMamba-T stages 1-4:
0.244 / 0.152 / 0.072 / 0.045 ms against 0.870 / 0.385 / 0.263 / 0.099 for
that former backward and 1.232 / 0.424 / 0.245 / 0.084 for ``F.layer_norm``
and a cast.

The forward is the custom op ``mmvmamba::layer_norm_fwd`` (an opaque call
for ``torch.compile`` and fake tensors), and so is its backward. In eager
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

from ._launch import Launcher
from ._util import cdiv, next_power_of_2
from .eager import (_plain, cast_like, eager_call, eager_function,
                    impl_or_op)

__all__ = ['layer_norm_triton']


@triton.jit(do_not_specialize=['M'])
def _ln_fwd_kernel(x_ptr, w_ptr, b_ptr, y_ptr, mean_ptr, rstd_ptr, xhat_ptr,
                   M, C, eps, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr,
                   STORE_XHAT: tl.constexpr, STORE_STATS: tl.constexpr):
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
    if STORE_STATS:
        tl.store(mean_ptr + rows, mean, mask=mask_r)
        tl.store(rstd_ptr + rows, rstd, mask=mask_r)


_LN_FWD = Launcher(_ln_fwd_kernel)


def _blocks(C: int) -> Tuple[int, int, int]:
    """(BLOCK_M rows, BLOCK_C, warps): about 4k elements per program."""
    BC = next_power_of_2(C)
    BM = max(1, min(64, 4096 // BC))
    return BM, BC, 4 if BC * BM <= 4096 else 8


def _ln_fwd_impl(x: Tensor, weight: Tensor, bias: Tensor, eps: float,
                 out_dtype: torch.dtype,
                 store_xhat: bool) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    C = weight.shape[0]  # x's innermost dimension in memory
    M = x.numel() // C
    y = torch.empty_like(x, dtype=out_dtype)  # x's strides
    mean = torch.empty(M, dtype=torch.float32, device=x.device)
    rstd = torch.empty(M, dtype=torch.float32, device=x.device)
    xhat = (torch.empty_like(x, dtype=out_dtype) if store_xhat else
            x.new_empty((0, ), dtype=out_dtype))
    if M:
        BM, BC, warps = _blocks(C)
        _LN_FWD[(cdiv(M, BM), )](
            x, weight, bias, y, mean, rstd, xhat if store_xhat else y, M, C,
            eps, BM, BC, store_xhat, True, num_warps=warps)
    return y, mean, rstd, xhat


def _ln_infer(x: Tensor, weight: Tensor, bias: Tensor, eps: float,
              out_dtype: torch.dtype) -> Tensor:
    """The forward alone, for calls without a gradient to compute: one
    allocation and one launch (no statistics, no autograd node). The H200
    host of 2026-12-05 took 5.8 µs per allocation and 15 µs for the
    autograd function that the training forward needs."""
    C = weight.shape[0]
    M = x.numel() // C
    y = torch.empty_like(x, dtype=out_dtype)
    if M:
        BM, BC, warps = _blocks(C)
        _LN_FWD[(cdiv(M, BM), )](x, weight, bias, y, y, y, y, M, C, eps, BM,
                                 BC, False, False, num_warps=warps)
    return y


_ln_fwd = torch.library.custom_op(
    'mmvmamba::layer_norm_fwd', mutates_args=())(
        _ln_fwd_impl)


@_ln_fwd.register_fake
def _(x, weight, bias, eps, out_dtype, store_xhat):
    M = x.numel() // weight.shape[0]
    return (torch.empty_like(x, dtype=out_dtype),
            x.new_empty((M, ), dtype=torch.float32),
            x.new_empty((M, ), dtype=torch.float32),
            torch.empty_like(x, dtype=out_dtype)
            if store_xhat else x.new_empty((0, ), dtype=out_dtype))


def _setup(ctx, inputs, output):
    x, weight, bias, _, _, store_xhat = inputs
    ctx.x_dtype = x.dtype
    # the 16-bit x̂ instead of the input (the backward reads either)
    kept = output[3] if store_xhat else x
    ctx.save_for_backward(kept, weight, bias, output[1], output[2])
    ctx.store_xhat = store_xhat


@triton.jit(do_not_specialize=['M'])
def _ln_bwd_kernel(k_ptr, dy_ptr, w_ptr, mean_ptr, rstd_ptr, dx_ptr, part_ptr,
                   M, C, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr,
                   SUB: tl.constexpr, XHAT: tl.constexpr):
    """dx for SUB blocks of BLOCK_M rows, and this program's sums of
    dy·x̂ and dy over its rows (row ``pid`` of part, (P, 2, C)). ``k`` is
    x̂ (XHAT) or the input x."""
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_C)
    mask_c = cols < C
    w = tl.load(w_ptr + cols, mask=mask_c, other=0.).to(tl.float32)
    dw = tl.zeros((BLOCK_M, BLOCK_C), dtype=tl.float32)
    db = tl.zeros((BLOCK_M, BLOCK_C), dtype=tl.float32)
    for s in tl.static_range(SUB):
        rows = (pid.to(tl.int64) * SUB + s) * BLOCK_M + tl.arange(0, BLOCK_M)
        mask_r = rows < M
        mask = mask_r[:, None] & mask_c[None, :]
        offs = rows[:, None] * C + cols[None, :]
        k = tl.load(k_ptr + offs, mask=mask, other=0.).to(tl.float32)
        dy = tl.load(dy_ptr + offs, mask=mask, other=0.).to(tl.float32)
        rstd = tl.load(rstd_ptr + rows, mask=mask_r, other=0.)
        if XHAT:
            xhat = k
        else:
            mean = tl.load(mean_ptr + rows, mask=mask_r, other=0.)
            xhat = tl.where(mask, (k - mean[:, None]) * rstd[:, None], 0.)
        wdy = dy * w[None, :]
        c1 = tl.sum(xhat * wdy, 1) / C
        c2 = tl.sum(wdy, 1) / C
        dx = (wdy - (xhat * c1[:, None] + c2[:, None])) * rstd[:, None]
        tl.store(dx_ptr + offs, dx.to(dx_ptr.dtype.element_ty), mask=mask)
        dw += dy * xhat
        db += dy
    base = part_ptr + pid.to(tl.int64) * 2 * C + cols
    tl.store(base, tl.sum(dw, 0), mask=mask_c)
    tl.store(base + C, tl.sum(db, 0), mask=mask_c)


_LN_BWD = Launcher(_ln_bwd_kernel)

#: row blocks per backward program: its partial sums are one (2, C) row.
#: H200, forward + backward GPU ms at VMamba-T stages 1-4, batch 128
#: (bench_layernorm.py --sub 1 2 4): 1: 0.283 0.199 0.078 0.035;
#: 2: 0.244 0.152 0.072 0.045; 4: 0.237 0.141 0.082 0.042. Weighted by the
#: norms per stage in a VMamba-T step (6, 6, 24, 6), 2 is the least.
_BWD_SUB = 2


def _ln_bwd_impl(kept: Tensor, dy: Tensor, weight: Tensor, mean: Tensor,
                 rstd: Tensor, xhat: bool,
                 x_dtype: torch.dtype) -> Tuple[Tensor, Tensor]:
    """(dx in ``x_dtype``, float32 (2, C) = [dweight, dbias])."""
    C = weight.shape[0]
    M = kept.numel() // C
    if dy.stride() != kept.stride():  # read in kept's memory order
        dy = torch.empty_like(kept, dtype=dy.dtype).copy_(dy)
    dx = torch.empty_like(kept, dtype=x_dtype)
    BM, BC, warps = _blocks(C)
    progs = cdiv(M, BM * _BWD_SUB)
    part = torch.empty((progs, 2, C), dtype=torch.float32,
                       device=kept.device)
    if M:
        _LN_BWD[(progs, )](
            kept, dy, weight, mean, rstd, dx, part, M, C, BM, BC, _BWD_SUB,
            xhat, num_warps=warps)
    return dx, part.sum(0)


_ln_bwd = torch.library.custom_op(
    'mmvmamba::layer_norm_bwd', mutates_args=())(
        _ln_bwd_impl)


@_ln_bwd.register_fake
def _(kept, dy, weight, mean, rstd, xhat, x_dtype):
    return (torch.empty_like(kept, dtype=x_dtype),
            kept.new_empty((2, weight.shape[0]), dtype=torch.float32))


def _backward(ctx, dy, _dmean, _drstd, _dxhat):
    kept, weight, bias, mean, rstd = ctx.saved_tensors
    dx, dwb = impl_or_op(_ln_bwd_impl, _ln_bwd, kept, dy, weight, mean, rstd,
                         ctx.store_xhat, ctx.x_dtype)
    dw, db = dwb.unbind(0)
    return (dx, cast_like(dw, weight), cast_like(db, bias), None, None, None)


_ln_fwd.register_autograd(_backward, setup_context=_setup)
_LayerNorm = eager_function(_ln_fwd_impl, _setup, _backward, outputs=1)


def layer_norm_triton(x: Tensor, weight: Tensor, bias: Tensor, eps: float,
                      out_dtype: torch.dtype, dim: int = -1) -> Tensor:
    """LayerNorm over dimension ``dim`` of ``x``, returned in ``out_dtype``
    (float32 arithmetic) with x's strides. ``dim`` is the last one of a
    contiguous ``x``, or 1 of a 4-D channels_last ``x`` (a (B, C, H, W) map
    normalised over C, no permute)."""
    if dim == 1 and x.dim() == 4:
        if not x.is_contiguous(memory_format=torch.channels_last):
            raise ValueError('layer_norm_triton over dim 1 needs a 4-D '
                             'channels_last input')
    elif dim not in (-1, x.dim() - 1):
        raise ValueError(f'layer_norm_triton normalises the last dimension '
                         f'or dim 1 of a 4-D input, got dim={dim}')
    elif not x.is_contiguous():
        raise ValueError('layer_norm_triton needs a contiguous input (the '
                         'normalised dimension last)')
    C = x.shape[dim]
    if weight.shape != (C, ) or bias.shape != (C, ):
        raise ValueError(f'weight and bias must be ({C},), got '
                         f'{tuple(weight.shape)} and {tuple(bias.shape)}')
    grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                        or bias.requires_grad)
    if not grad and _plain((x, weight, bias)):
        return _ln_infer(x, weight, bias, float(eps), out_dtype)
    store_xhat = grad and out_dtype.itemsize < x.dtype.itemsize
    return eager_call(_LayerNorm, _ln_fwd, x, weight, bias, float(eps),
                      out_dtype, store_xhat)[0]
