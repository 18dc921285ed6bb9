"""The fused SS2D core in Triton: cross scan, dt projection, selective scan and
cross merge without materialising the four directions.

The x projection of all four directions is ONE GEMM over pixels,
(B·L, Di) @ (Di, 4·(R+2N)), because the projection of direction k at time t
only depends on the pixel it visits. The scan kernels visit the pixels of
each direction by index arithmetic and recompute Δ = softplus(W_dt·dt + b)
from the R-dim vectors.

* The chunked kernels (:mod:`._scan_kernels`, launched by
  :mod:`._scan_launch`) with the directional
  layout: one program walks the chunks of one direction; the four
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
  ``randomness=dict(deterministic=True)`` sets): :mod:`.ss2d_kernels`, one
  channel per thread and time inside the thread, the directions in two
  pairs, three phases (chunk summaries, carry chain, rescan) that merge the
  directions and sum every reduction in a fixed order: bit-identical
  results, no atomics. Registered as ``mmvmamba::ss2d_fwd`` / ``ss2d_bwd``.
  (d_state > 1 has no deterministic kernel; it warns or raises as
  PyTorch's own ops do.)

``torch.compile`` traces around the custom ops through their fake
implementations.
"""
import os
import warnings
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from . import ss2d_kernels as kern
from ._launch import Launcher
from ._scan_launch import ScanLayout, block_config, scan_backward, scan_forward
from ._util import cdiv, next_power_of_2
from .eager import cast_like, eager_call, eager_function, impl_or_op

__all__ = ['ss2d_core_triton', 'tile_config']

K = 4

#: d_state 1 runs the channel-per-thread pair kernels up to this batch, at
#: every batch from ``PAIR_MIN_PIXELS`` pixels per image, whenever
#: deterministic algorithms are asked for and inside a CUDA-graph capture;
#: the chunked kernels otherwise. H200, bench_kernels.py, forward + backward
#: ms, pair / chunked, same run (2026-12-04): batch 128 stages 1-4 (56²,
#: 28², 14², 7²) 5.08 / 7.14, 2.88 / 3.56, 3.15 / 2.09, 2.75 / 1.92; batch 1
#: stage 1 2.97 / 3.14; Mask R-CNN (batch 2) stages 1-4 2.98 / 4.15, 3.11 /
#: 3.03, 2.69 / 2.65, 2.75 / 3.03. Those small rows are the host's time: on
#: the GPU alone (tools/benchmark/host_cost.py, same run, 2026-12-04) the
#: pair kernels take 1.33 / 2.07 ms at stage 3 and 0.76 / 1.90 at stage 4,
#: and a captured graph replays without the host.
PAIR_MAX_BATCH = 2
PAIR_MIN_PIXELS = 784


def use_pairs(N: int, batch: int, pixels: int, capturing: bool = False) -> bool:
    """Whether the SS2D core runs the pair kernels (d_state 1 only);
    ``capturing``: the call is being captured into a CUDA graph."""
    return N == 1 and (capturing
                       or torch.are_deterministic_algorithms_enabled()
                       or batch <= PAIR_MAX_BATCH
                       or pixels >= PAIR_MIN_PIXELS)


# ----------------------------------------------------------------------------
# d_state 1: channel-per-thread kernels


#: the pair kernels' launchers (Triton's per-call Python skipped)
_SUMMARY = Launcher(kern.summary_kernel)
_CHAIN = Launcher(kern.chain_kernel)
_FWD = Launcher(kern.fwd_kernel)
_BWD = Launcher(kern.bwd_kernel)


def _interpreted() -> bool:
    return os.environ.get('TRITON_INTERPRET') == '1'


#: Tuning hook (tools/benchmark/sweep_scan.py): entries replace the
#: defaults of :func:`tile_config`.
TUNE: dict = {}


def tile_config(Di: int, R: int, H: int, W: int) -> dict:
    """Compile-time sizes of the d_state-1 kernels: chunk length ``T``;
    channel block ``BD`` and ``warps`` of the summary and forward kernels,
    ``BDB`` and ``warpsB`` of the backward kernel (``BD // (32·warps)``
    channels per thread), ``per_sm``, the backward's persistent programs
    per SM. Depends on the sizes only through a few classes, so new image
    sizes do not recompile."""
    if _interpreted():
        return dict(T=8, BD=16, warps=1, BDB=16, warpsB=1, per_sm=1)
    # the best of the H200 sweeps (docs/benchmarks.md): one warp of 32
    # channels per program (fewer registers than 64 channels in one or two
    # warps), chunks of 4 (the backward's registers: 128 against 250 at 8)
    cfg = dict(dict(T=4, BD=32, warps=1, BDB=32, warpsB=1, per_sm=16),
               **TUNE)
    return cfg


def _padded_rows(R: int) -> int:
    """Rows per direction of the d_state-1 x_dbl: zero rows, the dt rank
    R, then B and C, R + 2 rounded up to a multiple of 8. The dt-projection
    GEMMs then run on 16-byte aligned operands: with R + 2 = 14 the batched
    GEMMs fall back to cuBLAS's 2-element-aligned kernels (H200, VMamba-T
    stage 1 at R + 2 = 8 but K = R = 6: the z GEMM 455 us)."""
    return cdiv(R + 2, 8) * 8


def pad_x_proj(x_proj_weight: Tensor, R: int) -> Tensor:
    """(4, R + 2, Di) → (4, :func:`_padded_rows`, Di): zero rows before
    the dt-rank rows, so B and C stay the last two (differentiable: one pad,
    whose backward is a view)."""
    zeros = _padded_rows(R) - R - 2
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
    if bwd:
        return dict(BD=cfg['BDB'], T=cfg['T'], num_warps=cfg['warpsB'])
    return dict(BD=cfg['BD'], T=cfg['T'], num_warps=cfg['warps'])


def _chain(P: Tensor, S: Tensor) -> Tensor:
    Bsz, _, NCH, Di = P.shape
    carry = torch.empty_like(P)
    BDc = min(64, next_power_of_2(Di))
    _CHAIN[(Bsz * K, cdiv(Di, BDc))](
        P, S, carry, Di, NCH, BD=BDc, SB=32, num_warps=4)
    return carry


def _grid(x: Tensor, cfg: dict, pairs: int) -> tuple:
    Bsz, Di, H, W = x.shape
    return (cdiv(H * W, cfg['T']), Bsz * pairs,
            cdiv(Di, cfg['BD']))


def _bwd_blocks(x: Tensor, cfg: dict) -> Tuple[int, int]:
    """(chunks per image, channel blocks) of the backward kernel."""
    return cdiv(x.shape[2] * x.shape[3], cfg['T']), cdiv(x.shape[1], cfg['BDB'])


def _seg_buffer(x: Tensor, cfg: dict) -> Tensor:
    Bsz, Di, H, W = x.shape
    return x.new_empty((Bsz, K, cdiv(H * W, cfg['T']), Di),
                       dtype=torch.float32)


def _fwd1_impl(x: Tensor, x_dbl: Tensor, dt_w: Tensor, dt_b: Tensor,
               A_logs: Tensor, Ds: Tensor) -> Tuple[Tensor, Tensor]:
    """y (float32, x's strides) and the chunk carries of the d_state-1 core;
    A_logs (4·Di, 1) float32 (the kernels take A = -exp(A_logs))."""
    Bsz, Di, H, W = x.shape
    R = dt_w.shape[2]
    cfg = tile_config(Di, R, H, W)
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


_fwd1 = torch.library.custom_op('mmvmamba::ss2d_fwd', mutates_args=())(
    _fwd1_impl)


@_fwd1.register_fake
def _(x, x_dbl, dt_w, dt_b, A_logs, Ds):
    Bsz, Di, H, W = x.shape
    cfg = tile_config(Di, dt_w.shape[2], H, W)
    return torch.empty_like(x, dtype=torch.float32), _seg_buffer(x, cfg)


def _programs(tiles: int, blocks: int, per_sm: int,
              device: torch.device) -> int:
    """Programs per channel block of the persistent backward: ``per_sm``
    per SM in all, never more than there are tiles."""
    if device.type != 'cuda':
        return min(tiles, 4)
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return max(1, min(tiles, per_sm * sms // blocks))


def _bwd1_impl(
        x: Tensor, x_dbl: Tensor, dt_w: Tensor, dt_b: Tensor, A_logs: Tensor,
        Ds: Tensor, gy: Tensor,
        carry: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    Bsz, Di, H, W = x.shape
    L = H * W
    R = dt_w.shape[2]
    cfg = tile_config(Di, R, H, W)
    z, w_dt = _zproj(x_dbl, dt_w)
    args, consts = _args(x, x_dbl, z, cfg), _consts(cfg)
    gy = gy.float()
    if gy.stride() != x.stride():  # read with x's strides
        gy = torch.empty_like(x, dtype=torch.float32).copy_(gy)
    P, S = _seg_buffer(x, cfg), _seg_buffer(x, cfg)
    _SUMMARY[_grid(x, cfg, 2)](gy, x_dbl, z, dt_b, A_logs, P, S, *args, ADJ=True,
                               **consts)
    adj = _chain(P, S)
    del P, S
    nch, nd = _bwd_blocks(x, cfg)
    nprog = _programs(Bsz * nch, nd, cfg['per_sm'], x.device)
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


_fwd1.register_autograd(_fwd1_backward, setup_context=_fwd1_setup)
_Fwd1 = eager_function(_fwd1_impl, _fwd1_setup, _fwd1_backward, outputs=1)

# ----------------------------------------------------------------------------
# d_state > 1: the general chunked kernels


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


def _ss2d_fwd_impl(x: Tensor, x_dbl: Tensor, dt_w: Tensor, dt_b: Tensor,
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


_ss2d_fwd = torch.library.custom_op(
    'mmvmamba::ss2d_scan_fwd', mutates_args=())(
        _ss2d_fwd_impl)


@_ss2d_fwd.register_fake
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
                                              x_dbl, dt_w, dt_b, A, Ds, gy,
                                              hs)
    return (dx, dxdbl, cast_like(dW, dt_w), cast_like(dbias, dt_b),
            cast_like(dA, A), cast_like(dD, Ds), None)


_ss2d_fwd.register_autograd(_fwd_backward, setup_context=_fwd_setup)
_SS2DFwd = eager_function(_ss2d_fwd_impl, _fwd_setup, _fwd_backward,
                          outputs=1)

# ----------------------------------------------------------------------------
# entry point


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
    msg = (f'mmvmamba ss2d_core with d_state={N} has no deterministic CUDA '
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
    R = dt_projs_weight.shape[2]
    # only a plain CUDA tensor outside compilation has a stream to ask (fake
    # tensors of torch.compile's tracing or of a memory estimate have none,
    # and Dynamo cannot trace the question)
    d1 = use_pairs(N, Bsz, L, type(x) is Tensor and x.is_cuda
                   and not torch.compiler.is_compiling()
                   and torch.cuda.is_current_stream_capturing())
    if d1:  # rows padded for aligned dt-projection GEMMs
        x_proj_weight = pad_x_proj(x_proj_weight, R)
    wcat = x_proj_weight.reshape(-1, Di)
    if not torch.is_autocast_enabled(x.device.type):
        wcat = wcat.to(x.dtype)
    # One copy to NHWC pays for itself: each direction then reads contiguous
    # channel vectors (H100, VMamba-T stage 1, bf16 forward of the former
    # kernels: 6.3 ms from NCHW vs 1.4 ms from NHWC).
    x = x.contiguous(memory_format=torch.channels_last)
    # (B·L, Di) @ (Di, 4J): the pixel-major view of x is free.
    x_dbl = torch.matmul(x.permute(0, 2, 3, 1).reshape(Bsz, L, Di), wcat.t())
    dt_w = dt_projs_weight.contiguous()
    dt_b = dt_projs_bias.reshape(-1).float()
    if d1:  # A_logs (4·Di, 1) itself: the kernels take A = -exp(A_logs)
        return eager_call(_Fwd1, _fwd1, x, x_dbl.contiguous(), dt_w, dt_b,
                          A_logs.float(), Ds.float())[0]
    A = -torch.exp(A_logs.float())
    if torch.are_deterministic_algorithms_enabled():
        _not_deterministic(N)
    need_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (x, x_proj_weight, dt_projs_weight,
                                  dt_projs_bias, A_logs, Ds))
    return eager_call(_SS2DFwd, _ss2d_fwd, x, x_dbl.contiguous(), dt_w, dt_b,
                      A, Ds.float(), need_grad)[0]
