"""The fused SS2D core in Triton: cross scan, dt projection, selective scan and
cross merge in one kernel per pass.

The x projection of all four directions is ONE GEMM over pixels,
(B·L, Di) @ (Di, 4·(R+2N)), because the projection of direction k at time t
only depends on the pixel it visits. The scan kernel then visits the pixels
of direction k by index arithmetic, recomputes Δ = softplus(W_dt·dt + b) from
the R-dim vectors, runs the float32 recurrence chunk by chunk and adds its
output into the merged map (atomics over the four directions). The backward
stores nothing but chunk-start states and recomputes.

Registered as ``mmvmamba::ss2d_scan_fwd`` / ``_bwd`` custom ops, so
``torch.compile`` traces around them.
"""
from typing import Tuple

import torch
import triton
from torch import Tensor

from ._env import env_choice
from .selective_scan_triton import (ScanLayout, block_config, scan_backward,
                                    scan_forward)

__all__ = ['ss2d_core_triton']

K = 4


def _dt_grad_gemm() -> bool:
    return env_choice('MMVMAMBA_DT_GRAD', ('kernel', 'gemm')) == 'gemm'


#: Backward variant (``MMVMAMBA_DT_GRAD=kernel|gemm``; sweep_scan.py
#: ``--dt-grad``). False (kernel): the gradients of the dt-rank vectors and of
#: ``W_dt`` are computed inside the scan kernel (two small GEMMs per chunk,
#: plus atomics). True (gemm): the kernel stores dz (float32, 4·B·Di·L) and
#: they are two batched GEMMs over the whole map, so the backward kernel has
#: no dot product and needs fewer registers
#: (tools/benchmark/kernel_resources.py). Same gradients up to summation order.
DT_GRAD_GEMM: bool = _dt_grad_gemm()


def _channels_last(x: Tensor) -> bool:
    return x.stride(1) == 1 and x.shape[1] > 1


def _layout(x: Tensor, x_dbl: Tensor, w: Tensor, N: int) -> ScanLayout:
    """Kernel strides for x (B, Di, H, W) and x_dbl (B, J, L) / (B, L, J)."""
    Bsz, Di, H, W = x.shape
    R = w.shape[2]
    J = R + 2 * N
    if _channels_last(x):  # x_dbl (B, L, 4J)
        sb, sp, sj = x_dbl.stride(0), x_dbl.stride(1), x_dbl.stride(2)
    else:  # x_dbl (B, 4J, L)
        sb, sj, sp = x_dbl.stride(0), x_dbl.stride(1), x_dbl.stride(2)
    su = (x.stride(0), 0, x.stride(1), x.stride(2), x.stride(3))
    sx = (sb, J * sj, sj, sp)
    return ScanLayout(
        G=K,
        DC=Di,
        H=H,
        W=W,
        N=N,
        R=R,
        u=su,
        delta=su,
        x=sx,
        y=su,
        w=(w.stride(0), w.stride(1), w.stride(2)),
        b_off=R * sj,
        c_off=(R + N) * sj,
        bc=sx,
        directional=True,
        proj=True)


def _empty_like_x(x: Tensor, zeros: bool = True) -> Tensor:
    fmt = torch.channels_last if _channels_last(x) else torch.contiguous_format
    y = torch.empty(
        x.shape, dtype=torch.float32, device=x.device, memory_format=fmt)
    return y.zero_() if zeros else y


@torch.library.custom_op('mmvmamba::ss2d_scan_fwd', mutates_args=())
def _ss2d_fwd(x: Tensor, x_dbl: Tensor, dt_w: Tensor, dt_b: Tensor, A: Tensor,
              Ds: Tensor, store_hs: bool) -> Tuple[Tensor, Tensor]:
    lay = _layout(x, x_dbl, dt_w, A.shape[1])
    y = _empty_like_x(x)
    hs = scan_forward(
        lay,
        x.shape[0],
        x,
        x,
        x_dbl,
        dt_w,
        A,
        Ds,
        dt_b,
        True,
        y,
        atomic_y=True,
        store_hs=store_hs)
    return y, hs


@_ss2d_fwd.register_fake
def _(x, x_dbl, dt_w, dt_b, A, Ds, store_hs):
    N = A.shape[1]
    Bsz, Di, H, W = x.shape
    _, T, NP, _ = block_config(N, dt_w.shape[2], H * W)
    fmt = torch.channels_last if _channels_last(x) else torch.contiguous_format
    y = torch.empty(
        x.shape, dtype=torch.float32, device=x.device, memory_format=fmt)
    shape = ((Bsz * K * Di, triton.cdiv(H * W, T), NP) if store_hs else (1, ))
    return y, x.new_empty(shape, dtype=torch.float32)


@torch.library.custom_op('mmvmamba::ss2d_scan_bwd', mutates_args=())
def _ss2d_bwd(
        x: Tensor, x_dbl: Tensor, dt_w: Tensor, dt_b: Tensor, A: Tensor,
        Ds: Tensor, gy: Tensor,
        hs: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    lay = _layout(x, x_dbl, dt_w, A.shape[1])
    # gy is read with x's strides.
    gy = gy.float().contiguous(
        memory_format=torch.channels_last if _channels_last(x) else torch.
        contiguous_format)
    dx = _empty_like_x(x)
    dxdbl = torch.zeros(x_dbl.shape, dtype=torch.float32, device=x.device)
    Bsz, Di, H, W = x.shape
    dz = dx  # not written: the kernel's dt-rank GEMMs consume dz
    if DT_GRAD_GEMM:  # dz[k, d, b, h, w]: direction k's, by pixel
        dz = x.new_empty((K, Di, Bsz, H, W), dtype=torch.float32)
        st = dz.stride()
        lay = lay._replace(delta=(st[2], st[0], st[1], st[3], st[4]))
    dA, dD, dbias, dW = scan_backward(
        lay,
        Bsz,
        x,
        x,  # Δ is recomputed from x_dbl, never read
        x_dbl,
        dt_w,
        A,
        Ds,
        dt_b,
        True,
        gy,
        hs,
        dx,
        dz,
        dxdbl,
        atomic_u=True,
        dz_out=DT_GRAD_GEMM)
    if DT_GRAD_GEMM:
        dW = _dt_rank_grads(dz, x_dbl, dt_w, dxdbl, _channels_last(x))
    return (dx.to(x.dtype), dxdbl.to(x_dbl.dtype), dW, dbias, dA, dD)


def _dt_rank_grads(dz: Tensor, x_dbl: Tensor, dt_w: Tensor, dxdbl: Tensor,
                   channels_last: bool) -> Tensor:
    """d dt_r = W_dtᵀ dz into the dt rows of ``dxdbl``; returns dW_dt.

    dz: (K, Di, B, H, W) float32; x_dbl and dxdbl: (B, K·J, L), or
    (B, L, K·J) when ``channels_last``. Per direction two GEMMs over all B·L
    pixels: (R, Di) @ (Di, B·L) and (Di, B·L) @ (B·L, R).
    """
    R = dt_w.shape[2]
    dz = dz.view(K, dz.shape[1], -1)
    if channels_last:
        rows = dxdbl.unflatten(2, (K, -1))[..., :R].permute(2, 3, 0, 1)
        dtr = x_dbl.unflatten(2, (K, -1))[..., :R].permute(2, 3, 0, 1)
    else:
        rows = dxdbl.unflatten(1, (K, -1))[:, :, :R].permute(1, 2, 0, 3)
        dtr = x_dbl.unflatten(1, (K, -1))[:, :, :R].permute(1, 2, 0, 3)
    # rows, dtr: (K, R, B, L) views
    rows.copy_(torch.bmm(dt_w.float().transpose(1, 2), dz).view(rows.shape))
    dtr = dtr.float().reshape(K, R, -1)
    return torch.bmm(dz, dtr.transpose(1, 2))


@_ss2d_bwd.register_fake
def _(x, x_dbl, dt_w, dt_b, A, Ds, gy, hs):
    f32 = dict(dtype=torch.float32)
    return (torch.empty_like(x), torch.empty_like(x_dbl),
            dt_w.new_empty(dt_w.shape,
                           **f32), dt_b.new_empty(dt_b.shape, **f32),
            A.new_empty(A.shape, **f32), Ds.new_empty(Ds.shape, **f32))


def _fwd_setup(ctx, inputs, output):
    x, x_dbl, dt_w, dt_b, A, Ds, _ = inputs
    ctx.save_for_backward(x, x_dbl, dt_w, dt_b, A, Ds, output[1])


def _fwd_backward(ctx, gy, _ghs):
    x, x_dbl, dt_w, dt_b, A, Ds, hs = ctx.saved_tensors
    if hs.numel() == 1:
        raise RuntimeError('ss2d_scan_fwd ran without stored states '
                           '(store_hs=False); it cannot be differentiated')
    dx, dxdbl, dW, dbias, dA, dD = _ss2d_bwd(x, x_dbl, dt_w, dt_b, A, Ds, gy,
                                             hs)
    return (dx, dxdbl, dW.to(dt_w.dtype), dbias.to(dt_b.dtype), dA.to(A.dtype),
            dD.to(Ds.dtype), None)


_ss2d_fwd.register_autograd(_fwd_backward, setup_context=_fwd_setup)


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
    wcat = x_proj_weight.reshape(-1, Di)
    if not torch.is_autocast_enabled(x.device.type):
        wcat = wcat.to(x.dtype)
    if Di > 1 and not _channels_last(x):
        # One copy to NHWC pays for itself: each direction then reads and
        # accumulates contiguous channel vectors (H100, VMamba-T stage 1,
        # bf16 forward: 6.3 ms from NCHW vs 1.4 ms from NHWC).
        x = x.contiguous(memory_format=torch.channels_last)
    if _channels_last(x):
        # (B·L, Di) @ (Di, 4J): the pixel-major view of x is free.
        x_dbl = torch.matmul(
            x.permute(0, 2, 3, 1).reshape(Bsz, L, Di), wcat.t())
    else:
        x = x.contiguous()
        x_dbl = torch.matmul(wcat, x.reshape(Bsz, Di, L))
    A = -torch.exp(A_logs.float())
    need_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (x, x_proj_weight, dt_projs_weight,
                                  dt_projs_bias, A_logs, Ds))
    y, _ = _ss2d_fwd(x, x_dbl.contiguous(), dt_projs_weight.contiguous(),
                     dt_projs_bias.reshape(-1).float(), A, Ds.float(),
                     need_grad)
    return y
