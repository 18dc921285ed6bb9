"""The SS2D core for d_state 1 on the pair kernels (:mod:`.kernels`): the z
projection GEMM, the three launches of the forward (summaries, carry chain,
rescan per pair) and of the backward, the dt-projection gradients as batched
GEMMs, and the custom ops ``mmvmamba::ss2d_fwd`` / ``ss2d_bwd`` with their
autograd. Deterministic: no atomics, every reduction in a fixed order.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..common.eager import cast_like, impl_or_op
from ..common.launch import Launcher
from ..common.util import cdiv, unfilled
from . import kernels as kern
from .config import (K, backward_programs, chain_blocks, lane_sums,
                     padded_rows, sm_count, tile_config)

__all__ = ['pad_x_proj', 'fwd1']

#: the pair kernels' launchers (Triton's per-call Python skipped)
_SUMMARY = Launcher(kern.summary_kernel)
_CHAIN = Launcher(kern.chain_kernel)
_FWD = Launcher(kern.fwd_kernel)
_BWD = Launcher(kern.bwd_kernel)


def pad_x_proj(x_proj_weight: Tensor, R: int) -> Tensor:
    """(4, R + 2, Di) → (4, :func:`.config.padded_rows`, Di): zero rows before
    the dt-rank rows, so B and C stay the last two (differentiable: one pad,
    whose backward is a view)."""
    zeros = padded_rows(R) - R - 2
    return F.pad(x_proj_weight, (0, 0, zeros, 0)) if zeros else x_proj_weight


def _dirs(x_dbl: Tensor) -> Tensor:
    """The four directions' rows of x_dbl, a (4, B·L, J8) view."""
    return x_dbl.view(-1, K, x_dbl.shape[-1] // K).transpose(0, 1)


def _dt_weight(dt_w: Tensor, J8: int, dtype: torch.dtype) -> Tensor:
    """dt_w (4, Di, R) zero-padded to (4, Di, J8) at the dt-rank rows of
    x_dbl (its padding rows and B, C do not enter z)."""
    return F.pad(dt_w, (J8 - 2 - dt_w.shape[2], 2)).to(dtype)


def _zproj(x_dbl: Tensor, dt_w: Tensor) -> Tuple[Tensor, Tensor]:
    """z of the four directions without the bias, (4, B·L, Di), one batched
    GEMM in x_dbl's dtype: (4, B·L, J8) @ (4, J8, Di); and the padded
    weight (4, Di, J8) it used."""
    xk = _dirs(x_dbl)
    w = _dt_weight(dt_w, xk.shape[2], x_dbl.dtype)
    return torch.bmm(xk, w.transpose(1, 2)), w


def _splits(n: int, rows: int = 2048, most: int = 256) -> int:
    """The largest s ≤ ``most`` dividing n with at least ``rows`` rows per
    part (1 when there is none)."""
    for s in range(min(most, n // rows), 1, -1):
        if n % s == 0:
            return s
    return 1


def _outer_sum(a: Tensor, b: Tensor) -> Tensor:
    """Σ over n of a[k, n]ᵀ·b[k, n] for a (K, n, P) contiguous and b
    (K, n, Q): (K, P, Q) float32. The n rows are split into parts of one
    batched GEMM, summed in float32 (one GEMM with K = n = 400k runs on a
    few dozen CTAs: 5.5 ms at VMamba-T stage 1 on the H200)."""
    k, n, p = a.shape
    s = _splits(n)
    part = torch.bmm(
        a.reshape(k * s, n // s, p).transpose(1, 2),
        b.reshape(k * s, n // s, b.shape[2]))
    return torch.sum(part.view(k, s, p, -1), 1, dtype=torch.float32)


def _args(x: Tensor, x_dbl: Tensor, z: Tensor, cfg: dict) -> list:
    Bsz, Di, H, W = x.shape
    L = H * W
    # the kernels find B and C at rows R, R + 1 of a direction's R + 2
    R = x_dbl.shape[-1] // K - 2
    return [
        Di, H, W, L, R,
        cdiv(L, cfg['T']), *x.stride(), *x_dbl.stride(),
        z.stride(0), L * Di, Di, 1
    ]


def _consts(cfg: dict, bwd: bool = False) -> dict:
    """The constexprs and launch options of the backward (``bwd``: the
    register cap ``regsB``) or the summary and forward kernels."""
    if bwd:
        cap = cfg.get('regsB')
        return dict(BD=cfg['BDB'], T=cfg['T'], num_warps=cfg['warpsB'],
                    LANES=lane_sums(cfg), **(dict(maxnreg=cap) if cap else {}))
    return dict(BD=cfg['BD'], T=cfg['T'], num_warps=cfg['warps'])


def _config(x: Tensor, R: int) -> dict:
    """The launch configuration of a call (:func:`.config.tile_config`)."""
    return tile_config(x.shape[1], R, x.shape[2], x.shape[3])


def _chain(P: Tensor, S: Tensor) -> Tensor:
    Bsz, _, NCH, Di = P.shape
    carry = torch.empty_like(P)
    BDc, SB = chain_blocks(Bsz * K, Di, NCH, sm_count(P.device))
    _CHAIN[(Bsz * K, cdiv(Di, BDc))](
        P, S, carry, Di, NCH, BD=BDc, SB=SB, num_warps=4)
    return carry


def _grid(x: Tensor, cfg: dict, pairs: int) -> tuple:
    Bsz, Di, H, W = x.shape
    return (cdiv(H * W, cfg['T']), Bsz * pairs, cdiv(Di, cfg['BD']))


def _bwd_blocks(x: Tensor, cfg: dict) -> Tuple[int, int]:
    """(chunks per image, channel blocks) of the backward kernel."""
    return cdiv(x.shape[2] * x.shape[3], cfg['T']), cdiv(x.shape[1], cfg['BDB'])


def _seg_buffer(x: Tensor, cfg: dict) -> Tensor:
    Bsz, Di, H, W = x.shape
    return x.new_empty((Bsz, K, cdiv(H * W, cfg['T']), Di),
                       dtype=torch.float32)


@unfilled
def _fwd1_impl(x: Tensor, x_dbl: Tensor, dt_w: Tensor, dt_b: Tensor,
               A_logs: Tensor, Ds: Tensor) -> Tuple[Tensor, Tensor]:
    """y (float32, x's strides) and the chunk carries of the d_state-1 core;
    A_logs (4·Di, 1) float32 (the kernels take A = -exp(A_logs))."""
    Bsz, Di, H, W = x.shape
    cfg = _config(x, dt_w.shape[2])
    z, _ = _zproj(x_dbl, dt_w)
    args, consts = _args(x, x_dbl, z, cfg), _consts(cfg)
    P, S = _seg_buffer(x, cfg), _seg_buffer(x, cfg)
    _SUMMARY[_grid(x, cfg, 2)](x, x_dbl, z, dt_b, A_logs, P, S, *args, ADJ=False,
                               **consts)
    carry = _chain(P, S)
    del P, S
    y = torch.empty_like(x, dtype=torch.float32)
    for pair in range(2):  # pair 1 adds to pair 0's output: a fixed order
        _FWD[_grid(x, cfg, 1)](x, x_dbl, z, dt_b, A_logs, Ds, carry, y, pair,
                               *args, ACC=pair == 1, **consts)
    return y, carry


fwd1 = torch.library.custom_op('mmvmamba::ss2d_fwd', mutates_args=())(
    _fwd1_impl)


@fwd1.register_fake
def _(x, x_dbl, dt_w, dt_b, A_logs, Ds):
    return (torch.empty_like(x, dtype=torch.float32),
            _seg_buffer(x, _config(x, dt_w.shape[2])))


@unfilled
def _bwd1_impl(
        x: Tensor, x_dbl: Tensor, dt_w: Tensor, dt_b: Tensor, A_logs: Tensor,
        Ds: Tensor, gy: Tensor,
        carry: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    Bsz, Di, H, W = x.shape
    L = H * W
    R = dt_w.shape[2]
    cfg = _config(x, R)
    z, w_dt = _zproj(x_dbl, dt_w)
    args = _args(x, x_dbl, z, cfg)
    gy = gy.float()
    if gy.stride() != x.stride():  # read with x's strides
        gy = torch.empty_like(x, dtype=torch.float32).copy_(gy)
    P, S = _seg_buffer(x, cfg), _seg_buffer(x, cfg)
    _SUMMARY[_grid(x, cfg, 2)](gy, x_dbl, z, dt_b, A_logs, P, S, *args, ADJ=True,
                               **_consts(cfg))
    adj = _chain(P, S)
    del P, S
    nch, nd = _bwd_blocks(x, cfg)
    nprog = backward_programs(Bsz * nch, nd, cfg['per_sm'], x.device)
    f32 = dict(dtype=torch.float32, device=x.device)
    dx32 = torch.empty_like(x, dtype=torch.float32)
    dx = torch.empty_like(x)
    dz = torch.empty_like(z)
    dbc = torch.empty((nd, Bsz, L, K, 2), **f32)
    dvec = torch.empty((nprog, 3, K * Di), **f32)
    for pair in range(2):  # pair 1 adds to pair 0's dx: a fixed order
        _BWD[(nprog, nd)](x, x_dbl, z, dt_b, A_logs, Ds, gy, carry, adj, dx32, dx,
                          dz, dbc, dvec, pair, *args, Bsz, nprog,
                          ACC=pair == 1, **_consts(cfg, bwd=True))
    del dx32
    # the dt projection's gradients: two batched GEMMs over dz
    P = x_dbl.shape[-1] // K - 2 - R  # x_dbl's zero rows
    dW = _outer_sum(dz, _dirs(x_dbl))[:, :, P:P + R].contiguous()
    dxdbl = torch.bmm(dz, w_dt).transpose(0, 1).contiguous()
    dxdbl[:, :, -2:] = (dbc[0] if nd == 1 else dbc.sum(0)).view(-1, K, 2)
    # dA_logs, dD and dbias of every program in a fixed order: (3, 4·Di)
    return dx, dxdbl.view(x_dbl.shape), dW, dvec.sum(0)


_bwd1 = torch.library.custom_op('mmvmamba::ss2d_bwd', mutates_args=())(
    _bwd1_impl)


@_bwd1.register_fake
def _(x, x_dbl, dt_w, dt_b, A_logs, Ds, gy, carry):
    f32 = dict(dtype=torch.float32)
    return (torch.empty_like(x), torch.empty_like(x_dbl),
            dt_w.new_empty(dt_w.shape, **f32),
            A_logs.new_empty((3, A_logs.shape[0]), **f32))


def _fwd1_setup(ctx, inputs, output):
    x, x_dbl, dt_w, dt_b, A_logs, Ds = inputs
    ctx.save_for_backward(x, x_dbl, dt_w, dt_b, A_logs, Ds, output[1])


def _fwd1_backward(ctx, gy, _gcarry):
    x, x_dbl, dt_w, dt_b, A_logs, Ds, carry = ctx.saved_tensors
    dx, dxdbl, dW, dvec = impl_or_op(_bwd1_impl, _bwd1, x, x_dbl, dt_w, dt_b,
                                     A_logs, Ds, gy, carry)
    dA, dD, dbias = dvec.unbind(0)  # dA: A_logs' gradient, float32
    return (dx, dxdbl, cast_like(dW, dt_w), cast_like(dbias, dt_b),
            cast_like(dA.view(A_logs.shape), A_logs), cast_like(dD, Ds))


fwd1.register_autograd(_fwd1_backward, setup_context=_fwd1_setup)
