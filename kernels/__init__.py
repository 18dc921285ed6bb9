"""mmvmamba.kernels: the SS2D ops with a backend choice.

Public ops: :func:`cross_scan`, :func:`cross_merge`,
:func:`selective_scan`, :func:`ss2d_core`, :func:`layer_norm`.
``backend=None`` picks Triton for CUDA tensors and the PyTorch reference
otherwise; ``'triton'`` forces Triton (on a CPU only under
``TRITON_INTERPRET=1``); ``'torch'`` forces the reference. One exception:
:func:`ss2d_core` on float32/float64 CPU tensors runs the compiled CPU scan
(:mod:`.ss2d.cpu`, the same function) for both (the reference if g++ cannot
build it, with a warning); the reference itself stays available as
:func:`ss2d_core_ref`. Inside :func:`routed`, :func:`ss2d_core` and
:func:`selective_scan` call the functions it names instead (e.g. the FLOP
counter's single traced ops, :mod:`mmvmamba.analysis.flops`).
"""
import contextlib
import os
from typing import Callable, Dict, Iterator, List, Optional

import torch
from torch import Tensor

from .cross.reference import cross_merge_ref, cross_scan_ref
from .norm.reference import layer_norm_ref
from .scan.reference import linear_scan_ref
from .selective.reference import selective_scan_ref
from .ss2d.reference import ss2d_core_ref

BACKENDS = ('torch', 'triton')

__all__ = [
    'BACKENDS', 'resolve_backend', 'routed', 'cross_scan', 'cross_merge',
    'selective_scan', 'ss2d_core', 'layer_norm', 'cross_scan_ref',
    'cross_merge_ref', 'selective_scan_ref', 'ss2d_core_ref',
    'linear_scan_ref', 'layer_norm_ref'
]

_ROUTES: List[Dict[str, Callable]] = []
_ROUTABLE = ('ss2d_core', 'selective_scan')


@contextlib.contextmanager
def routed(**ops: Callable) -> Iterator[None]:
    """Inside the context, the public ops named here (``ss2d_core``,
    ``selective_scan``) call the given functions with the same arguments
    (the tensors positional, ``backend=`` by keyword) wherever they are
    called from. While a given function runs, its context is off: calling
    the op from it (e.g. to record the calls) runs the normal dispatch."""
    for name in ops:
        if name not in _ROUTABLE:
            raise ValueError(f'cannot route {name!r}; routable ops: '
                             f'{_ROUTABLE}')
    _ROUTES.append(ops)
    try:
        yield
    finally:
        _ROUTES.remove(ops)


def _call_route(route: Callable, *args, backend: Optional[str]):
    ops = _ROUTES.pop()
    try:
        return route(*args, backend=backend)
    finally:
        _ROUTES.append(ops)


def _triton_usable(t: Tensor) -> bool:
    if t.is_cuda:
        try:
            import triton  # noqa: F401
        except ImportError:
            return False
        return True
    return os.environ.get('TRITON_INTERPRET') == '1'


def resolve_backend(backend: Optional[str], t: Tensor) -> str:
    """The backend that runs ``t``: 'torch' or 'triton'."""
    if backend is None:
        return 'triton' if t.is_cuda and _triton_usable(t) else 'torch'
    if backend not in BACKENDS:
        raise ValueError(f'unknown backend {backend!r}; expected one of '
                         f'{BACKENDS} or None (automatic)')
    if backend == 'triton' and not _triton_usable(t):
        raise RuntimeError(
            'backend="triton" needs a CUDA tensor (or TRITON_INTERPRET=1 on '
            'a CPU); use backend="torch" or backend=None')
    return backend


def cross_scan(x: Tensor, backend: Optional[str] = None) -> Tensor:
    """(B, C, H, W) -> (B, 4, C, H·W) in the four scan orders."""
    if resolve_backend(backend, x) == 'triton':
        from .cross.op import cross_scan_triton
        return cross_scan_triton(x)
    return cross_scan_ref(x)


def cross_merge(y: Tensor, backend: Optional[str] = None) -> Tensor:
    """(B, 4, C, H, W) -> (B, C, H·W), the adjoint of :func:`cross_scan`."""
    if resolve_backend(backend, y) == 'triton':
        from .cross.op import cross_merge_triton
        return cross_merge_triton(y)
    return cross_merge_ref(y)


def selective_scan(u: Tensor,
                   delta: Tensor,
                   A: Tensor,
                   B: Tensor,
                   C: Tensor,
                   D: Optional[Tensor] = None,
                   delta_bias: Optional[Tensor] = None,
                   delta_softplus: bool = False,
                   out_dtype: Optional[torch.dtype] = torch.float32,
                   backend: Optional[str] = None) -> Tensor:
    """S6 selective scan; see :func:`selective_scan_ref` for the semantics."""
    route = _ROUTES and _ROUTES[-1].get('selective_scan')
    if route:
        return _call_route(
            route,
            u,
            delta,
            A,
            B,
            C,
            D,
            delta_bias,
            delta_softplus,
            out_dtype,
            backend=backend)
    if resolve_backend(backend, u) == 'triton':
        from .selective.op import selective_scan_triton
        return selective_scan_triton(u, delta, A, B, C, D, delta_bias,
                                     delta_softplus, out_dtype)
    return selective_scan_ref(u, delta, A, B, C, D, delta_bias, delta_softplus,
                              out_dtype)


def ss2d_core(x: Tensor,
              x_proj_weight: Tensor,
              dt_projs_weight: Tensor,
              dt_projs_bias: Tensor,
              A_logs: Tensor,
              Ds: Tensor,
              backend: Optional[str] = None) -> Tensor:
    """The SS2D core (cross scan → x_proj → dt_proj → selective scan → merge).

    x (B, Di, H, W) → (B, Di, H, W) float32; see :func:`ss2d_core_ref`.
    """
    route = _ROUTES and _ROUTES[-1].get('ss2d_core')
    if route:
        return _call_route(
            route,
            x,
            x_proj_weight,
            dt_projs_weight,
            dt_projs_bias,
            A_logs,
            Ds,
            backend=backend)
    if resolve_backend(backend, x) == 'triton':
        from .ss2d.op import ss2d_core_triton
        return ss2d_core_triton(x, x_proj_weight, dt_projs_weight,
                                dt_projs_bias, A_logs, Ds)
    if (x.device.type == 'cpu' and x.dtype in (torch.float32, torch.float64)
            and not torch.compiler.is_compiling()):
        from .ss2d import cpu
        if cpu.available():
            return cpu.ss2d_core_cpu(x, x_proj_weight, dt_projs_weight,
                                     dt_projs_bias, A_logs, Ds)
    return ss2d_core_ref(x, x_proj_weight, dt_projs_weight, dt_projs_bias,
                         A_logs, Ds)


def layer_norm(x: Tensor,
               weight: Tensor,
               bias: Tensor,
               eps: float,
               out_dtype: Optional[torch.dtype] = None,
               backend: Optional[str] = None,
               dim: int = -1) -> Tensor:
    """LayerNorm over dimension ``dim`` (the last, or 1 of a 4-D (B, C, H,
    W) map), returned in ``out_dtype``.

    The Triton kernel computes in float32 and stores the result once in
    ``out_dtype`` (default: what ``F.layer_norm`` returns, i.e. float32
    under autocast, else x's dtype): LayerNorm and the cast of its consumer
    in one pass. It runs where the normalised dimension is innermost in
    memory (a contiguous x over its last dimension, a channels_last map
    over its channels: no permute) and keeps x's strides. The reference is
    ``F.layer_norm(...).to(out_dtype)`` over ``dim`` moved last; it also
    serves other layouts and ``torch.compile`` (whose Inductor fuses the
    norm with its neighbours itself).
    """
    if dim not in (-1, 1) or (dim == 1 and x.dim() != 4):
        raise ValueError(f'layer_norm normalises dim -1, or dim 1 of a 4-D '
                         f'(B, C, H, W) tensor; got dim={dim} for shape '
                         f'{tuple(x.shape)}')
    if out_dtype is None:
        out_dtype = (
            torch.float32
            if torch.is_autocast_enabled(x.device.type) else x.dtype)
    if (resolve_backend(backend, x) == 'triton'
            and not torch.compiler.is_compiling()
            and (x.is_contiguous(memory_format=torch.channels_last)
                 if dim == 1 else x.is_contiguous())):
        from .norm.op import layer_norm_triton
        return layer_norm_triton(x, weight, bias, eps, out_dtype, dim)
    return layer_norm_ref(x, weight, bias, eps, out_dtype, dim)
