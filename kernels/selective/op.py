"""Triton selective scan (S6) with the official semantics.

``selective_scan_triton`` is registered as the custom ops
``mmvmamba::selective_scan_fwd`` / ``_bwd`` so that ``torch.compile`` treats it
as one opaque call instead of breaking the graph. It runs the chunked scan
kernels in their plain layout (:mod:`..scan`: kernels, launch configuration,
launchers); the reference is :mod:`.reference`.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..common.util import cdiv
from ..scan.config import block_config
from ..scan.launch import ScanLayout, scan_backward, scan_forward

__all__ = ['selective_scan_triton']


# ----------------------------------------------------------------------------
# The plain selective scan op.


def _plain_layout(u: Tensor, B: Tensor, R: int = 0) -> ScanLayout:
    batch, GD, L = u.shape
    G, N = B.shape[1], B.shape[2]
    DC = GD // G
    su = (u.stride(0), DC * u.stride(1), u.stride(1), 0, u.stride(2))
    # B and C travel concatenated along the state axis: (batch, G, 2N, L).
    sbc = (G * 2 * N * L, 2 * N * L, L, 1)
    return ScanLayout(
        G=G,
        DC=DC,
        H=1,
        W=L,
        N=N,
        R=R,
        u=su,
        delta=su,
        x=sbc,
        y=su,
        w=(0, 0, 0),
        b_off=0,
        c_off=N * L,
        bc=sbc,
        directional=False,
        proj=False)


def _check_plain(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                 D: Optional[Tensor], delta_bias: Optional[Tensor]) -> None:
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(f'u and delta must be (batch, G*D, L) of one shape, '
                         f'got {tuple(u.shape)} and {tuple(delta.shape)}')
    batch, GD, L = u.shape
    if B.dim() != 4 or B.shape != C.shape or B.shape[0] != batch or \
            B.shape[3] != L:
        raise ValueError(f'B and C must be (batch, G, N, L) = ({batch}, G, N, '
                         f'{L}), got {tuple(B.shape)} and {tuple(C.shape)}')
    G, N = B.shape[1], B.shape[2]
    if GD % G:
        raise ValueError(f'channels {GD} are not divisible by groups {G}')
    if A.shape != (GD, N):
        raise ValueError(f'A must be (G*D, N) = ({GD}, {N}), got '
                         f'{tuple(A.shape)}')
    for name, t in (('D', D), ('delta_bias', delta_bias)):
        if t is not None and t.shape != (GD, ):
            raise ValueError(f'{name} must be ({GD},), got {tuple(t.shape)}')


def _opt_f32(t: Optional[Tensor]) -> Optional[Tensor]:
    return None if t is None else t.float().contiguous()


@torch.library.custom_op('mmvmamba::selective_scan_fwd', mutates_args=())
def _ss_fwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
            D: Optional[Tensor], delta_bias: Optional[Tensor],
            delta_softplus: bool,
            out_dtype: torch.dtype) -> Tuple[Tensor, Tensor]:
    u, delta = u.contiguous(), delta.contiguous()
    BC = torch.cat([B, C], 2).contiguous()
    lay = _plain_layout(u, B)
    y = torch.empty(u.shape, dtype=out_dtype, device=u.device)
    hs = scan_forward(
        lay,
        u.shape[0],
        u,
        delta,
        BC,
        BC,
        A.float().contiguous(),
        _opt_f32(D),
        _opt_f32(delta_bias),
        delta_softplus,
        y,
        atomic_y=False,
        store_hs=True)
    return y, hs


@_ss_fwd.register_fake
def _(u, delta, A, B, C, D, delta_bias, delta_softplus, out_dtype):
    N = B.shape[2]
    _, T, NP, _ = block_config(N, 0, u.shape[2])
    rows = u.shape[0] * u.shape[1]
    y = u.new_empty(u.shape, dtype=out_dtype)
    hs = u.new_empty((rows, cdiv(u.shape[2], T), NP),
                     dtype=torch.float32)
    return y, hs


@torch.library.custom_op('mmvmamba::selective_scan_bwd', mutates_args=())
def _ss_bwd(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
    D: Optional[Tensor], delta_bias: Optional[Tensor], delta_softplus: bool,
    gy: Tensor, hs: Tensor
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    u, delta, gy = u.contiguous(), delta.contiguous(), gy.contiguous()
    BC = torch.cat([B, C], 2).contiguous()
    lay = _plain_layout(u, B)
    f32 = dict(dtype=torch.float32, device=u.device)
    du = torch.empty(u.shape, **f32)
    dz = torch.empty(u.shape, **f32)
    dbc = torch.zeros(BC.shape, **f32)
    dA, dD, dbias, _ = scan_backward(
        lay,
        u.shape[0],
        u,
        delta,
        BC,
        BC,
        A.float().contiguous(),
        _opt_f32(D),
        _opt_f32(delta_bias),
        delta_softplus,
        gy,
        hs,
        du,
        dz,
        dbc,
        atomic_u=False)
    N = B.shape[2]
    dB = dbc[:, :, :N].to(B.dtype, copy=True)
    dC = dbc[:, :, N:].to(C.dtype, copy=True)
    return (du.to(u.dtype), dz.to(delta.dtype), dA, dB, dC, dD, dbias)


@_ss_bwd.register_fake
def _(u, delta, A, B, C, D, delta_bias, delta_softplus, gy, hs):
    GD = u.shape[1]
    f32 = dict(dtype=torch.float32)
    return (torch.empty_like(u), torch.empty_like(delta),
            A.new_empty(A.shape, **f32), torch.empty_like(B),
            torch.empty_like(C), u.new_empty(
                (GD, ), **f32), u.new_empty((GD, ), **f32))


def _ss_setup(ctx, inputs, output):
    u, delta, A, B, C, D, delta_bias, delta_softplus, _ = inputs
    ctx.save_for_backward(u, delta, A, B, C, D, delta_bias, output[1])
    ctx.delta_softplus = delta_softplus


def _ss_backward(ctx, gy, _ghs):
    u, delta, A, B, C, D, delta_bias, hs = ctx.saved_tensors
    du, dz, dA, dB, dC, dD, dbias = _ss_bwd(u, delta, A, B, C, D, delta_bias,
                                            ctx.delta_softplus, gy, hs)
    return (du, dz, dA.to(A.dtype), dB, dC,
            None if D is None else dD.to(D.dtype),
            None if delta_bias is None else dbias.to(delta_bias.dtype), None,
            None)


_ss_fwd.register_autograd(_ss_backward, setup_context=_ss_setup)


def selective_scan_triton(
        u: Tensor,
        delta: Tensor,
        A: Tensor,
        B: Tensor,
        C: Tensor,
        D: Optional[Tensor] = None,
        delta_bias: Optional[Tensor] = None,
        delta_softplus: bool = False,
        out_dtype: Optional[torch.dtype] = torch.float32) -> Tensor:
    """S6 selective scan in Triton; see :func:`selective_scan_ref`.

    u, delta (batch, G·D, L) fp32/fp16/bf16; A (G·D, N); B, C (batch, G, N,
    L); D, delta_bias (G·D,). Float32 state; returns (batch, G·D, L) in
    ``out_dtype`` (u's dtype when None).
    """
    _check_plain(u, delta, A, B, C, D, delta_bias)
    out_dtype = u.dtype if out_dtype is None else out_dtype
    return _ss_fwd(u, delta, A, B, C, D, delta_bias, bool(delta_softplus),
                   out_dtype)[0]
