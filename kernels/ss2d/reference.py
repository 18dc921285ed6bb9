"""The SS2D core in plain PyTorch (spec §3): cross scan, x projection, dt
projection, selective scan of the four directions, cross merge. The ground
truth of the Triton kernels and of the compiled CPU scan; differentiable by
autograd, any device.
"""
import torch
from torch import Tensor

from ..cross.reference import cross_merge_ref, cross_scan_ref
from ..selective.reference import selective_scan_ref

__all__ = ['ss2d_core_ref']


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
