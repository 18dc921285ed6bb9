"""The SS2D core on a CPU: a compiled scan over the four directions.

Same function as :func:`mmvmamba.kernels.ss2d.reference.ss2d_core_ref` (the
specification and test oracle), laid out for a CPU: the input is used
channel-last (B, H, W, Di), the x projection of all four directions is one
matmul on it, and ``cpu.cpp`` runs the dt projection, softplus, the
recurrence of all four scan orders and their merge in one pass per channel
block: channels are the vector lanes, time is sequential, and no direction is
copied or flipped. The forward saves its operands, not the states: the
backward recomputes them and runs the reverse recurrence. The C++ source is
built once per machine at first use by ``torch.utils.cpp_extension.load``
(g++ and ninja; cached under ``TORCH_EXTENSIONS_DIR``, by default
``~/.cache/torch_extensions``).
"""
import hashlib
import os.path as osp
import platform
import threading
import warnings
from typing import Tuple

import torch
from torch import Tensor

__all__ = ['ss2d_core_cpu', 'load_extension', 'available', 'build', 'has_avx512']

_lock = threading.Lock()
_ext = None
_error = None  # why the build failed, once it has
_warned = False


def _cpu_flags() -> str:
    """The ``flags`` line of /proc/cpuinfo ('' where there is none)."""
    try:
        with open('/proc/cpuinfo') as f:
            return next((line for line in f if line.startswith('flags')),
                        '')
    except OSError:
        return ''


def has_avx512() -> bool:
    """Whether this CPU has AVX-512F: the default build then uses 64-byte
    vectors, and ``build(..., ['-mno-avx512f'])`` the 32-byte code."""
    return ' avx512f ' in _cpu_flags() + ' '


def _cpu_tag() -> str:
    """A short digest of this CPU's instruction sets: the build uses
    ``-march=native``, so a cache shared between machines (a network home
    directory) keeps one build per kind of CPU."""
    flags = platform.machine() + _cpu_flags()
    return hashlib.sha1(flags.encode()).hexdigest()[:8]


def build(tag: str = '', extra_cflags=()):
    """Compile (or load from the cache) ``cpu.cpp`` for this machine;
    ``extra_cflags`` (with a ``tag`` naming them) build another instruction
    set, e.g. the AVX2 code on an AVX-512 machine in the tests."""
    from torch.utils.cpp_extension import load
    src = osp.join(osp.dirname(osp.abspath(__file__)), 'cpu.cpp')
    return load(
        name=f'mmvmamba_ss2d_cpu_{_cpu_tag()}{tag}',
        sources=[src],
        # -fno-trapping-math: GCC may then if-convert the selects of
        # softplus and vectorise its loop; without it that loop is scalar
        extra_cflags=[
            '-O3', '-march=native', '-fopenmp', '-fno-trapping-math',
            *extra_cflags
        ],
        extra_ldflags=['-fopenmp'],
        verbose=False)


def load_extension():
    """The compiled module, built at the first call on this machine.

    Raises RuntimeError, naming what is missing, if it cannot be built.
    """
    global _ext, _error
    if _ext is None:
        with _lock:
            if _ext is None:
                if _error is not None:
                    raise RuntimeError(_error)
                try:
                    _ext = build()
                except Exception as e:  # compiler, ninja or headers missing
                    _error = (
                        'building the SS2D CPU kernel (kernels/ss2d/cpu.cpp) '
                        f'failed: {e}. It needs g++, ninja and the Python '
                        'headers (e.g. apt install g++ python3-dev; pip '
                        'install ninja)')
                    raise RuntimeError(_error) from e
    return _ext


def available() -> bool:
    """Whether the compiled kernel can run (building it if needed).

    If it cannot be built, warns once with the reason and answers False:
    :func:`mmvmamba.kernels.ss2d_core` then runs the PyTorch reference.
    """
    global _warned
    try:
        load_extension()
        return True
    except RuntimeError as e:
        if not _warned:
            _warned = True
            warnings.warn(f'{e}; the SS2D core runs on the (slower) '
                          'PyTorch reference instead')
        return False


def _operands(x: Tensor, x_proj_weight: Tensor, dt_projs_weight: Tensor,
              dt_projs_bias: Tensor, A_logs: Tensor,
              Ds: Tensor) -> Tuple[Tensor, ...]:
    """The forward kernel's operands: channel-last u (B, H, W, Di), the dt
    projection transposed (4, R, Di), x_dbl (B, H, W, 4·(R+2N)) = the x
    projection of all four directions in one matmul, A (4, N, Di), D and
    the dt bias (4, Di)."""
    Bsz, Di, H, W = x.shape
    K, RN2, _ = x_proj_weight.shape
    N = A_logs.shape[-1]
    u = x.permute(0, 2, 3, 1).contiguous()  # free if x is channels_last
    xdbl = (u.view(-1, Di) @ x_proj_weight.reshape(K * RN2, Di).t()).view(
        Bsz, H, W, K * RN2)
    A = (-torch.exp(A_logs)).view(K, Di, N).transpose(1, 2).contiguous()
    return (u, dt_projs_weight.transpose(1, 2).contiguous(), xdbl, A,
            Ds.view(K, Di).contiguous(), dt_projs_bias.contiguous())


class _SS2DCoreCPU(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, x_proj_weight, dt_projs_weight, dt_projs_bias,
                A_logs, Ds):
        ops = _operands(x, x_proj_weight, dt_projs_weight, dt_projs_bias,
                        A_logs, Ds)
        y = load_extension().forward(*ops)
        ctx.save_for_backward(x_proj_weight, dt_projs_weight, *ops)
        return y.permute(0, 3, 1, 2)  # (B, Di, H, W), channels_last memory

    @staticmethod
    def backward(ctx, dy):
        x_proj_weight, dt_projs_weight, u, wdt, xdbl, A, D, bias = (
            ctx.saved_tensors)
        Bsz, H, W, Di = u.shape
        K, RN2, _ = x_proj_weight.shape
        R = dt_projs_weight.shape[-1]
        N = A.shape[1]
        BL = Bsz * H * W
        # the backward reads dt (4, B, H, W, Di) from memory
        dts = xdbl.view(BL, K, RN2)[:, :, :R].transpose(0, 1)  # (4, BL, R)
        dt = torch.bmm(dts, wdt).view(K, Bsz, H, W, Di)
        dy = dy.permute(0, 2, 3, 1).contiguous()
        du, ddt, dBC, dA, dD, dbias = load_extension().backward(
            u, dt, xdbl, A, D, bias, dy)
        ddt = ddt.view(K, BL, Di)
        dxdbl = torch.empty(BL, K, RN2, dtype=u.dtype)
        dxdbl[:, :, :R] = torch.bmm(ddt, dt_projs_weight).transpose(0, 1)
        dxdbl[:, :, R:] = dBC.view(BL, K, 2 * N)
        dxdbl = dxdbl.view(BL, K * RN2)
        u2 = u.view(BL, Di)
        du = du.view(BL, Di).addmm_(dxdbl, x_proj_weight.reshape(K * RN2, Di))
        d_xproj = (dxdbl.t() @ u2).view(K, RN2, Di)
        d_dtproj = torch.bmm(ddt.transpose(1, 2), dts)  # (4, Di, R)
        # A = -exp(A_logs): dA_logs = dA * A
        dA_logs = (dA * A).transpose(1, 2).reshape(K * Di, N)
        dx = du.view(Bsz, H, W, Di).permute(0, 3, 1, 2)
        return (dx, d_xproj, d_dtproj, dbias, dA_logs, dD.reshape(K * Di))


def ss2d_core_cpu(x: Tensor, x_proj_weight: Tensor, dt_projs_weight: Tensor,
                  dt_projs_bias: Tensor, A_logs: Tensor, Ds: Tensor) -> Tensor:
    """:func:`ss2d_core_ref` on CPU tensors (float32, or float64 throughout).

    Returns (B, Di, H, W) in x's dtype, stored channels-last.
    """
    K, RN2, Di = x_proj_weight.shape
    R = dt_projs_weight.shape[-1]
    N = A_logs.shape[-1]
    if RN2 != R + 2 * N:
        raise ValueError(f'x_proj_weight has {RN2} rows, expected dt_rank + '
                         f'2*d_state = {R} + 2*{N}')
    if K != 4 or x.dim() != 4 or x.shape[1] != Di:
        raise ValueError(
            f'ss2d_core: x {tuple(x.shape)} and x_proj_weight '
            f'{tuple(x_proj_weight.shape)} do not match (B, Di, H, W) and '
            '(4, R + 2N, Di)')
    dtype = x.dtype
    params = (x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds)
    return _SS2DCoreCPU.apply(x, *(p.to(dtype) for p in params))
