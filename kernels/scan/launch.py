"""Launchers of the chunked scan kernels (:mod:`.kernels`): the layout of a
scan's tensors, and the forward and backward passes with their time splits
(the carries between splits chained on the host by :func:`.reference.
linear_scan_ref`). The launch configuration is :mod:`.config`. Used by the
selective scan op (:mod:`..selective.op`) and the SS2D core's chunked path
(:mod:`..ss2d.chunked`).
"""
import os
from typing import List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from ..common.launch import Launcher
from ..common.util import cdiv
from .config import block_config, launch_config, target_programs
from .kernels import scan_bwd_kernel, scan_fwd_kernel
from .reference import linear_scan_ref

__all__ = ['ScanLayout', 'scan_forward', 'scan_backward']


class ScanLayout(NamedTuple):
    """Sizes and strides (in elements) that one scan launch reads and writes.

    ``u``/``y``: (b, g, c, h, w) strides of the scan input and output;
    ``delta``: the same for Δ (plain op only); ``x``: (b, g, j, p) strides of
    the projection buffer that holds the dt-rank rows (fused op), B at row
    ``b_off`` and C at row ``c_off`` (``bc``: its (b, g, n, p) strides).
    """
    G: int
    DC: int
    H: int
    W: int
    N: int
    R: int
    u: Tuple[int, ...]
    delta: Tuple[int, ...]
    x: Tuple[int, ...]
    y: Tuple[int, ...]
    w: Tuple[int, ...]
    b_off: int
    c_off: int
    bc: Tuple[int, ...]
    directional: bool
    proj: bool


#: The compiled kernel of the last main-pass launch, by kernel name.
LAST_LAUNCH: dict = {}


def _splits(programs: int, nch: int, device: torch.device) -> Tuple[int, int]:
    want = cdiv(target_programs(device), programs)
    S = max(1, min(nch, want))
    cps = cdiv(nch, S)
    return cdiv(nch, cps), cps


def _rows_A(A: Tensor, batch: int, NP: int) -> Tensor:
    """A (G·DC, N) → (batch·G·DC, NP) matching the kernels' row order."""
    A = A.float()
    if A.shape[1] < NP:
        A = torch.nn.functional.pad(A, (0, NP - A.shape[1]))
    return A.repeat(batch, 1)


def _chain(decay: Tensor, local: Tensor, reverse: bool) -> Tensor:
    """Incoming carry of each split from the splits' local end carries.

    decay, local: (rows, S, NP). Forward: carry_s = end state of split s-1;
    reverse: carry_s = gradient flowing back from split s+1.
    """
    if reverse:
        decay, local = decay.flip(1), local.flip(1)
    ends = linear_scan_ref(decay.transpose(1, 2), local.transpose(1, 2))
    ends = ends.transpose(1, 2)
    carry = torch.cat([torch.zeros_like(ends[:, :1]), ends[:, :-1]], 1)
    if reverse:
        carry = carry.flip(1)
    return carry.contiguous()


def _common_args(lay: ScanLayout, L: int, nch: int, cps: int) -> List:
    return [
        lay.DC, lay.H, lay.W, L, lay.R, nch, cps, *lay.u, *lay.delta, *lay.x,
        *lay.y, *lay.w, lay.b_off, lay.c_off, *lay.bc
    ]


def _dot_prec(t: Tensor) -> str:
    # fp32 inputs keep exact fp32 products; 16-bit inputs use tensor cores
    # (not in the interpreter, whose 16-bit dot is wrong).
    if t.dtype == torch.float32 or os.environ.get('TRITON_INTERPRET') == '1':
        return 'ieee'
    return 'tf32'


def _plan(lay: ScanLayout, batch: int, BD: int, T: int, u: Tensor):
    """Grid, chunk count, time splits and chunks per split of one launch."""
    L = lay.H * lay.W
    nch = cdiv(L, T)
    nd = cdiv(lay.DC, BD)
    S, cps = _splits(nd * batch * lay.G, nch, u.device)
    return (nd, batch * lay.G, S), L, nch, S, cps


def _flags(lay: ScanLayout, BD: int, T: int, NP: int, RP: int,
           D: Optional[Tensor], bias: Optional[Tensor], softplus: bool,
           x: Tensor, warps: int, **extra) -> dict:
    return dict(
        G=lay.G,
        N=lay.N,
        NP=NP,
        RP=RP,
        BD=BD,
        T=T,
        DIRECTIONAL=lay.directional,
        PROJ=lay.proj,
        HAS_D=D is not None,
        HAS_BIAS=bias is not None,
        SOFTPLUS=softplus,
        DOT_PREC=_dot_prec(x),
        num_warps=warps,
        **extra)


#: a Launcher per scan kernel (Triton's per-call Python skipped)
_LAUNCHERS: dict = {}


def _two_pass(kernel, grid, lead: List, tail: List, A: Tensor, batch: int,
              NP: int, S: int, reverse: bool, carry_flag: str, flags: dict,
              carry_pass: dict, main_pass: dict) -> None:
    """Launch ``kernel`` over time split in S parts.

    With S > 1 a first pass writes each split's local end carry and its sum
    of Δ; :func:`_chain` turns them into the carry entering each split, and
    the main pass starts from it. ``lead``/``tail`` are the arguments before
    and after (carry_in, carry_end, dsum).
    """
    f32 = dict(dtype=torch.float32, device=A.device)
    dummy = torch.empty(1, **f32)
    carry_in = dummy
    launch = _LAUNCHERS.get(kernel)
    if launch is None:
        launch = _LAUNCHERS[kernel] = Launcher(kernel)
    if S > 1:
        rows = batch * A.shape[0]
        cend = torch.empty((rows, S, NP), **f32)
        dsum = torch.empty((rows, S), **f32)
        launch[grid](
            *lead,
            dummy,
            cend,
            dsum,
            *tail,
            CARRY_ONLY=True,
            **{
                carry_flag: False
            },
            **carry_pass,
            **flags)
        decay = torch.exp(_rows_A(A, batch, NP)[:, None, :] * dsum[..., None])
        carry_in = _chain(decay, cend, reverse=reverse)
    compiled = launch[grid](
        *lead,
        carry_in,
        dummy,
        dummy,
        *tail,
        CARRY_ONLY=False,
        **{
            carry_flag: S > 1
        },
        **main_pass,
        **flags)
    # for tools/benchmark/sweep_scan.py: registers and spills of the variant
    LAST_LAUNCH[kernel.fn.__name__] = compiled


def scan_forward(lay: ScanLayout, batch: int, u: Tensor, delta: Tensor,
                 x: Tensor, w: Tensor, A: Tensor, D: Optional[Tensor],
                 bias: Optional[Tensor], softplus: bool, y: Tensor,
                 atomic_y: bool, store_hs: bool) -> Tensor:
    """Launch the forward scan; returns chunk-start states (rows, nch, NP)."""
    L = lay.H * lay.W
    _, T, NP, RP = block_config(lay.N, lay.R, L)
    BD, _, warps, _ = launch_config(lay.N, lay.DC, L, batch)
    grid, L, nch, S, cps = _plan(lay, batch, BD, T, u)
    f32 = dict(dtype=torch.float32, device=u.device)
    rows = batch * lay.G * lay.DC
    hs = torch.empty((rows, nch, NP) if store_hs else (1, ), **f32)
    dummy = torch.empty(1, **f32)
    lead = [
        u, delta, x, w, A, D if D is not None else dummy,
        bias if bias is not None else dummy, y, hs
    ]
    _two_pass(
        scan_fwd_kernel,
        grid,
        lead,
        _common_args(lay, L, nch, cps),
        A,
        batch,
        NP,
        S,
        False,
        'HAS_H0',
        _flags(
            lay, BD, T, NP, RP, D, bias, softplus, x, warps,
            ATOMIC_Y=atomic_y),
        carry_pass=dict(STORE_HS=False),
        main_pass=dict(STORE_HS=store_hs))
    return hs


def scan_backward(lay: ScanLayout, batch: int, u: Tensor, delta: Tensor,
                  x: Tensor, w: Tensor, A: Tensor, D: Optional[Tensor],
                  bias: Optional[Tensor], softplus: bool, gy: Tensor,
                  hs: Tensor, du: Tensor, dz: Tensor, dbc: Tensor,
                  atomic_u: bool,
                  dz_out: bool = False) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Launch the backward scan.

    Writes (or atomically adds) du, dz (plain op, or ``dz_out``), dbc (B/C or
    x_dbl grads); returns float32 (dA, dD, dbias, dW) accumulated over batch
    and time (dW stays zero with ``dz_out``: the caller computes it).
    """
    L = lay.H * lay.W
    _, T, NP, RP = block_config(lay.N, lay.R, L)
    # the backward keeps more tiles live than the forward
    _, BD, _, warps = launch_config(lay.N, lay.DC, L, batch)
    grid, L, nch, S, cps = _plan(lay, batch, BD, T, u)
    f32 = dict(dtype=torch.float32, device=u.device)
    dummy = torch.empty(1, **f32)
    dA = torch.zeros(A.shape, **f32)
    dD = torch.zeros(lay.G * lay.DC, **f32)
    dbias = torch.zeros(lay.G * lay.DC, **f32)
    dW = torch.zeros(w.shape if lay.proj else (1, ), **f32)
    lead = [
        u, delta, x, w, A, D if D is not None else dummy,
        bias if bias is not None else dummy, gy, hs
    ]
    tail = [du, dz, dbc, dW, dA, dD, dbias, *_common_args(lay, L, nch, cps)]
    _two_pass(
        scan_bwd_kernel,
        grid,
        lead,
        tail,
        A,
        batch,
        NP,
        S,
        True,
        'HAS_R0',
        _flags(
            lay, BD, T, NP, RP, D, bias, softplus, x, warps,
            ATOMIC_U=atomic_u, DZ_OUT=dz_out),
        carry_pass={},
        main_pass={})
    return dA, dD, dbias, dW
