"""The first-order linear recurrence h_t = a_t·h_{t-1} + b_t in plain PyTorch:
the scan every selective scan reduces to, vectorised (no loop over positions)
and differentiable. The reference of the chunked kernels' carries, and the
host-side chain of their time splits.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['linear_scan_ref']


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
