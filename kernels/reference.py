"""Plain PyTorch definitions of the SS2D ops.

They are the CPU path of the model and the ground truth of the Triton kernels'
tests. Everything here is differentiable by autograd and device-agnostic.

Shapes (spec §3): x (B, C, H, W); the four scan directions of an H×W map are
row-major, column-major, reversed row-major and reversed column-major, stacked as
(B, 4, C, L) with L = H·W.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    'cross_scan_ref', 'cross_merge_ref', 'selective_scan_ref',
    'linear_scan_ref', 'ss2d_core_ref'
]


def cross_scan_ref(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, 4, C, H·W) in the four scan orders."""
    B, C, H, W = x.shape
    row = x.flatten(2)
    col = x.transpose(2, 3).flatten(2)
    return torch.stack([row, col, row.flip(-1), col.flip(-1)], dim=1)


def cross_merge_ref(y: Tensor) -> Tensor:
    """(B, 4, C, H, W) -> (B, C, H·W): the adjoint of :func:`cross_scan_ref`.

    ``y[:, k]`` holds direction k's sequence laid out as an H×W buffer (the
    official layout), i.e. position t of direction k is ``y[:, k].flatten(2)[..., t]``.
    """
    B, K, C, H, W = y.shape
    assert K == 4, f'cross_merge expects 4 directions, got {K}'
    y = y.flatten(3)
    y = y[:, 0:2] + y[:, 2:4].flip(-1)
    col = y[:, 1].view(B, C, W, H).transpose(2, 3).flatten(2)
    return y[:, 0] + col


_CHUNK = 64


def _scan_chunked(a: Tensor, b: Tensor) -> Tensor:
    """No-grad h_t = a_t h_{t-1} + b_t over the last dim, h_{-1} = 0.

    Two levels, so work is O(L log T): a doubling (Hillis-Steele) scan inside
    chunks of T positions turns ``b`` into the chunk-local states and ``a`` into
    the chunk-local decay products; a small scan over the chunk ends gives the
    carry into each chunk; one fused update adds it. Products of decays only,
    no division: stable for any decay, unlike cumsum/cumprod closed forms.
    """
    L = int(a.shape[-1])  # int(): shapes are tensors under jit tracing
    T = min(_CHUNK, L)  # doubling works for any chunk length
    nc = -(-L // T)
    pad = nc * T - L
    a = F.pad(a, (0, pad), value=1.0) if pad else a.clone()
    b = F.pad(b, (0, pad)) if pad else b.clone()
    a = a.view(*a.shape[:-1], nc, T)
    b = b.view(*b.shape[:-1], nc, T)
    k = 1
    while k < T:
        b[..., k:] += a[..., k:] * b[..., :-k]
        if 2 * k < T or nc > 1:  # the carry needs the full decay products
            a[..., k:] = a[..., k:] * a[..., :-k]
        k *= 2
    if nc > 1:
        # state entering chunk c = scan over the chunk ends, shifted by one
        ends = _scan_chunked(a[..., -1].contiguous(), b[..., -1].contiguous())
        carry = F.pad(ends[..., :-1], (1, 0))
        b += a * carry.unsqueeze(-1)
    b = b.view(*b.shape[:-2], nc * T)
    return b[..., :L] if pad else b


class _LinearScan(torch.autograd.Function):
    """Autograd for the first-order recurrence; backward is the reverse scan.

    dL/db_t = g_t with g_t = dh_t + a_{t+1} g_{t+1}; dL/da_t = g_t h_{t-1}.
    Saves only ``a`` and ``h`` (no per-pass intermediates).
    """

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor) -> Tensor:
        h = _scan_chunked(a, b)
        ctx.save_for_backward(a, h)
        return h

    @staticmethod
    def backward(ctx, dh: Tensor):
        a, h = ctx.saved_tensors
        a_next = F.pad(a[..., 1:], (0, 1))  # a_{t+1}, 0 past the end
        g = _scan_chunked(a_next.flip(-1), dh.flip(-1)).flip(-1)
        h_prev = F.pad(h[..., :-1], (1, 0))
        return g * h_prev, g


def linear_scan_ref(a: Tensor,
                    b: Tensor,
                    h0: Optional[Tensor] = None) -> Tensor:
    """h_t = a_t · h_{t-1} + b_t along the last dim, h_{-1} = h0 (or 0).

    Vectorised (no loop over positions) and differentiable; see
    :func:`_scan_chunked` for the algorithm and :class:`_LinearScan` for the
    backward.
    """
    if h0 is not None:
        b = torch.cat([b[..., :1] + a[..., :1] * h0.unsqueeze(-1), b[..., 1:]],
                      -1)
    a, b = torch.broadcast_tensors(a, b)
    return _LinearScan.apply(a, b)


def selective_scan_ref(
        u: Tensor,
        delta: Tensor,
        A: Tensor,
        B: Tensor,
        C: Tensor,
        D: Optional[Tensor] = None,
        delta_bias: Optional[Tensor] = None,
        delta_softplus: bool = False,
        out_dtype: Optional[torch.dtype] = torch.float32) -> Tensor:
    """S6 selective scan with the official semantics (spec §3.4).

    Args:
        u, delta: (batch, G·D, L), any float dtype.
        A: (G·D, N) float32.
        B, C: (batch, G, N, L).
        D, delta_bias: (G·D,) float32 or None.
        delta_softplus: apply softplus to ``delta + delta_bias``.
        out_dtype: dtype of the result (float32 by default, as the official
            ``oflex`` kernel); ``None`` keeps u's dtype.

    Returns:
        y: (batch, G·D, L) with h_t = exp(Δ_t A) h_{t-1} + Δ_t u_t B_t and
        y_t = <C_t, h_t> + D u_t, computed in float32.
    """
    out_dtype = u.dtype if out_dtype is None else out_dtype
    batch, GD, L = u.shape
    G = B.shape[1]
    if GD % G:
        raise ValueError(f'channels {GD} are not divisible by groups {G}')
    # float32 state, float64 when the inputs are float64 (for gradcheck).
    cdt = torch.float64 if u.dtype == torch.float64 else torch.float32
    u32, dt = u.to(cdt), delta.to(cdt)
    if delta_bias is not None:
        dt = dt + delta_bias.to(cdt)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    Bx = B.to(cdt).repeat_interleave(GD // G, dim=1)  # (batch, GD, N, L)
    Cx = C.to(cdt).repeat_interleave(GD // G, dim=1)
    a = torch.exp(dt[:, :, None, :] * A.to(cdt)[None, :, :, None])
    b = (dt * u32)[:, :, None, :] * Bx
    h = linear_scan_ref(a, b)
    y = (h * Cx).sum(2)
    if D is not None:
        y = y + D.to(cdt)[:, None] * u32
    return y.to(out_dtype)


def ss2d_core_ref(x: Tensor, x_proj_weight: Tensor, dt_projs_weight: Tensor,
                  dt_projs_bias: Tensor, A_logs: Tensor, Ds: Tensor) -> Tensor:
    """The SS2D core: cross scan, projections, selective scan, cross merge.

    Args:
        x: (B, Di, H, W), the activated depthwise-conv output.
        x_proj_weight: (4, R + 2N, Di).
        dt_projs_weight: (4, Di, R).
        dt_projs_bias: (4, Di).
        A_logs: (4·Di, N); A = -exp(A_logs).
        Ds: (4·Di,).

    Returns:
        (B, Di, H, W) float32 (float64 for float64 x), the merged scan
        output before ``out_norm``.
    """
    Bsz, Di, H, W = x.shape
    K, RN2, _ = x_proj_weight.shape
    R = dt_projs_weight.shape[-1]
    N = A_logs.shape[-1]
    if RN2 != R + 2 * N:
        raise ValueError(f'x_proj_weight has {RN2} rows, expected dt_rank + '
                         f'2*d_state = {R} + 2*{N}')
    L = H * W
    xs = cross_scan_ref(x)  # (B, 4, Di, L)
    x_dbl = torch.einsum('bkdl,kcd->bkcl', xs, x_proj_weight.to(xs.dtype))
    dts, Bs, Cs = torch.split(x_dbl, [R, N, N], dim=2)
    dts = torch.einsum('bkrl,kdr->bkdl', dts, dt_projs_weight.to(dts.dtype))
    cdt = torch.float64 if x.dtype == torch.float64 else torch.float32
    ys = selective_scan_ref(
        xs.reshape(Bsz, K * Di, L),
        dts.reshape(Bsz, K * Di, L),
        -torch.exp(A_logs.to(cdt)),
        Bs,
        Cs,
        Ds.to(cdt),
        dt_projs_bias.reshape(-1).to(cdt),
        delta_softplus=True,
        out_dtype=cdt)
    y = cross_merge_ref(ys.view(Bsz, K, Di, H, W))
    return y.view(Bsz, Di, H, W)
