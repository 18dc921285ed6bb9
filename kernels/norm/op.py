"""LayerNorm over the innermost dimension in memory in Triton (the last of
a contiguous tensor, the channels of a channels_last map), with the output
written directly in the dtype its consumer wants.

Under autocast ``F.layer_norm`` returns float32, and the next linear layer
casts that to 16 bits in a separate kernel. Here the normalisation is
computed in float32 and stored once in ``out_dtype``. The statistics are
float32 and defined as PyTorch's (``rstd = 1/sqrt(var + eps)``).

The kernels are :mod:`.kernels`, their launch configuration :mod:`.config`,
the reference :mod:`.reference`. H200, VMamba-T stage 1 (128, 56², 96),
forward 0.220 → 0.056 ms once C was specialised (do_bench, two calls), at
its memory floor (1.0-1.2× at stages 1-4).

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
(:func:`..common.eager.eager_call`).

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
from torch import Tensor

from ..common.eager import (_plain, cast_like, eager_call, eager_function,
                            impl_or_op)
from ..common.launch import Launcher
from ..common.util import cdiv, unfilled
from . import config
from .kernels import ln_bwd_kernel, ln_fwd_kernel

__all__ = ['layer_norm_triton']

#: the kernels' launchers (Triton's per-call Python skipped)
_LN_FWD = Launcher(ln_fwd_kernel)
_LN_BWD = Launcher(ln_bwd_kernel)


@unfilled
def _ln_fwd_impl(x: Tensor, weight: Tensor, bias: Tensor, eps: float,
                 out_dtype: torch.dtype,
                 store_xhat: bool) -> Tuple[Tensor, Tensor, Tensor]:
    """y in ``out_dtype`` with x's strides; the float32 statistics as one
    (2, M) tensor, mean then rstd (one allocation); x̂ in ``out_dtype``
    when ``store_xhat``, else an empty tensor."""
    C = weight.shape[0]  # x's innermost dimension in memory
    M = x.numel() // C
    y = torch.empty_like(x, dtype=out_dtype)  # x's strides
    stats = torch.empty((2, M), dtype=torch.float32, device=x.device)
    xhat = (torch.empty_like(x, dtype=out_dtype) if store_xhat else
            x.new_empty((0, ), dtype=out_dtype))
    if M:
        BM, BC, warps = config.blocks(C)
        _LN_FWD[(cdiv(M, BM), )](
            x, weight, bias, y, stats, xhat if store_xhat else y, M, C, eps,
            BM, BC, store_xhat, True, num_warps=warps)
    return y, stats, xhat


@unfilled
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
        BM, BC, warps = config.blocks(C)
        _LN_FWD[(cdiv(M, BM), )](x, weight, bias, y, y, y, M, C, eps, BM, BC,
                                 False, False, num_warps=warps)
    return y


_ln_fwd = torch.library.custom_op(
    'mmvmamba::layer_norm_fwd', mutates_args=())(
        _ln_fwd_impl)


@_ln_fwd.register_fake
def _(x, weight, bias, eps, out_dtype, store_xhat):
    M = x.numel() // weight.shape[0]
    return (torch.empty_like(x, dtype=out_dtype),
            x.new_empty((2, M), dtype=torch.float32),
            torch.empty_like(x, dtype=out_dtype)
            if store_xhat else x.new_empty((0, ), dtype=out_dtype))


def _setup(ctx, inputs, output):
    x, weight, bias, _, _, store_xhat = inputs
    ctx.x_dtype = x.dtype
    # the 16-bit x̂ instead of the input (the backward reads either)
    kept = output[2] if store_xhat else x
    ctx.save_for_backward(kept, weight, bias, output[1])
    ctx.store_xhat = store_xhat


@unfilled
def _ln_bwd_impl(kept: Tensor, dy: Tensor, weight: Tensor, stats: Tensor,
                 xhat: bool,
                 x_dtype: torch.dtype) -> Tuple[Tensor, Tensor]:
    """(dx in ``x_dtype``, float32 (2, C) = [dweight, dbias])."""
    C = weight.shape[0]
    M = kept.numel() // C
    if dy.stride() != kept.stride():  # read in kept's memory order
        dy = torch.empty_like(kept, dtype=dy.dtype).copy_(dy)
    dx = torch.empty_like(kept, dtype=x_dtype)
    BM, BC, warps = config.blocks(C)
    progs = cdiv(M, BM * config.BWD_SUB)
    part = torch.empty((progs, 2, C), dtype=torch.float32,
                       device=kept.device)
    if M:
        _LN_BWD[(progs, )](
            kept, dy, weight, stats, dx, part, M, C, BM, BC, config.BWD_SUB,
            xhat, num_warps=warps)
    return dx, part.sum(0)


_ln_bwd = torch.library.custom_op(
    'mmvmamba::layer_norm_bwd', mutates_args=())(
        _ln_bwd_impl)


@_ln_bwd.register_fake
def _(kept, dy, weight, stats, xhat, x_dtype):
    return (torch.empty_like(kept, dtype=x_dtype),
            kept.new_empty((2, weight.shape[0]), dtype=torch.float32))


def _backward(ctx, dy, _dstats, _dxhat):
    kept, weight, bias, stats = ctx.saved_tensors
    dx, dwb = impl_or_op(_ln_bwd_impl, _ln_bwd, kept, dy, weight, stats,
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
