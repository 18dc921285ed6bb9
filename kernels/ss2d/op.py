"""The fused SS2D core in Triton: cross scan, dt projection, selective scan and
cross merge without materialising the four directions.

The x projection of all four directions is ONE GEMM over pixels,
(B·L, Di) @ (Di, 4·(R+2N)), because the projection of direction k at time t
only depends on the pixel it visits. The scan kernels visit the pixels of
each direction by index arithmetic and recompute Δ = softplus(W_dt·dt + b)
from the R-dim vectors.

* The chunked scan kernels (:mod:`..scan`) with the directional layout
  (:mod:`.chunked`): one program walks the chunks of one direction; the four
  directions meet in the output, and the channel blocks in the gradients of
  the projections and parameters, through float32 atomics, so results are
  not bit-identical from run to run. Registered as
  ``mmvmamba::ss2d_scan_fwd`` / ``_bwd``. Used for d_state > 1, and for
  d_state 1 at batch > ``PAIR_MAX_BATCH`` below ``PAIR_MIN_PIXELS`` pixels
  (the faster there).
* d_state 1 (every released v2 model) at batch ≤ ``PAIR_MAX_BATCH`` (batch-1
  inference, detection at two images per GPU), from ``PAIR_MIN_PIXELS``
  pixels at every batch, and at every batch when the user asks for
  deterministic algorithms
  (``torch.use_deterministic_algorithms(True)``, which mmengine's
  ``randomness=dict(deterministic=True)`` sets): :mod:`.kernels` launched
  by :mod:`.pair`, one
  channel per thread and time inside the thread, the directions in two
  pairs, three phases (chunk summaries, carry chain, rescan) that merge the
  directions and sum every reduction in a fixed order: bit-identical
  results, no atomics. Registered as ``mmvmamba::ss2d_fwd`` / ``ss2d_bwd``.
  (d_state > 1 has no deterministic kernel; it warns or raises as
  PyTorch's own ops do.)

``torch.compile`` traces around the custom ops through their fake
implementations. Which path runs, and the pair kernels' tiles: :mod:`.config`.
The reference is :mod:`.reference`; the CPU scan :mod:`.cpu`.
"""
import warnings
from typing import Tuple

import torch
from torch import Tensor

from ..common.eager import _plain, impl_or_op
from .chunked import _ss2d_bwd_impl, ss2d_fwd, ss2d_fwd_impl
from .config import K, use_pairs
from .pair import _bwd1_impl, _fwd1_impl, fwd1, pad_x_proj

__all__ = ['ss2d_core_triton']


def _check(x: Tensor, x_proj_weight: Tensor, dt_projs_weight: Tensor,
           dt_projs_bias: Tensor, A_logs: Tensor, Ds: Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f'x must be (B, Di, H, W), got {tuple(x.shape)}')
    Di = x.shape[1]
    if x_proj_weight.dim() != 3 or x_proj_weight.shape[0] != K or \
            x_proj_weight.shape[2] != Di:
        raise ValueError(f'x_proj_weight must be (4, R + 2N, {Di}), got '
                         f'{tuple(x_proj_weight.shape)}')
    R, N = dt_projs_weight.shape[-1], A_logs.shape[-1]
    if x_proj_weight.shape[1] != R + 2 * N:
        raise ValueError(f'x_proj_weight has {x_proj_weight.shape[1]} rows, '
                         f'expected dt_rank + 2*d_state = {R} + 2*{N}')
    if dt_projs_weight.shape != (K, Di, R):
        raise ValueError(f'dt_projs_weight must be (4, {Di}, R), got '
                         f'{tuple(dt_projs_weight.shape)}')
    if dt_projs_bias.shape != (K, Di):
        raise ValueError(f'dt_projs_bias must be (4, {Di}), got '
                         f'{tuple(dt_projs_bias.shape)}')
    if A_logs.shape != (K * Di, N) or Ds.shape != (K * Di, ):
        raise ValueError(f'A_logs must be (4*{Di}, N) and Ds (4*{Di},), got '
                         f'{tuple(A_logs.shape)} and {tuple(Ds.shape)}')


def _not_deterministic(N: int) -> None:
    msg = (
        f'mmvmamba ss2d_core with d_state={N} has no deterministic CUDA '
        'kernel (only d_state 1 has); its gradients use float32 atomics. '
        'Use a d_state 1 model, or torch.use_deterministic_algorithms(True, '
        'warn_only=True) to accept this.')
    if torch.is_deterministic_algorithms_warn_only_enabled():
        warnings.warn(msg)
    else:
        raise RuntimeError(msg)


def ss2d_core_triton(x: Tensor, x_proj_weight: Tensor, dt_projs_weight: Tensor,
                     dt_projs_bias: Tensor, A_logs: Tensor,
                     Ds: Tensor) -> Tensor:
    """Fused SS2D core; same contract as :func:`ss2d_core_ref`.

    x (B, Di, H, W) in either memory format → (B, Di, H, W) float32 in
    channels_last memory format (NCHW x is copied to channels_last first).
    """
    _check(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds)
    Bsz, Di, H, W = x.shape
    L = H * W
    N = A_logs.shape[1]
    params = (x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds)
    # only a plain CUDA tensor outside compilation has a stream to ask (fake
    # tensors of torch.compile's tracing or of a memory estimate have none,
    # and Dynamo cannot trace the question)
    d1 = use_pairs(
        N, Bsz, L,
        type(x) is Tensor and x.is_cuda and not torch.compiler.is_compiling()
        and torch.cuda.is_current_stream_capturing())
    if not d1 and torch.are_deterministic_algorithms_enabled():
        _not_deterministic(N)
    # One copy to NHWC pays for itself: each direction then reads contiguous
    # channel vectors (H100, VMamba-T stage 1, bf16 forward of the former
    # kernels: 6.3 ms from NCHW vs 1.4 ms from NHWC).
    x = x.contiguous(memory_format=torch.channels_last)
    need_grad = torch.is_grad_enabled() and (x.requires_grad
                                             or any(t.requires_grad
                                                    for t in params))
    dtype = _gemm_dtype(x)
    if need_grad and _plain((x, ) + params):
        # eager training: the x projection, the core and their backward in
        # one autograd node
        return _Core.apply(x, *params, d1, dtype)
    _, _, x_dbl, dt_w, dt_b, a, Ds32 = _operands(x, *params, d1, dtype)
    if d1:
        return impl_or_op(_fwd1_impl, fwd1, x, x_dbl, dt_w, dt_b, a, Ds32)[0]
    return impl_or_op(ss2d_fwd_impl, ss2d_fwd, x, x_dbl, dt_w, dt_b, a, Ds32,
                      need_grad)[0]


def _operands(x: Tensor, x_proj_weight: Tensor, dt_projs_weight: Tensor,
              dt_projs_bias: Tensor, A_logs: Tensor, Ds: Tensor, d1: bool,
              dtype: torch.dtype) -> Tuple[Tensor, ...]:
    """What the kernels read besides x (channels_last): x's (B·L, Di) NHWC
    view and the projection weight (4J, Di), both in the GEMM's ``dtype``;
    x_dbl = their product, (B, L, 4J), one GEMM over pixels (rows padded for
    aligned dt-projection GEMMs when ``d1``); the dt weight, the flat
    float32 bias, A_logs (pair kernels, which take A = -exp(A_logs)) or A
    (chunked kernels), and D in float32."""
    Bsz, Di, H, W = x.shape
    if d1:
        x_proj_weight = pad_x_proj(x_proj_weight, dt_projs_weight.shape[2])
    wcat = x_proj_weight.reshape(-1, Di).to(dtype)
    xv = x.permute(0, 2, 3, 1).reshape(-1, Di).to(dtype)
    x_dbl = torch.mm(xv, wcat.t()).view(Bsz, H * W, -1)
    a = A_logs.float() if d1 else -torch.exp(A_logs.float())
    return (xv, wcat, x_dbl, dt_projs_weight.contiguous(),
            dt_projs_bias.reshape(-1).float(), a, Ds.float())


def _gemm_dtype(x: Tensor) -> torch.dtype:
    """The dtype of the x projection's GEMM: autocast's, else x's."""
    dev = x.device.type
    if torch.is_autocast_enabled(dev) and x.dtype != torch.float64:
        return torch.get_autocast_dtype(dev)
    return x.dtype


class _Core(torch.autograd.Function):
    """The eager training call: the x projection (one GEMM over pixels into
    x_dbl), the scan kernels (pair or chunked) and, in the backward, the
    kernels' backward and the projection's two GEMMs, as one autograd node.
    The custom ops' path (compile, fake tensors) computes the same with the
    projection as separate aten ops and autograd nodes. Here they are one
    node, and dx adds the projection's part in its GEMM (``addmm``): ten
    autograd nodes and four aten ops fewer per call, a forward + backward
    at (2, 16, 4²) 610-647 µs of host against 652-724 (dev CPU, launches
    stubbed, docs/benchmarks.md). (The same for Linear2d lost: a Python
    autograd function costs more than the C++ nodes it would replace.)"""

    @staticmethod
    def forward(ctx, x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs,
                Ds, d1: bool, dtype: torch.dtype):
        xv, wcat, x_dbl, dt_w, dt_b, a, Ds32 = _operands(
            x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds, d1,
            dtype)
        if d1:
            y, state = _fwd1_impl(x, x_dbl, dt_w, dt_b, a, Ds32)
        else:
            y, state = ss2d_fwd_impl(x, x_dbl, dt_w, dt_b, a, Ds32, True)
        ctx.save_for_backward(x, xv, wcat, x_dbl, dt_w, dt_b, a, Ds32, state)
        # the padding rows of wcat (the pair kernels' aligned x_dbl)
        ctx.d1, ctx.zeros = d1, wcat.shape[0] // K - x_proj_weight.shape[1]
        ctx.dtypes = (x_proj_weight.dtype, dt_projs_weight.dtype,
                      dt_projs_bias.dtype, A_logs.dtype, Ds.dtype)
        return y

    @staticmethod
    def backward(ctx, gy):
        x, xv, wcat, x_dbl, dt_w, dt_b, a, Ds32, state = ctx.saved_tensors
        if ctx.d1:
            dx, dxdbl, dW, dvec = _bwd1_impl(x, x_dbl, dt_w, dt_b, a, Ds32, gy,
                                             state)
            dA, dD, dbias = dvec.unbind(0)  # dA: A_logs' gradient
        else:
            dx, dxdbl, dW, dbias, dA, dD = _ss2d_bwd_impl(
                x, x_dbl, dt_w, dt_b, a, Ds32, gy, state)
            dA = dA * a  # A = -exp(A_logs): dA_logs = dA · A
        Bsz, Di, H, W = x.shape
        dxdbl = dxdbl.reshape(-1, wcat.shape[0])
        # dx: the scan's part plus the projection's, in one GEMM (x's NHWC
        # view, channels_last, is the (B·L, Di) matrix)
        dx2d = dx.permute(0, 2, 3, 1).reshape(-1, Di)
        if dx2d.dtype == dxdbl.dtype:
            dx2d = torch.addmm(dx2d, dxdbl, wcat)
        else:  # x wider than the GEMM (autocast): as autograd would add
            dx2d = dx2d + torch.mm(dxdbl, wcat).to(dx2d.dtype)
        dx = dx2d.view(Bsz, H, W, Di).permute(0, 3, 1, 2)
        dwcat = torch.mm(dxdbl.t(), xv).view(K, -1, Di)[:, ctx.zeros:]
        wd, dtd, bd, ad, dd = ctx.dtypes
        return (dx, dwcat.to(wd), dW.to(dtd), dbias.view(K, Di).to(bd),
                dA.view(a.shape).to(ad), dD.to(dd), None, None)
