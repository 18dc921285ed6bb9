"""FLOPs and parameters with the official VMamba counting rules.

The official numbers (spec §4, §6) come from fvcore's ``flop_count``: one
multiply-add is one FLOP, the default handles (convolution, linear/matmul/einsum,
norms, pooling, upsampling) count the ordinary layers, and the selective scan is
charged ``9·B·L·D·N + B·D·L`` (D = K·Di scan channels, N = d_state). SiLU, GELU,
``neg``/``exp``/``flip``, the cross scan/merge and layout permutes are free.

We use :class:`mmengine.analysis.FlopAnalyzer` (the fvcore port). Our reference
SS2D core is built from plain torch ops, which the tracer would count one by one;
:func:`counted_ss2d_core` therefore routes the kernels' dispatch
(:func:`mmvmamba.kernels.routed`) to a thin ``torch.autograd.Function`` (traced
as one ``prim::PythonOp``) for the duration of the count, and
:func:`ss2d_core_flop_jit` charges it exactly what the official model's grouped
``conv1d`` projections and scan cost; no module is patched.
"""
import contextlib
from functools import partial
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import torch
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.analysis.jit_handles import get_shape
from torch import Tensor, nn

import mmvmamba.kernels as K

__all__ = [
    'SS2D_CORE_OP', 'SELECTIVE_SCAN_OP', 'selective_scan_flops',
    'ss2d_core_flops', 'ss2d_core_flop_jit', 'selective_scan_flop_jit',
    'counted_ss2d_core', 'count_flops', 'count_model_flops', 'flop_handles',
    'model_kind', 'ImageClassifierForFlops', 'SPEC_GFLOPS',
    'SPEC_DOWNSTREAM_GFLOPS'
]

# Official fvcore counts at 224², classifier head included (spec §1.1).
SPEC_GFLOPS: Dict[str, float] = {
    'tiny': 4.906,  # T-s1l8, the README's headline VMamba-T
    'tiny_s2l5': 4.858,
    'small': 8.716,  # S-s2l15
    'small_s1l20': 8.612,
    'base': 15.36,  # B-s2l15
    'base_s1l20': 15.22,
    'vanilla_tiny': 5.627,
    'vanilla_small': 11.23,
    'vanilla_base': 18.02,
}

# Official downstream counts (spec §4.2/4.3): (GFLOPs, M params, input H, W).
SPEC_DOWNSTREAM_GFLOPS: Dict[str, Tuple[float, float, int, int]] = {
    'mask-rcnn_tiny': (271.2, 49.76, 1280, 800),
    'mask-rcnn_tiny_s2l5': (270.2, 50.21, 1280, 800),
    'mask-rcnn_small': (348.9, 69.654, 1280, 800),
    'mask-rcnn_base': (485.5, 108.0, 1280, 800),
    'mask-rcnn_r50': (260.2, 44.4, 1280, 800),
    'upernet_tiny': (948.8, 61.90, 512, 2048),
    'upernet_tiny_s2l5': (947.8, 62.36, 512, 2048),
    'upernet_small': (1028.4, 81.80, 512, 2048),
    'upernet_base': (1170.3, 122.07, 512, 2048),
}

SS2D_CORE_OP = 'prim::PythonOp.SS2DCoreCounted'
SELECTIVE_SCAN_OP = 'prim::PythonOp.SelectiveScanCounted'

# Ops the official counter registers as free (they are unsupported by the
# default handles anyway; naming them silences the "unsupported op" warnings).
FREE_OPS = ('aten::silu', 'aten::gelu', 'aten::neg', 'aten::exp', 'aten::flip',
            'aten::softplus', 'aten::sigmoid')


def selective_scan_flops(B: int,
                         L: int,
                         D: int,
                         N: int,
                         with_D: bool = True) -> int:
    """Official S6 count: 9·B·L·D·N (+ B·D·L for the D skip)."""
    return 9 * B * L * D * N + (B * D * L if with_D else 0)


def ss2d_core_flops(B: int, Di: int, H: int, W: int, K: int, R: int,
                    N: int) -> int:
    """FLOPs of one SS2D core call on a (B, Di, H, W) map.

    x_proj (K groups, Di → R + 2N per position) and dt_proj (R → Di) count as
    the official grouped 1-D convolutions; the scan runs over D = K·Di channels.
    """
    L = H * W
    x_proj = B * L * K * Di * (R + 2 * N)
    dt_proj = B * L * K * Di * R
    return x_proj + dt_proj + selective_scan_flops(B, L, K * Di, N)


def ss2d_core_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """fvcore/mmengine handle for :data:`SS2D_CORE_OP`."""
    B, Di, H, W = get_shape(inputs[0])
    Kd, _, _ = get_shape(inputs[1])
    R = get_shape(inputs[2])[-1]
    N = get_shape(inputs[4])[-1]
    return ss2d_core_flops(B, Di, H, W, Kd, R, N)


def selective_scan_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """fvcore/mmengine handle for :data:`SELECTIVE_SCAN_OP` (u, delta, A, ...)."""
    B, D, L = get_shape(inputs[0])
    N = get_shape(inputs[2])[-1]
    return selective_scan_flops(B, L, D, N, with_D=True)


def flop_handles() -> Dict[str, Any]:
    """Extra handles on top of mmengine's defaults (None = free op)."""
    handles: Dict[str, Any] = {name: None for name in FREE_OPS}
    handles[SS2D_CORE_OP] = ss2d_core_flop_jit
    handles[SELECTIVE_SCAN_OP] = selective_scan_flop_jit
    return handles


def _cheap_core(x: Tensor, x_proj_weight: Tensor, dt_projs_weight: Tensor,
                dt_projs_bias: Tensor, A_logs: Tensor, Ds: Tensor) -> Tensor:
    # Same shape and dtype as the real core; FLOPs only depend on shapes.
    return x.float() * Ds.float().view(4, -1).sum(0).view(1, -1, 1, 1)


@contextlib.contextmanager
def _untraced() -> Iterator:
    """Run the op's body outside the jit tracer.

    The trace records the Function as one ``prim::PythonOp``, charged by its
    handle; left traced, the body's own ops would be recorded and counted a
    second time.
    """
    state = torch._C._get_tracing_state()
    torch._C._set_tracing_state(None)
    try:
        yield
    finally:
        torch._C._set_tracing_state(state)


class SS2DCoreCounted(torch.autograd.Function):
    """The SS2D core as one traced op; ``impl`` is set by the context."""

    impl = staticmethod(K.ss2d_core_ref)

    @staticmethod
    def forward(ctx, x: Tensor, x_proj_weight: Tensor, dt_projs_weight: Tensor,
                dt_projs_bias: Tensor, A_logs: Tensor, Ds: Tensor) -> Tensor:
        with torch.no_grad(), _untraced():
            return SS2DCoreCounted.impl(x, x_proj_weight, dt_projs_weight,
                                        dt_projs_bias, A_logs, Ds)

    @staticmethod
    def backward(ctx, grad):  # counting only runs forwards
        raise RuntimeError('SS2DCoreCounted is for FLOP counting only; '
                           'leave the counted_ss2d_core() context to train')


class SelectiveScanCounted(torch.autograd.Function):
    """The selective scan as one traced op (for models that call it)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, delta_bias, delta_softplus,
                out_dtype):
        with torch.no_grad(), _untraced():
            return K.selective_scan_ref(u, delta, A, B, C, D, delta_bias,
                                        delta_softplus, out_dtype)

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError('SelectiveScanCounted is for FLOP counting only')


def _counted_core(x,
                  x_proj_weight,
                  dt_projs_weight,
                  dt_projs_bias,
                  A_logs,
                  Ds,
                  backend=None):
    return SS2DCoreCounted.apply(x, x_proj_weight, dt_projs_weight,
                                 dt_projs_bias, A_logs, Ds)


def _counted_scan(u,
                  delta,
                  A,
                  B,
                  C,
                  D=None,
                  delta_bias=None,
                  delta_softplus=False,
                  out_dtype=torch.float32,
                  backend=None):
    return SelectiveScanCounted.apply(u, delta, A, B, C, D, delta_bias,
                                      delta_softplus, out_dtype)


@contextlib.contextmanager
def counted_ss2d_core(cheap: bool = False) -> Iterator:
    """Route ``ss2d_core``/``selective_scan`` through countable ops.

    Uses the kernels' dispatch hook (:func:`mmvmamba.kernels.routed`): every
    call of the public ops, from any module, runs as one traced
    ``prim::PythonOp`` that :func:`flop_handles` charges; nothing is patched.

    Args:
        cheap: replace the core by a shape-only stand-in (fast; the counts are
            identical because they depend on shapes only).
    """
    old_impl = SS2DCoreCounted.impl
    SS2DCoreCounted.impl = staticmethod(
        _cheap_core if cheap else K.ss2d_core_ref)
    try:
        with K.routed(ss2d_core=_counted_core, selective_scan=_counted_scan):
            yield
    finally:
        SS2DCoreCounted.impl = old_impl


def count_flops(model: nn.Module,
                inputs: Union[Tensor, Tuple[Any, ...]],
                cheap_core: bool = False,
                by_module_depth: Optional[int] = None) -> Dict[str, Any]:
    """Count FLOPs (official rules) and parameters of ``model(*inputs)``.

    Args:
        model: any module; its forward is traced once in eval mode.
        inputs: a tensor or a tuple of forward arguments, e.g. (1, 3, 224, 224).
        cheap_core: use the shape-only SS2D core while tracing.
        by_module_depth: also return per-module FLOPs down to this depth.

    Returns:
        dict with ``flops`` (int), ``params`` (int), ``by_operator`` (dict)
        and ``by_module`` (dict, when ``by_module_depth`` is given).
    """
    if isinstance(inputs, Tensor):
        inputs = (inputs, )
    was_training = model.training
    model.eval()
    try:
        with counted_ss2d_core(cheap=cheap_core), torch.no_grad():
            analyzer = FlopAnalyzer(model, inputs)
            analyzer.set_op_handle(**flop_handles())
            analyzer.unsupported_ops_warnings(False)
            analyzer.uncalled_modules_warnings(False)
            analyzer.tracer_warnings('none')
            out = dict(
                flops=int(analyzer.total()),
                params=int(parameter_count(model)['']),
                by_operator=dict(analyzer.by_operator()))
            if by_module_depth is not None:
                out['by_module'] = {
                    k: v
                    for k, v in analyzer.by_module().items()
                    if k.count('.') < by_module_depth
                }
    finally:
        model.train(was_training)
    return out


class ImageClassifierForFlops(nn.Sequential):
    """Backbone (last stage, normed) → global average pool → linear head.

    Counts like the official classifier (``classifier.norm`` is the backbone's
    last ``outnorm``; pooling and head as in mmpretrain's GAP + LinearClsHead).
    """

    def __init__(self,
                 last_stage: nn.Module,
                 channels: int,
                 num_classes: int = 1000) -> None:
        super().__init__(last_stage, nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                         nn.Linear(channels, num_classes))


def model_kind(model: nn.Module) -> str:
    mod = type(model).__module__
    if hasattr(model, 'rpn_head') or hasattr(model, 'roi_head') or \
            mod.startswith('mmdet.'):
        return 'detector'
    if hasattr(model, 'decode_head') or mod.startswith('mmseg.'):
        return 'segmentor'
    return 'plain'


def count_model_flops(model: nn.Module,
                      shape: Tuple[int, int],
                      cheap_core: bool = False) -> Dict[str, Any]:
    """:func:`count_flops` of any classifier, detector or segmentor.

    Detectors and segmentors run their ``mode='tensor'`` forward, like mmdet's
    ``tools/analysis_tools/get_flops.py`` (a detector also needs image
    meta-data: one (H, W) image at scale 1). Other models get one (1, 3, H, W)
    tensor.
    """
    H, W = shape
    device = next(model.parameters()).device
    x = torch.randn(1, 3, H, W, device=device)
    kind = model_kind(model)
    if kind == 'detector':
        from mmdet.structures import DetDataSample
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(H, W),
                ori_shape=(H, W),
                pad_shape=(H, W),
                batch_input_shape=(H, W),
                scale_factor=(1.0, 1.0)))
        own = vars(model).get('forward')
        model.forward = partial(
            model.forward, data_samples=[sample], mode='tensor')
        try:
            return count_flops(model, (x, ), cheap_core=cheap_core)
        finally:
            if own is None:
                del model.forward
            else:
                model.forward = own
    return count_flops(model, (x, ), cheap_core=cheap_core)
