"""GPU-only checks: full model shapes, torch.compile, whole VMamba-T."""
import importlib

import pytest
import torch

from mmvmamba.kernels import (cross_scan, selective_scan, selective_scan_ref,
                              ss2d_core, ss2d_core_ref)
from mmvmamba.kernels.norm.op import layer_norm_triton
from ._helpers import grads, rel_err

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason='needs a CUDA GPU (H100 run)')


def _params(C, N=1, R=None):
    R = R or -(-C // 16)
    p = [
        torch.randn(4, R + 2 * N, C) * C**-0.5,
        torch.randn(4, C, R) * R**-0.5,
        torch.randn(4, C) * 0.5 - 3.,
        torch.log(torch.arange(1, N + 1).float()).repeat(4 * C, 1),
        torch.randn(4 * C),
    ]
    return [t.cuda().requires_grad_() for t in p]


@pytest.fixture
def deterministic():
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield
    torch.use_deterministic_algorithms(False)


@pytest.fixture(params=['default', 'deterministic'])
def mode(request):
    if request.param == 'deterministic':
        request.getfixturevalue('deterministic')
    return request.param


@pytest.mark.parametrize('C,H', [(96, 56), (192, 28), (384, 14), (768, 7)])
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_ss2d_core_stage_shapes(mode, C, H, dtype):
    torch.manual_seed(0)
    x = torch.randn(
        4, C, H, H, device='cuda').to(dtype).to(
            memory_format=torch.channels_last).requires_grad_()
    ps = _params(C)
    y = ss2d_core(x, *ps)
    ref = ss2d_core_ref(x, *ps)
    fwd_tol, bwd_tol = (1e-4, 1e-3) if dtype == torch.float32 else (2e-2, 5e-2)
    assert rel_err(y, ref) < fwd_tol
    g = torch.randn_like(ref)
    for a, b in zip(grads(y, [x] + ps, g), grads(ref, [x] + ps, g)):
        assert rel_err(a, b) < bwd_tol


def _check_fp32(B, C, H, W):
    """Forward and every gradient against the reference, float32."""
    torch.manual_seed(0)
    x = torch.randn(B, C, H, W, device='cuda').requires_grad_()
    ps = _params(C)
    y = ss2d_core(x, *ps)
    ref = ss2d_core_ref(x, *ps)
    assert rel_err(y, ref) < 1e-4
    g = torch.randn_like(ref)
    for a, b in zip(grads(y, [x] + ps, g), grads(ref, [x] + ps, g)):
        assert rel_err(a, b) < 1e-3


def test_ss2d_core_detection_shape(mode):
    # batch 2 at 800×1344, stage 1: L = 67200 over 1050 tiles
    _check_fp32(2, 96, 200, 336)


@pytest.mark.parametrize('B,C,H,W', [
    (1, 1, 1, 1),  # L = 1, one channel
    (2, 16, 3, 5),  # L below one tile
    (1, 40, 9, 13),  # partial tiles, channels not a multiple of the block
    (3, 96, 1, 17),  # one row
    (2, 96, 19, 1),  # one column
])
def test_ss2d_core_degenerate_shapes(mode, B, C, H, W):
    _check_fp32(B, C, H, W)


@pytest.mark.parametrize('B,C,H,W', [(128, 96, 56, 56), (2, 96, 200, 336),
                                     (128, 768, 7, 7), (1, 96, 56, 56)])
def test_ss2d_core_is_deterministic(deterministic, B, C, H, W):
    """With deterministic algorithms asked for, the forward output and every
    gradient are bit-identical from run to run (no order-dependent atomics),
    at benchmark shapes, in bf16 (AMP)."""
    torch.manual_seed(0)
    x = torch.randn(B, C, H, W, device='cuda').to(torch.bfloat16).to(
        memory_format=torch.channels_last).requires_grad_()
    ps = _params(C)
    g = torch.randn(B, C, H, W, device='cuda')
    runs = []
    for _ in range(2):
        y = ss2d_core(x, *ps)
        runs.append([y] + list(grads(y, [x] + ps, g)))
    for name, a, b in zip('y x x_proj dt_w dt_b A_logs Ds'.split(), *runs):
        assert torch.equal(a, b), name


def test_selective_scan_d_state_16():
    torch.manual_seed(0)
    b, G, D, N, L = 2, 4, 96, 16, 3136
    ins = [
        torch.randn(b, G * D, L),
        torch.randn(b, G * D, L) * 0.5, -torch.rand(G * D, N) - 0.5,
        torch.randn(b, G, N, L),
        torch.randn(b, G, N, L),
        torch.randn(G * D),
        torch.randn(G * D)
    ]
    ins = [t.cuda().requires_grad_() for t in ins]
    y = selective_scan(*ins, delta_softplus=True)
    ref = selective_scan_ref(*ins, delta_softplus=True)
    assert rel_err(y, ref) < 1e-4
    g = torch.randn_like(ref)
    for a, b_ in zip(grads(y, ins, g), grads(ref, ins, g)):
        assert rel_err(a, b_) < 1e-3


def test_torch_compile_through_the_ops(mode):
    torch.manual_seed(0)
    x = torch.randn(2, 32, 9, 11, device='cuda').requires_grad_()
    ps = _params(32)

    def block(x, *ps):
        y = ss2d_core(torch.nn.functional.silu(x), *ps)
        return torch.nn.functional.layer_norm(y.permute(0, 2, 3, 1), (32, ))

    compiled = torch.compile(block, fullgraph=True, dynamic=True)
    out = compiled(x, *ps)
    ref = block(x, *ps)
    assert rel_err(out, ref) < 1e-5
    g = torch.randn_like(ref)
    for a, b in zip(grads(out, [x] + ps, g), grads(ref, [x] + ps, g)):
        assert rel_err(a, b) < 1e-4
    # a new image size runs without error (dynamic shapes)
    out2 = compiled(torch.randn(2, 32, 7, 12, device='cuda'), *ps)
    assert out2.shape == (2, 7, 12, 32)
    xs = torch.randn(2, 8, 5, 6, device='cuda')
    assert torch.equal(
        torch.compile(cross_scan, fullgraph=True)(xs), cross_scan(xs))


def test_layer_norm_op_under_torch_compile():
    """The Triton LayerNorm op (16-bit output of a float32 input: the
    backward reads the kept 16-bit x̂) traced whole by torch.compile,
    forward and backward through the custom ops, equals the eager call.
    (``kernels.layer_norm`` itself hands compilation F.layer_norm.)"""
    torch.manual_seed(0)
    x = torch.randn(4, 14, 14, 96, device='cuda').requires_grad_()
    w = (torch.randn(96, device='cuda') * 0.5 + 1).requires_grad_()
    b = torch.randn(96, device='cuda').requires_grad_()

    def norm(x, w, b):
        return layer_norm_triton(x, w, b, 1e-6, torch.bfloat16)

    out = torch.compile(norm, fullgraph=True)(x, w, b)
    ref = norm(x, w, b)
    assert out.dtype == torch.bfloat16 and torch.equal(out, ref)
    g = torch.randn_like(ref)
    for a, r in zip(grads(out, [x, w, b], g), grads(ref, [x, w, b], g)):
        assert torch.equal(a, r)


def test_new_image_size_does_not_recompile():
    kern = importlib.import_module('mmvmamba.kernels.ss2d.kernels')
    fns = [kern.summary_kernel, kern.chain_kernel, kern.fwd_kernel]

    def n_compiled():
        n = 0
        for fn in fns:
            caches = getattr(fn, 'device_caches', None)
            if caches is not None:
                n += sum(len(v[0]) for v in caches.values())
            else:
                n += sum(len(v) for v in fn.cache.values())
        return n

    ps = _params(32)
    with torch.no_grad():
        ss2d_core(torch.randn(2, 32, 10, 12, device='cuda'), *ps)
        before = n_compiled()
        for hw in [(11, 13), (17, 5), (64, 33)]:
            ss2d_core(torch.randn(2, 32, *hw, device='cuda'), *ps)
    assert n_compiled() == before


@pytest.mark.parametrize('norm_layer', ['ln2d', 'ln'])
def test_vmamba_tiny_cuda_matches_torch_path(norm_layer):
    from mmvmamba.models import VMamba
    torch.manual_seed(0)
    model = VMamba(arch='tiny', norm_layer=norm_layer).cuda().eval()
    x = torch.randn(2, 3, 224, 224, device='cuda')
    with torch.no_grad():
        outs = model(x)
        for m in model.modules():
            if hasattr(m, 'backend'):
                m.backend = 'torch'
        refs = model(x)
    for a, b in zip(outs, refs):
        assert rel_err(a, b) < 1e-3


def test_ss2d_core_captured_in_a_cuda_graph_takes_the_pair_kernels(
        monkeypatch):
    """Batch 4 at 7x7 runs the chunked kernels eagerly and the pair kernels
    inside a CUDA-graph capture; the replay agrees with the eager run."""
    op = importlib.import_module('mmvmamba.kernels.ss2d.op')
    seen = []
    use_pairs = op.use_pairs

    def spy(*args, **kwargs):
        seen.append(use_pairs(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(op, 'use_pairs', spy)
    torch.manual_seed(0)
    params = _params(32)
    x = torch.randn(4, 32, 7, 7, device='cuda')
    with torch.no_grad():
        ref = ss2d_core(x, *params)
        torch.use_deterministic_algorithms(True)  # compiles the pair kernels
        try:
            ss2d_core(x, *params)
        finally:
            torch.use_deterministic_algorithms(False)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = ss2d_core(x, *params)
        graph.replay()
        torch.cuda.synchronize()
    assert seen == [False, True, True]
    assert rel_err(out, ref) < 1e-4
