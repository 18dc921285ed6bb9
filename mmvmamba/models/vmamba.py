"""VMamba: the visual state-space backbone, faithful to the official weights.

One file in data-flow order: layout helpers, patch embeddings, downsamplers,
MLP, :class:`SS2D`, :class:`VSSBlock`, the :class:`VMamba` backbone and its
presets. Parameter names equal the official ``classification/models/vmamba.py``
state dict, so official checkpoints load unchanged (see
:mod:`mmvmamba.checkpoint` for the few renames of older files).

Layouts: ``norm_layer='ln2d'`` (or ``'bn'``) runs channel-first (B, C, H, W)
between modules, ``'ln'`` channel-last (B, H, W, C). Weights are the same in
both; the layouts compute the same function.
"""
import math
import warnings
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule
from timm.layers import DropPath
from torch import Tensor

from mmvmamba.checkpoint import load_pretrained
from mmvmamba.kernels import layer_norm, ss2d_core
from mmvmamba.registry import MODELS
from ._args import check_input, check_values
from .cuda_graph import GraphCache, TrainGraphCache

__all__ = [
    'Linear2d', 'LayerNorm2d', 'Permute', 'PatchMerging2D', 'Mlp', 'GMlp',
    'SS2D', 'VSSBlock', 'VMamba', 'ARCH_SETTINGS', 'FORWARD_TYPES'
]

# --------------------------------------------------------------------------
# Layout helpers
# --------------------------------------------------------------------------


#: pixels (batch x H x W) from which a CPU fp32 channels_last Linear2d runs
#: oneDNN's 1x1 convolution; below, one GEMM on the NHWC view (no weight
#: reorder per call). VMamba-T, Xeon with AVX-512, interleaved A/B against
#: the convolution everywhere: batch 1 0.95 (1 thread) / 0.89 (2 threads),
#: batch 8 0.96 / 0.98; the GEMM everywhere: batch 8 1.14 / 1.10.
MKLDNN_MIN_PIXELS = 4000


class Linear2d(nn.Linear):
    """A ``nn.Linear`` applied over the channels of a (B, C, H, W) tensor.

    The weight keeps the 2-D ``(out, in)`` shape of ``nn.Linear`` so the same
    checkpoint loads into the channel-first and the channel-last model.
    """

    @staticmethod
    def _mkldnn_fp32(x: Tensor) -> bool:
        """A channels_last fp32 CPU tensor that oneDNN may take."""
        # compile and export first: Dynamo does not trace is_available()
        # (a graph break in every Linear2d of a model compiled on a CPU)
        return (x.device.type == 'cpu' and not torch.compiler.is_compiling()
                and x.dtype == torch.float32
                and x.permute(0, 2, 3, 1).is_contiguous()
                and torch.backends.mkldnn.enabled
                and torch.backends.mkldnn.is_available()
                and not torch.jit.is_tracing())  # FLOP counters, ONNX

    @staticmethod
    def _large(x: Tensor) -> bool:
        """At least MKLDNN_MIN_PIXELS pixels: oneDNN's convolution, not the
        GEMM (see :meth:`forward`)."""
        return x.shape[0] * x.shape[2] * x.shape[3] >= MKLDNN_MIN_PIXELS

    def forward_gelu(self, x: Tensor, approximate: str) -> Tensor:
        """``F.gelu(self(x), approximate=approximate)``; on a CPU in fp32
        without autograd, GELU runs inside oneDNN's convolution or, below
        MKLDNN_MIN_PIXELS, its linear (a post-op: no second pass over the
        hidden map)."""
        if (not (torch.is_grad_enabled() and
                 (x.requires_grad or self.weight.requires_grad))
                and self._mkldnn_fp32(x)):
            if self._large(x):
                return torch.ops.mkldnn._convolution_pointwise(
                    x, self.weight[:, :, None, None], self.bias, [0, 0],
                    [1, 1], [1, 1], 1, 'gelu', [], approximate)
            return torch.ops.mkldnn._linear_pointwise(
                x.permute(0, 2, 3, 1), self.weight, self.bias, 'gelu', [],
                approximate).permute(0, 3, 1, 2)
        return F.gelu(self(x), approximate=approximate)

    def forward(self, x: Tensor) -> Tensor:
        x_hwc = x.permute(0, 2, 3, 1)
        if x_hwc.is_contiguous():
            # (the pixel count after the export/compile check: under
            # torch.export it would be a guard on the batch size)
            if self._mkldnn_fp32(x) and self._large(x):
                # a large CPU map: oneDNN's convolution (PyTorch itself
                # sends a one-thread 1x1 conv below batch 16 to its slower
                # im2col path)
                return torch.ops.aten.mkldnn_convolution(
                    x, self.weight[:, :, None, None], self.bias, (0, 0),
                    (1, 1), (1, 1), 1)
            if (x.device.type == 'cpu' or x.dtype != torch.float32
                    or torch.is_autocast_enabled(x.device.type)):
                # one GEMM over pixels on the free NHWC view; the result is
                # channels_last again (no layout change). CUDA fp32 keeps
                # the 1x1 conv, which cuDNN may run in TF32 (an H100 fp32
                # GEMM without TF32 made VMamba-T 30% slower).
                return F.linear(x_hwc, self.weight,
                                self.bias).permute(0, 3, 1, 2)
        return F.conv2d(x, self.weight[:, :, None, None], self.bias)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Accept 1x1-conv shaped weights; only touch the key when present so a
        # partial state dict reports a missing key instead of a KeyError.
        key = prefix + 'weight'
        if key in state_dict and state_dict[key].dim() == 4:
            state_dict[key] = state_dict[key].flatten(1)
        return super()._load_from_state_dict(state_dict, prefix, *args,
                                             **kwargs)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) tensor.

    Free (no copy) on a channels_last tensor, whose NHWC view is contiguous;
    the output is channels_last. On CUDA it runs the Triton kernel of
    :func:`mmvmamba.kernels.layer_norm`; with ``cast_out`` (set on norms
    whose consumer is a linear layer) it returns the autocast dtype directly
    instead of float32, fusing the consumer's input cast. The values are
    those of ``F.layer_norm`` followed by that cast.
    """

    backend: Optional[str] = None
    cast_out: bool = False

    def forward(self, x: Tensor) -> Tensor:
        if self.weight is not None and self.bias is not None:
            dev = x.device.type
            out_dtype = (
                torch.get_autocast_dtype(dev) if self.cast_out
                and torch.is_autocast_enabled(dev) else None)
            return layer_norm(x, self.weight, self.bias, self.eps, out_dtype,
                              self.backend, dim=1)
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape,
                            self.weight, self.bias,
                            self.eps).permute(0, 3, 1, 2)


class Permute(nn.Module):
    """Parameter-free ``x.permute(*dims)``; keeps Sequential indices stable."""

    def __init__(self, *dims: int) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(*self.dims)

    def extra_repr(self) -> str:
        return str(self.dims)


NORM_LAYERS = {'ln': nn.LayerNorm, 'ln2d': LayerNorm2d, 'bn': nn.BatchNorm2d}
ACT_LAYERS = {
    'silu': nn.SiLU,
    'gelu': nn.GELU,
    'relu': nn.ReLU,
    'sigmoid': nn.Sigmoid
}


def _lookup(table: Dict, name: str, what: str):
    key = name.lower() if isinstance(name, str) else name
    if key not in table:
        raise ValueError(f'unknown {what} {name!r}; expected one of '
                         f'{sorted(table)}')
    return table[key]


def _to_bchw(channel_first: bool) -> nn.Module:
    return nn.Identity() if channel_first else Permute(0, 3, 1, 2)


def _to_bhwc(channel_first: bool) -> nn.Module:
    return nn.Identity() if channel_first else Permute(0, 2, 3, 1)


# --------------------------------------------------------------------------
# Patch embedding (stem) and downsampling
# --------------------------------------------------------------------------


def make_patch_embed_v1(in_chans: int, embed_dim: int, patch_size: int,
                        patch_norm: bool, norm_layer: type,
                        channel_first: bool) -> nn.Sequential:
    """Stem of the vanilla models: one ``patch_size`` conv (keys .0, .2)."""
    return nn.Sequential(
        nn.Conv2d(in_chans, embed_dim, patch_size, patch_size, bias=True),
        _to_bhwc(channel_first),
        norm_layer(embed_dim) if patch_norm else nn.Identity())


def make_patch_embed_v2(in_chans: int, embed_dim: int, patch_size: int,
                        patch_norm: bool, norm_layer: type,
                        channel_first: bool) -> nn.Sequential:
    """Stem of the v2 models: two stride-2 3x3 convs (keys .0, .2, .5, .7)."""
    stride = patch_size // 2
    kernel = stride + 1
    mid = embed_dim // 2
    return nn.Sequential(
        nn.Conv2d(in_chans, mid, kernel, stride, padding=1),
        _to_bhwc(channel_first),
        norm_layer(mid) if patch_norm else nn.Identity(),
        _to_bchw(channel_first), nn.GELU(),
        nn.Conv2d(mid, embed_dim, kernel, stride, padding=1),
        _to_bhwc(channel_first),
        norm_layer(embed_dim) if patch_norm else nn.Identity())


class PatchMerging2D(nn.Module):
    """Downsample v1 (vanilla models): 2x2 space-to-channel, norm, linear.

    Odd sizes are zero-padded at the bottom/right. (The official channel-first
    path pads the wrong dimensions; we pad correctly, which only differs for
    odd sizes in the ``ln2d`` layout.)
    """

    def __init__(self,
                 dim: int,
                 out_dim: int = -1,
                 norm_layer: type = nn.LayerNorm,
                 channel_first: bool = False) -> None:
        super().__init__()
        linear = Linear2d if channel_first else nn.Linear
        self.channel_first = channel_first
        self.reduction = linear(
            4 * dim, (2 * dim) if out_dim < 0 else out_dim, bias=False)
        self.norm = norm_layer(4 * dim)

    def forward(self, x: Tensor) -> Tensor:
        if self.channel_first:
            H, W = x.shape[-2:]
            if H % 2 or W % 2:
                x = F.pad(x, (0, W % 2, 0, H % 2))
            # Swin order (row parity fastest); fixed by the released weights.
            x = torch.cat([
                x[..., 0::2, 0::2], x[..., 1::2, 0::2], x[..., 0::2, 1::2],
                x[..., 1::2, 1::2]
            ], 1)
        else:
            H, W = x.shape[1:3]
            if H % 2 or W % 2:
                x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
            x = torch.cat([
                x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2],
                x[:, 1::2, 1::2]
            ], -1)
        return self.reduction(self.norm(x))


def make_downsample_v2(dim: int, out_dim: int, norm_layer: type,
                       channel_first: bool) -> nn.Sequential:
    """Downsample v2: 2x2 stride-2 conv + norm (keys .1, .3)."""
    return nn.Sequential(
        _to_bchw(channel_first), nn.Conv2d(dim, out_dim, 2, 2),
        _to_bhwc(channel_first), norm_layer(out_dim))


def make_downsample_v3(dim: int, out_dim: int, norm_layer: type,
                       channel_first: bool) -> nn.Sequential:
    """Downsample v3 (v2 models): 3x3 stride-2 conv + norm (keys .1, .3)."""
    return nn.Sequential(
        _to_bchw(channel_first), nn.Conv2d(dim, out_dim, 3, 2, padding=1),
        _to_bhwc(channel_first), norm_layer(out_dim))


PATCH_EMBEDS = {'v1': make_patch_embed_v1, 'v2': make_patch_embed_v2}
DOWNSAMPLES = {
    'v1':
    lambda dim, out_dim, norm, cf: PatchMerging2D(dim, out_dim, norm, cf),
    'v2': make_downsample_v2,
    'v3': make_downsample_v3,
}

# --------------------------------------------------------------------------
# MLP
# --------------------------------------------------------------------------


def _hooked(*modules: nn.Module) -> bool:
    """Whether a forward hook would see these modules' calls (then they are
    called one by one, not fused)."""
    from torch.nn.modules import module as m
    return bool(m._global_forward_hooks or m._global_forward_pre_hooks
                or any(x._forward_hooks or x._forward_pre_hooks
                       for x in modules))


class Mlp(nn.Module):
    """fc1 → act → drop → fc2 → drop, on channels of either layout."""

    def __init__(self,
                 in_features: int,
                 hidden_features: int,
                 act_layer: type = nn.GELU,
                 drop: float = 0.0,
                 channel_first: bool = False) -> None:
        super().__init__()
        linear = Linear2d if channel_first else nn.Linear
        self.fc1 = linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop) if drop > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        if (isinstance(self.fc1, Linear2d) and type(self.act) is nn.GELU
                and not _hooked(self.fc1, self.act)):
            # VMamba-T, 2-core dev CPU, one thread, eval: 3.4% less time at
            # batch 1 and 8 (two threads: within the noise)
            x = self.fc1.forward_gelu(x, self.act.approximate)
        else:
            x = self.act(self.fc1(x))
        x = self.drop(x)
        return self.drop(self.fc2(x))


class GMlp(nn.Module):
    """Gated MLP (official ``gmlp=True``, unused by the released models)."""

    def __init__(self,
                 in_features: int,
                 hidden_features: int,
                 act_layer: type = nn.GELU,
                 drop: float = 0.0,
                 channel_first: bool = False) -> None:
        super().__init__()
        linear = Linear2d if channel_first else nn.Linear
        self.channel_dim = 1 if channel_first else -1
        self.fc1 = linear(in_features, 2 * hidden_features)
        self.act = act_layer()
        self.fc2 = linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop) if drop > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x, z = self.fc1(x).chunk(2, dim=self.channel_dim)
        x = self.drop(self.fc2(x * self.act(z)))
        return x


# --------------------------------------------------------------------------
# SS2D
# --------------------------------------------------------------------------

# Every accepted forward_type computes the same function as one of the two
# released ones ('v0': z-gated; 'v05_noz': no gate). The official variants
# differ only in kernel choice and AMP casting, which our single core
# (fp32 state, fp32 output) subsumes. Variants computing other functions
# (other scan patterns, out-norms, out activations) are rejected.
#: forward_type -> whether the output is gated by z (``_noz``: no gate;
#: ``_no32``: official AMP casting only)
FORWARD_TYPES: Dict[str, bool] = {
    **dict.fromkeys(('v0', 'v0seq', 'v01', 'v01_no32', 'v02', 'v02_no32',
                     'v03', 'v03_no32', 'v04', 'v04_no32', 'v05', 'v05_no32',
                     'v2', 'v2_no32', 'v3', 'v3_no32'), True),
    **dict.fromkeys(('v01_noz', 'v01_noz_no32', 'v02_noz', 'v02_noz_no32',
                     'v03_noz', 'v03_noz_no32', 'v04_noz', 'v04_noz_no32',
                     'v05_noz', 'v05_noz_no32', 'v2_noz', 'v2_noz_no32',
                     'v3_noz', 'v3_noz_no32'), False),
}


def _check_forward_type(forward_type: str) -> bool:
    """Return whether ``forward_type`` has the z gate; raise if unknown."""
    if forward_type not in FORWARD_TYPES:
        raise ValueError(
            f'unknown forward_type {forward_type!r}; expected one of '
            f'{list(FORWARD_TYPES)} (released models: \'v05_noz\' for v2, '
            f'\'v0\' for vanilla)')
    return FORWARD_TYPES[forward_type]


class SS2D(nn.Module):
    """2D selective scan: in_proj → dwconv → act → SS2D core → norm → out_proj.

    The core (4-direction cross scan, x/dt projections, selective scan, cross
    merge) is :func:`mmvmamba.kernels.ss2d_core`, the single dispatch point to
    the Triton kernels (CUDA) or the PyTorch reference (``backend='torch'``).

    Input and output: (B, C, H, W) if ``channel_first`` else (B, H, W, C).
    """

    def __init__(self,
                 d_model: int = 96,
                 d_state: int = 16,
                 ssm_ratio: float = 2.0,
                 dt_rank: Union[int, str] = 'auto',
                 act_layer: type = nn.SiLU,
                 d_conv: int = 3,
                 conv_bias: bool = True,
                 dropout: float = 0.0,
                 bias: bool = False,
                 dt_min: float = 0.001,
                 dt_max: float = 0.1,
                 dt_init: str = 'random',
                 dt_scale: float = 1.0,
                 dt_init_floor: float = 1e-4,
                 initialize: str = 'v0',
                 forward_type: str = 'v05_noz',
                 channel_first: bool = False,
                 backend: Optional[str] = None) -> None:
        super().__init__()
        if d_state < 1:
            raise ValueError(f'd_state must be >= 1, got {d_state}')
        self.with_z = _check_forward_type(forward_type)
        self.forward_type = forward_type
        self.channel_first = channel_first
        self.backend = backend
        d_inner = int(ssm_ratio * d_model)
        if dt_rank == 'auto':
            dt_rank = math.ceil(d_model / 16)
        elif not isinstance(dt_rank, int) or dt_rank < 1:
            raise ValueError(f"dt_rank must be 'auto' or an int >= 1, got "
                             f'{dt_rank!r}')
        self.d_inner, self.d_state, self.dt_rank = d_inner, d_state, dt_rank
        K = 4
        linear = Linear2d if channel_first else nn.Linear

        self.in_proj = linear(
            d_model, d_inner * (2 if self.with_z else 1), bias=bias)
        self.act = act_layer()
        self.with_dconv = d_conv > 1
        if self.with_dconv:
            self.conv2d = nn.Conv2d(
                d_inner,
                d_inner,
                d_conv,
                padding=(d_conv - 1) // 2,
                groups=d_inner,
                bias=conv_bias)

        # Direction k uses x_proj_weight[k], dt_projs_*[k] and rows
        # k*Di:(k+1)*Di of A_logs / Ds (spec §1.5).
        self.x_proj_weight = nn.Parameter(
            torch.empty(K, dt_rank + 2 * d_state, d_inner))
        self.dt_projs_weight = nn.Parameter(torch.empty(K, d_inner, dt_rank))
        self.dt_projs_bias = nn.Parameter(torch.empty(K, d_inner))
        self.A_logs = nn.Parameter(torch.empty(K * d_inner, d_state))
        self.Ds = nn.Parameter(torch.empty(K * d_inner))
        self._init_ssm(initialize, dt_min, dt_max, dt_init, dt_scale,
                       dt_init_floor)

        self.out_norm = (LayerNorm2d if channel_first else nn.LayerNorm)(
            d_inner)
        # its output is cast for out_proj anyway: store it in that dtype
        self.out_norm.cast_out = True
        self.out_proj = linear(d_inner, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @torch.no_grad()
    def _init_ssm(self, initialize: str, dt_min: float, dt_max: float,
                  dt_init: str, dt_scale: float, dt_init_floor: float) -> None:
        """SSM parameter init of the official ``mamba_init`` (spec §1.5)."""
        K, Di, R, N = 4, self.d_inner, self.dt_rank, self.d_state
        if initialize == 'v0':
            # nn.Linear(Di, R + 2N) default init, one per direction
            bound = Di**-0.5
            self.x_proj_weight.uniform_(-bound, bound)
            std = R**-0.5 * dt_scale
            if dt_init == 'constant':
                self.dt_projs_weight.fill_(std)
            elif dt_init == 'random':
                self.dt_projs_weight.uniform_(-std, std)
            else:
                raise ValueError(f'unknown dt_init {dt_init!r}; expected '
                                 "'random' or 'constant'")
            dt = torch.exp(
                torch.rand_like(self.dt_projs_bias) *
                (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
            dt = dt.clamp(min=dt_init_floor)
            # inverse of softplus, so softplus(bias) == dt
            self.dt_projs_bias.copy_(dt + torch.log(-torch.expm1(-dt)))
            A = torch.arange(
                1, N + 1, dtype=torch.float32, device=self.A_logs.device)
            self.A_logs.copy_(torch.log(A).expand(K * Di, N))
        elif initialize in ('v1', 'v2'):
            bound = Di**-0.5
            self.x_proj_weight.uniform_(-bound, bound)
            if initialize == 'v1':
                self.A_logs.normal_()
                self.dt_projs_weight.normal_().mul_(0.1)
                self.dt_projs_bias.normal_().mul_(0.1)
            else:
                self.A_logs.zero_()
                self.dt_projs_weight.uniform_().mul_(0.1)
                self.dt_projs_bias.uniform_().mul_(0.1)
        else:
            raise ValueError(f'unknown ssm_init {initialize!r}; expected one '
                             "of ['v0', 'v1', 'v2']")
        self.Ds.fill_(1.0)

    def forward(self, x: Tensor) -> Tensor:
        x = self.in_proj(x)
        if self.with_z:
            x, z = x.chunk(2, dim=1 if self.channel_first else -1)
            z = self.act(z)
        if not self.channel_first:
            x = x.permute(0, 3, 1, 2)
        if self.with_dconv:
            x = self.conv2d(x)
        x = self.act(x)
        y = ss2d_core(
            x,
            self.x_proj_weight,
            self.dt_projs_weight,
            self.dt_projs_bias,
            self.A_logs,
            self.Ds,
            backend=self.backend)  # (B, Di, H, W) float32
        if not self.channel_first:
            y = y.permute(0, 2, 3, 1)
        # out_norm sees the fp32 scan output, as the official code.
        y = self.out_norm(y).to(x.dtype)
        if self.with_z:
            y = y * z
        return self.dropout(self.out_proj(y))


# --------------------------------------------------------------------------
# VSSBlock
# --------------------------------------------------------------------------


class VSSBlock(nn.Module):
    """``x + drop_path(SS2D(norm(x)))`` then ``x + drop_path(MLP(norm2(x)))``.

    The SS2D branch exists if ``ssm_ratio > 0``, the MLP branch if
    ``mlp_ratio > 0``. One DropPath serves both branches (as the official).
    """

    def __init__(self,
                 hidden_dim: int,
                 drop_path: float = 0.0,
                 norm_layer: type = nn.LayerNorm,
                 channel_first: bool = False,
                 ssm_d_state: int = 16,
                 ssm_ratio: float = 2.0,
                 ssm_dt_rank: Union[int, str] = 'auto',
                 ssm_act_layer: type = nn.SiLU,
                 ssm_conv: int = 3,
                 ssm_conv_bias: bool = True,
                 ssm_drop_rate: float = 0.0,
                 ssm_init: str = 'v0',
                 forward_type: str = 'v05_noz',
                 mlp_ratio: float = 4.0,
                 mlp_act_layer: type = nn.GELU,
                 mlp_drop_rate: float = 0.0,
                 gmlp: bool = False,
                 post_norm: bool = False,
                 backend: Optional[str] = None) -> None:
        super().__init__()
        self.ssm_branch = ssm_ratio > 0
        self.mlp_branch = mlp_ratio > 0
        self.post_norm = post_norm
        if self.ssm_branch:
            self.norm = norm_layer(hidden_dim)
            self.op = SS2D(
                d_model=hidden_dim,
                d_state=ssm_d_state,
                ssm_ratio=ssm_ratio,
                dt_rank=ssm_dt_rank,
                act_layer=ssm_act_layer,
                d_conv=ssm_conv,
                conv_bias=ssm_conv_bias,
                dropout=ssm_drop_rate,
                initialize=ssm_init,
                forward_type=forward_type,
                channel_first=channel_first,
                backend=backend)
        self.drop_path = DropPath(drop_path)
        if self.mlp_branch:
            mlp = GMlp if gmlp else Mlp
            self.norm2 = norm_layer(hidden_dim)
            self.mlp = mlp(
                hidden_dim,
                int(hidden_dim * mlp_ratio),
                act_layer=mlp_act_layer,
                drop=mlp_drop_rate,
                channel_first=channel_first)
        if not post_norm:  # pre-norms feed a linear layer: fuse its cast
            for name in ('norm', 'norm2'):
                if isinstance(getattr(self, name, None), LayerNorm2d):
                    getattr(self, name).cast_out = True

    def _residual(self, x: Tensor, branch: Tensor) -> Tensor:
        """``x + drop_path(branch)``. In training, the drop-path mask (the
        same draw as timm's ``drop_path``) and the 1/keep scale enter the
        residual add as one ``addcmul`` (timm's scales and multiplies the
        branch first: three ops and their backward nodes instead of one)."""
        dp = self.drop_path
        if not self.training or dp.drop_prob == 0.:
            return x + branch
        if _hooked(dp):  # a hook sees drop_path's own call
            return x + dp(branch)
        keep = 1. - dp.drop_prob
        mask = branch.new_empty((branch.shape[0], ) + (1, ) *
                                (branch.dim() - 1)).bernoulli_(keep)
        scale = 1. / keep if keep > 0. and dp.scale_by_keep else 1.
        return torch.addcmul(x, branch, mask, value=scale)

    def forward(self, x: Tensor) -> Tensor:
        if self.ssm_branch:
            if self.post_norm:
                x = self._residual(x, self.norm(self.op(x)))
            else:
                x = self._residual(x, self.op(self.norm(x)))
        if self.mlp_branch:
            if self.post_norm:
                x = self._residual(x, self.norm2(self.mlp(x)))
            else:
                x = self._residual(x, self.mlp(self.norm2(x)))
        return x


# --------------------------------------------------------------------------
# Backbone
# --------------------------------------------------------------------------

_V2_COMMON = dict(
    ssm_d_state=1,
    ssm_dt_rank='auto',
    ssm_conv=3,
    ssm_conv_bias=False,
    forward_type='v05_noz',
    mlp_ratio=4.0,
    downsample_version='v3',
    patchembed_version='v2',
    norm_layer='ln2d')
_V0_COMMON = dict(
    ssm_d_state=16,
    ssm_ratio=2.0,
    ssm_dt_rank='auto',
    ssm_conv=3,
    ssm_conv_bias=True,
    forward_type='v0',
    mlp_ratio=0.0,
    downsample_version='v1',
    patchembed_version='v1',
    norm_layer='ln')

#: The 9 released ImageNet-1k models (spec §1.1). ``drop_path_rate`` is the
#: classification training value.
ARCH_SETTINGS: Dict[str, dict] = {
    # VMamba-T[s1l8], the README headline "VMamba-T" (vmambav2v_tiny_224)
    'tiny':
    dict(
        dims=96,
        depths=(2, 2, 8, 2),
        ssm_ratio=1.0,
        drop_path_rate=0.2,
        **_V2_COMMON),
    # VMamba-T[s2l5] (vmambav2_tiny_224)
    'tiny_s2l5':
    dict(
        dims=96,
        depths=(2, 2, 5, 2),
        ssm_ratio=2.0,
        drop_path_rate=0.2,
        **_V2_COMMON),
    # VMamba-S[s2l15] (vmambav2_small_224)
    'small':
    dict(
        dims=96,
        depths=(2, 2, 15, 2),
        ssm_ratio=2.0,
        drop_path_rate=0.3,
        **_V2_COMMON),
    # VMamba-S[s1l20] (vmambav2v_small_224)
    'small_s1l20':
    dict(
        dims=96,
        depths=(2, 2, 20, 2),
        ssm_ratio=1.0,
        drop_path_rate=0.3,
        **_V2_COMMON),
    # VMamba-B[s2l15] (vmambav2_base_224)
    'base':
    dict(
        dims=128,
        depths=(2, 2, 15, 2),
        ssm_ratio=2.0,
        drop_path_rate=0.6,
        **_V2_COMMON),
    # VMamba-B[s1l20] (vmambav2v_base_224)
    'base_s1l20':
    dict(
        dims=128,
        depths=(2, 2, 20, 2),
        ssm_ratio=1.0,
        drop_path_rate=0.5,
        **_V2_COMMON),
    # Vanilla-VMamba-T/S/B (vmambav0_*_224)
    'vanilla_tiny':
    dict(dims=96, depths=(2, 2, 9, 2), drop_path_rate=0.2, **_V0_COMMON),
    'vanilla_small':
    dict(dims=96, depths=(2, 2, 27, 2), drop_path_rate=0.3, **_V0_COMMON),
    # trained with 0.6 (checkpoint name "dp06"; the yaml says 0.5)
    'vanilla_base':
    dict(dims=128, depths=(2, 2, 27, 2), drop_path_rate=0.6, **_V0_COMMON),
}
ARCH_ALIASES = {
    'tiny_s1l8': 'tiny',
    'small_s2l15': 'small',
    'base_s2l15': 'base',
}

#: Arguments of the backbones of the stock mmdet / mmseg / mmpretrain base
#: configs that VMamba does not take. A config that inherits one of them and
#: changes only ``type`` (the official VMamba configs inherit Swin's) leaves
#: them in the backbone dict: VMamba ignores them with one warning (the
#: official class ignores them silently). Two or more arguments of one
#: backbone mark such a leftover; anything else unknown is an error.
FOREIGN_BACKBONE_ARGS: Dict[str, Tuple[str, ...]] = {
    'SwinTransformer':
    ('act_cfg', 'attn_drop_rate', 'convert_weights', 'drop_rate',
     'embed_dims', 'in_channels', 'norm_cfg', 'num_heads',
     'pretrain_img_size', 'qk_scale', 'qkv_bias', 'strides',
     'use_abs_pos_embed', 'window_size'),
    'ResNet': ('avg_down', 'base_channels', 'contract_dilation', 'conv_cfg',
               'dcn', 'deep_stem', 'depth', 'dilations', 'in_channels',
               'multi_grid', 'norm_cfg', 'num_stages', 'plugins',
               'stage_with_dcn', 'stem_channels', 'strides', 'style',
               'zero_init_residual'),
    'ConvNeXt': ('act_cfg', 'gap_before_final_norm', 'in_channels',
                 'layer_scale_init_value', 'linear_pw_conv', 'norm_cfg',
                 'stem_patch_size', 'use_grn'),
}


def _drop_leftover_arguments(kwargs: dict, pretrained: Optional[str],
                             init_cfg: Any) -> Any:
    """Ignore, with one warning, the arguments another backbone's base
    config left in ``kwargs``; raise for any other unknown argument.

    Returns the ``init_cfg`` to use: an inherited one gives way to an
    explicit ``pretrained`` (official configs set both that way).
    """
    if not kwargs:
        return init_cfg
    backbone, leftover = max(
        ((name, sorted(set(kwargs) & set(args)))
         for name, args in FOREIGN_BACKBONE_ARGS.items()),
        key=lambda item: len(item[1]))
    if len(leftover) < 2:
        leftover = []
    unknown = sorted(set(kwargs) - set(leftover))
    if unknown:
        foreign = [
            k for k in unknown
            if any(k in args for args in FOREIGN_BACKBONE_ARGS.values())
        ]
        hint = (f' {foreign} belong to another backbone: if the base config '
                'left them, add `_delete_=True` to the backbone dict.'
                if foreign else '')
        raise TypeError(f'VMamba got unknown arguments {unknown}.{hint} '
                        'Accepted: see VMamba.__init__ (official '
                        'VSSM/Backbone_VSSM arguments, arch, frozen_stages, '
                        'norm_eval, with_cp, backend, cuda_graph, '
                        'cuda_graph_train, init_cfg).')
    replaced = ''
    if pretrained and init_cfg is not None:
        replaced = (f' and its init_cfg (pretrained={pretrained!r} is '
                    'loaded instead)')
        init_cfg = None
    warnings.warn(
        f'VMamba ignores the {backbone} arguments {leftover}{replaced} that '
        'the base config left in the backbone dict; add `_delete_=True` to '
        'the backbone dict to drop them and silence this warning.',
        UserWarning,
        stacklevel=3)
    return init_cfg


def _check_arguments(cfg: Dict[str, Any], out_indices: Union[int,
                                                             Sequence[int]],
                     frozen_stages: int, cuda_graph: Union[bool, int],
                     cuda_graph_train: Union[bool, int], ssm_act_layer: str,
                     mlp_act_layer: str) -> dict:
    """Every check of VMamba's arguments (``cfg``: the preset with the
    explicit arguments over it), before anything is built. Returns them
    normalised: ``dims``/``depths`` lists, sorted non-negative
    ``out_indices``, ``graphs`` and ``train_graphs`` (cached CUDA-graph
    shapes, 0 = off)."""
    dims = cfg['dims']
    if isinstance(dims, int):
        dims = [dims * 2**i for i in range(4)]
    dims, depths = list(dims), list(cfg['depths'])
    if len(dims) != len(depths) or len(depths) < 1:
        raise ValueError(f'dims {dims} and depths {depths} must have the '
                         'same (non-zero) length')
    num_stages = len(depths)
    out_indices = [out_indices] if isinstance(out_indices,
                                              int) else list(out_indices)
    if any(not -num_stages <= i < num_stages for i in out_indices):
        raise ValueError(f'out_indices {tuple(out_indices)} out of range '
                         f'for {num_stages} stages')
    if not out_indices:
        raise ValueError('out_indices must not be empty')
    if not -1 <= frozen_stages <= num_stages:
        raise ValueError(f'frozen_stages must be in [-1, {num_stages}], '
                         f'got {frozen_stages}')
    graphs = {}
    for name, value in (('cuda_graph', cuda_graph), ('cuda_graph_train',
                                                     cuda_graph_train)):
        if value is True:
            value = 4 if name == 'cuda_graph' else 1
        if value is not False and (isinstance(value, bool)
                                   or not isinstance(value, int) or value < 1):
            raise ValueError(f'{name} must be True, False or a positive '
                             f'number of cached input shapes, got {value!r}')
        graphs[name] = int(value)
    _lookup(NORM_LAYERS, cfg['norm_layer'].lower(), 'norm_layer')
    _lookup(ACT_LAYERS, ssm_act_layer, 'ssm_act_layer')
    _lookup(ACT_LAYERS, mlp_act_layer, 'mlp_act_layer')
    _lookup(PATCH_EMBEDS, cfg['patchembed_version'], 'patchembed_version')
    _lookup(DOWNSAMPLES, cfg['downsample_version'], 'downsample_version')
    _check_forward_type(cfg['forward_type'])
    return dict(
        dims=dims,
        depths=depths,
        out_indices=tuple(sorted(i % num_stages for i in out_indices)),
        graphs=graphs['cuda_graph'],
        train_graphs=graphs['cuda_graph_train'])


@MODELS.register_module()
class VMamba(BaseModule):
    """VMamba backbone (official ``VSSM``/``Backbone_VSSM``/``MM_VSSM``).

    Use a preset (``arch='tiny'``, see :data:`ARCH_SETTINGS`) or the official
    constructor arguments; explicit arguments override the preset. Without
    ``arch`` the defaults are those of ``'tiny'`` (VMamba-T[s1l8]).

    Args:
        arch: preset name or a dict of the arguments below.
        out_indices: stages whose outputs are returned, each normalised by
            its own ``outnorm{i}`` and returned as (B, C_i, H/s, W/s) with
            strides 4/8/16/32.
        frozen_stages: freeze the stem (0) and stages ``< frozen_stages``;
            -1 freezes nothing.
        norm_eval: keep BatchNorm layers in eval mode while training.
        with_cp: gradient checkpointing per block (saves memory).
        backend: SS2D core backend (None = Triton on CUDA, torch elsewhere;
            'torch'; 'triton').
        cuda_graph: replay the inference forward (CUDA input, autograd
            off, e.g. mmdet/mmseg test and inferencers) from CUDA graphs
            captured once per input shape: removes the launch overhead that
            dominates at batch 1. ``True`` keeps 4 shapes, an int that many.
            Training and CPU runs are unaffected.
        cuda_graph_train: replay the training forward and its backward
            (CUDA input, autograd on, ``with_cp`` off) from two CUDA graphs
            per input shape, captured at its second sighting: the eager
            step's per-op host work becomes two graph launches, in any
            training loop (fp16 AMP with a GradScaler included). For
            fixed-size training (classification, segmentation crops):
            each kept shape holds its activations in its own memory pool.
            ``True`` keeps 1 shape, an int that many. Two forwards before
            one backward run the second eagerly. Both graph options are
            eager mode's: under ``torch.compile`` the model runs its plain
            forward (compile's own graphs: ``mode='reduce-overhead'``).
        pretrained: official alias of
            ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)``.
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH_OR_URL,
            use_ema=False)`` loads official classification, legacy v0 or
            mmdet/mmseg/mmpretrain checkpoints and fails loudly when they do
            not fit or hold NaN/Inf (``allow_nonfinite=True`` loads those).
        num_classes, imgsize: accepted for config compatibility with the
            official classes; a backbone has no classifier (``imgsize`` only
            sizes ``posembed``).
    """

    #: what a checkpoint that does not fit is compared with (its hint)
    arch_presets = ARCH_SETTINGS

    def __init__(self,
                 arch: Union[str, dict, None] = None,
                 dims: Union[int, Sequence[int], None] = None,
                 depths: Optional[Sequence[int]] = None,
                 ssm_d_state: Optional[int] = None,
                 ssm_ratio: Optional[float] = None,
                 ssm_dt_rank: Union[int, str, None] = None,
                 ssm_act_layer: str = 'silu',
                 ssm_conv: Optional[int] = None,
                 ssm_conv_bias: Optional[bool] = None,
                 ssm_drop_rate: float = 0.0,
                 ssm_init: str = 'v0',
                 forward_type: Optional[str] = None,
                 mlp_ratio: Optional[float] = None,
                 mlp_act_layer: str = 'gelu',
                 mlp_drop_rate: float = 0.0,
                 gmlp: bool = False,
                 drop_path_rate: Optional[float] = None,
                 patch_size: int = 4,
                 in_chans: int = 3,
                 patch_norm: bool = True,
                 norm_layer: Optional[str] = None,
                 downsample_version: Optional[str] = None,
                 patchembed_version: Optional[str] = None,
                 posembed: bool = False,
                 imgsize: int = 224,
                 num_classes: Optional[int] = None,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 use_checkpoint: bool = False,
                 backend: Optional[str] = None,
                 cuda_graph: Union[bool, int] = False,
                 cuda_graph_train: Union[bool, int] = False,
                 pretrained: Optional[str] = None,
                 init_cfg: Union[dict, List[dict], None] = None,
                 **kwargs) -> None:
        init_cfg = _drop_leftover_arguments(kwargs, pretrained, init_cfg)
        if pretrained:
            if init_cfg is not None:
                raise ValueError('give either `pretrained` or `init_cfg`, '
                                 'not both')
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        super().__init__(init_cfg=init_cfg)
        cfg = self._resolve_arch(
            arch,
            dict(
                dims=dims,
                depths=depths,
                ssm_d_state=ssm_d_state,
                ssm_ratio=ssm_ratio,
                ssm_dt_rank=ssm_dt_rank,
                ssm_conv=ssm_conv,
                ssm_conv_bias=ssm_conv_bias,
                forward_type=forward_type,
                mlp_ratio=mlp_ratio,
                drop_path_rate=drop_path_rate,
                norm_layer=norm_layer,
                downsample_version=downsample_version,
                patchembed_version=patchembed_version))
        check_values(cfg, backend)
        checked = _check_arguments(cfg, out_indices, frozen_stages,
                                   cuda_graph, cuda_graph_train,
                                   ssm_act_layer, mlp_act_layer)

        self.arch_settings = cfg
        self.dims, self.depths = checked['dims'], checked['depths']
        self.num_features = self.dims[-1]
        self.out_indices = checked['out_indices']
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp or use_checkpoint
        self.backend = backend
        self.num_classes = num_classes
        self._graphs = GraphCache(
            checked['graphs']) if checked['graphs'] else None
        self._train_graphs = TrainGraphCache(
            checked['train_graphs']) if checked['train_graphs'] else None
        norm_name = cfg['norm_layer'].lower()
        norm = NORM_LAYERS[norm_name]
        self.channel_first = norm_name in ('ln2d', 'bn')

        self.patch_embed = PATCH_EMBEDS[cfg['patchembed_version']](
            in_chans, self.dims[0], patch_size, patch_norm, norm,
            self.channel_first)
        self.pos_embed = None
        if posembed:
            size = imgsize // patch_size
            self.pos_embed = nn.Parameter(
                torch.zeros(1, self.dims[0], size, size))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.layers = self._build_layers(
            cfg,
            norm,
            norm_layer=norm,
            channel_first=self.channel_first,
            ssm_d_state=cfg['ssm_d_state'],
            ssm_ratio=cfg['ssm_ratio'],
            ssm_dt_rank=cfg['ssm_dt_rank'],
            ssm_act_layer=ACT_LAYERS[ssm_act_layer],
            ssm_conv=cfg['ssm_conv'],
            ssm_conv_bias=cfg['ssm_conv_bias'],
            ssm_drop_rate=ssm_drop_rate,
            ssm_init=ssm_init,
            forward_type=cfg['forward_type'],
            mlp_ratio=cfg['mlp_ratio'],
            mlp_act_layer=ACT_LAYERS[mlp_act_layer],
            mlp_drop_rate=mlp_drop_rate,
            gmlp=gmlp,
            backend=backend)
        for i in self.out_indices:
            self.add_module(f'outnorm{i}', norm(self.dims[i]))

        for m in self.modules():
            if isinstance(m, LayerNorm2d):
                m.backend = backend
        self.apply(self._init_module)
        if self.channel_first:
            # forward runs channels_last: the conv weights in the same
            # format, or every call copies them (dev CPU, VMamba-T batch 1,
            # one thread: 161 -> 147 ms with the channels_last input below)
            self.to(memory_format=torch.channels_last)
        self._freeze_stages()

    def _build_layers(self, cfg: Dict[str, Any], norm: type,
                      **block_args: Any) -> nn.ModuleList:
        """``layers.i`` = ``blocks`` (the VSSBlocks of stage i) and
        ``downsample`` (to stage i + 1; Identity after the last), the
        official key layout. Stochastic depth grows linearly over all
        blocks."""
        dims, depths = self.dims, self.depths
        make_down = DOWNSAMPLES[cfg['downsample_version']]
        dpr = torch.linspace(  # on the CPU: safe under a meta device
            0, cfg['drop_path_rate'], sum(depths), device='cpu').tolist()
        layers = nn.ModuleList()
        for i, (dim, depth) in enumerate(zip(dims, depths)):
            first = sum(depths[:i])
            blocks = [
                VSSBlock(dim, drop_path=dpr[first + j], **block_args)
                for j in range(depth)
            ]
            down = (
                make_down(dim, dims[i + 1], norm, self.channel_first)
                if i + 1 < len(dims) else nn.Identity())
            layers.append(
                nn.Sequential(
                    OrderedDict(
                        blocks=nn.Sequential(*blocks), downsample=down)))
        return layers

    @staticmethod
    def _resolve_arch(arch: Union[str, dict, None], explicit: dict) -> dict:
        if arch is None:
            arch = 'tiny'
        if isinstance(arch, str):
            name = ARCH_ALIASES.get(arch, arch)
            if name not in ARCH_SETTINGS:
                raise ValueError(
                    f'unknown arch {arch!r}; expected one of '
                    f'{list(ARCH_SETTINGS) + list(ARCH_ALIASES)} or a dict')
            cfg = dict(ARCH_SETTINGS[name])
        elif isinstance(arch, dict):
            cfg = dict(ARCH_SETTINGS['tiny'])
            unknown = set(arch) - set(cfg)
            if unknown:
                raise ValueError(f'unknown keys {sorted(unknown)} in arch '
                                 f'dict; expected some of {sorted(cfg)}')
            cfg.update(arch)
        else:
            raise TypeError(f'arch must be a str, dict or None, got '
                            f'{type(arch).__name__}')
        cfg.update({k: v for k, v in explicit.items() if v is not None})
        return cfg

    @staticmethod
    def _init_module(m: nn.Module) -> None:
        """Official ``VSSM._init_weights``: trunc-normal linears, unit LNs."""
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def init_weights(self) -> None:
        """Load ``init_cfg=dict(type='Pretrained', ...)`` with the safe,
        strict-with-summary loader; other init_cfgs go to mmengine."""
        cfgs = self.init_cfg or []
        cfgs = [cfgs] if isinstance(cfgs, dict) else list(cfgs)
        pretrained = [c for c in cfgs if c.get('type') == 'Pretrained']
        if not pretrained or self._is_init:
            return super().init_weights()
        others = [c for c in cfgs if c.get('type') != 'Pretrained']
        self.init_cfg = others or None
        try:
            super().init_weights()
        finally:
            self.init_cfg = cfgs if len(cfgs) > 1 else cfgs[0]
        for c in pretrained:
            extra = set(c) - {
                'type', 'checkpoint', 'prefix', 'map_location', 'use_ema',
                'allow_nonfinite'
            }
            if extra:
                raise ValueError(f'unsupported keys {sorted(extra)} in '
                                 'Pretrained init_cfg of VMamba')
            load_pretrained(
                self,
                c['checkpoint'],
                prefix=c.get('prefix'),
                use_ema=c.get('use_ema', False),
                map_location=c.get('map_location', 'cpu'),
                allow_nonfinite=c.get('allow_nonfinite', False))

    def _freeze_stages(self) -> None:
        if self.frozen_stages >= 0:
            self.patch_embed.eval()
            for p in self.patch_embed.parameters():
                p.requires_grad = False
            if self.pos_embed is not None:
                self.pos_embed.requires_grad = False
        for i in range(self.frozen_stages):
            modules = [self.layers[i]]
            if i in self.out_indices:
                modules.append(getattr(self, f'outnorm{i}'))
            for m in modules:
                m.eval()
                for p in m.parameters():
                    p.requires_grad = False

    def train(self, mode: bool = True) -> 'VMamba':
        """Set train mode, keeping frozen stages (and BN if norm_eval) in
        eval mode."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def _add_pos_embed(self, x: Tensor) -> Tensor:
        pos = self.pos_embed
        H, W = (x.shape[2:] if self.channel_first else x.shape[1:3])
        if pos.shape[2:] != (H, W):
            pos = F.interpolate(
                pos, size=(H, W), mode='bicubic', align_corners=False)
        if not self.channel_first:
            pos = pos.permute(0, 2, 3, 1)
        return x + pos

    def _apply(self, fn, *args, **kwargs):
        # .to()/.cuda()/.half() give new parameter storage: graphs recorded
        # on the old one must not be replayed.
        for cache in (getattr(self, '_graphs', None),
                      getattr(self, '_train_graphs', None)):
            if cache is not None:
                cache.clear()
        return super()._apply(fn, *args, **kwargs)

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """(B, 3, H, W) -> tuple of (B, dims[i], H_i, W_i), i in out_indices.

        H_i ≈ H / 2**(i + 2) (exact for sizes divisible by 32).
        """
        check_input(x, self.patch_embed)
        if torch.compiler.is_compiling():
            # the graphs below are eager mode's; under torch.compile they
            # would be traced (their caches' bookkeeping recompiled on every
            # new key): a compiled model has its own graphs, mode
            # 'reduce-overhead'
            return self._forward(x)
        if self._graphs is not None and not self.training:
            return self._graphs(self._forward, x)
        if (self._train_graphs is not None and self.training
                and not self.with_cp):
            return self._train_graphs(self._forward, x, self)
        return self._forward(x)

    def _forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        if self.channel_first:
            # Run the channel-first model channels_last end to end: norms,
            # Linear2d and the SS2D core then see contiguous NHWC views and
            # no hidden permute copies are made (the convs follow the input
            # layout, their weights are channels_last too).
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.patch_embed(x)
        if self.pos_embed is not None:
            x = self._add_pos_embed(x)
        outs = []
        for i, layer in enumerate(self.layers):
            for blk in layer.blocks:
                if self.with_cp and self.training and torch.is_grad_enabled():
                    x = cp.checkpoint(blk, x, use_reentrant=False)
                else:
                    x = blk(x)
            if i in self.out_indices:
                out = getattr(self, f'outnorm{i}')(x)
                if not self.channel_first:
                    out = out.permute(0, 3, 1, 2)
                outs.append(out.contiguous())
            if i == self.out_indices[-1]:
                break  # later stages would be unused
            x = layer.downsample(x)
        return tuple(outs)
