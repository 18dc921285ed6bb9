"""The SS2D core on the chunked scan kernels (:mod:`..scan`, directional
layout): d_state > 1, and d_state 1 where :func:`.config.use_pairs` says so.
The four directions meet in the output, and the channel blocks in the
gradients, through float32 atomics: not bit-identical from run to run.
Registered as the custom ops ``mmvmamba::ss2d_scan_fwd`` / ``_bwd``.
"""
from typing import Tuple

import torch
from torch import Tensor

from ..common.eager import cast_like, impl_or_op
from ..common.util import cdiv
from ..scan.config import block_config
from ..scan.launch import ScanLayout, scan_backward, scan_forward
from .config import K

__all__ = ['ss2d_fwd', 'ss2d_fwd_impl']


def _channels_last(x: Tensor) -> bool:
    return x.stride(1) == 1 and x.shape[1] > 1


def _layout(x: Tensor, x_dbl: Tensor, w: Tensor, N: int) -> ScanLayout:
    """Kernel strides for x (B, Di, H, W) and x_dbl (B, L, 4J)."""
    Bsz, Di, H, W = x.shape
    R = w.shape[2]
    J = R + 2 * N
    sb, sp, sj = x_dbl.stride(0), x_dbl.stride(1), x_dbl.stride(2)
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


def ss2d_fwd_impl(x: Tensor, x_dbl: Tensor, dt_w: Tensor, dt_b: Tensor,
                  A: Tensor, Ds: Tensor,
                  store_hs: bool) -> Tuple[Tensor, Tensor]:
    lay = _layout(x, x_dbl, dt_w, A.shape[1])
    y = torch.zeros_like(x, dtype=torch.float32)
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


ss2d_fwd = torch.library.custom_op(
    'mmvmamba::ss2d_scan_fwd', mutates_args=())(
        ss2d_fwd_impl)


@ss2d_fwd.register_fake
def _(x, x_dbl, dt_w, dt_b, A, Ds, store_hs):
    N = A.shape[1]
    Bsz, Di, H, W = x.shape
    _, T, NP, _ = block_config(N, dt_w.shape[2], H * W)
    y = torch.empty_like(x, dtype=torch.float32)
    shape = ((Bsz * K * Di, cdiv(H * W, T), NP) if store_hs else (1, ))
    return y, x.new_empty(shape, dtype=torch.float32)


def _ss2d_bwd_impl(
        x: Tensor, x_dbl: Tensor, dt_w: Tensor, dt_b: Tensor, A: Tensor,
        Ds: Tensor, gy: Tensor,
        hs: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    lay = _layout(x, x_dbl, dt_w, A.shape[1])
    gy = gy.float()
    if gy.stride() != x.stride():  # read with x's strides
        gy = torch.empty_like(x, dtype=torch.float32).copy_(gy)
    dx = torch.zeros_like(x, dtype=torch.float32)
    dxdbl = torch.zeros(x_dbl.shape, dtype=torch.float32, device=x.device)
    dA, dD, dbias, dW = scan_backward(
        lay,
        x.shape[0],
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
        dx,  # dz: not written, the kernel's dt-rank GEMMs consume it
        dxdbl,
        atomic_u=True)
    return (dx.to(x.dtype), dxdbl.to(x_dbl.dtype), dW, dbias, dA, dD)


_ss2d_bwd = torch.library.custom_op(
    'mmvmamba::ss2d_scan_bwd', mutates_args=())(
        _ss2d_bwd_impl)


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
    dx, dxdbl, dW, dbias, dA, dD = impl_or_op(_ss2d_bwd_impl, _ss2d_bwd, x,
                                              x_dbl, dt_w, dt_b, A, Ds, gy, hs)
    return (dx, dxdbl, cast_like(dW, dt_w), cast_like(dbias, dt_b),
            cast_like(dA, A), cast_like(dD, Ds), None)


ss2d_fwd.register_autograd(_fwd_backward, setup_context=_fwd_setup)
