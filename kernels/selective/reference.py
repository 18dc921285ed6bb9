"""The S6 selective scan in plain PyTorch, with the official semantics (spec
§3.4): the CPU path and the ground truth of the Triton op. Differentiable by
autograd, any device.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..scan.reference import linear_scan_ref

__all__ = ['selective_scan_ref']


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
