"""Triton kernels against the PyTorch reference, forward and backward.

On a CPU they run under ``TRITON_INTERPRET=1`` (set by this folder's
conftest); on a GPU machine compiled. Shapes are small on purpose: the
interpreter runs a scan's combine once per tile element.
"""
import pytest
import torch

from mmvmamba.kernels import (cross_merge, cross_merge_ref, cross_scan,
                              cross_scan_ref, resolve_backend, selective_scan,
                              selective_scan_ref, ss2d_core, ss2d_core_ref)
from ._helpers import DEVICE, force_splits, grads, load_fixture, rel_err

# (forward, gradient) relative tolerances by input dtype
TOL = {torch.float32: (2e-5, 1e-4), torch.bfloat16: (2e-2, 5e-2)}


@pytest.mark.parametrize('shape', [(2, 3, 5, 7), (1, 2, 1, 1), (1, 17, 4, 9)])
@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_cross_scan_and_merge(shape, channels_last, dtype):
    x = torch.randn(shape, device=DEVICE).to(dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_()
    ys = cross_scan(x, backend='triton')
    assert torch.equal(ys, cross_scan_ref(x))  # a pure copy: exact
    B, C, H, W = shape
    g = torch.randn_like(ys)
    (gx, ) = grads(ys, [x], g)
    # the merge sums in float32, then rounds once
    assert rel_err(gx,
                   cross_merge_ref(g.float().view(
                       B, 4, C, H, W)).view(shape)) < TOL[dtype][0]

    y = torch.randn(B, 4, C, H, W, device=DEVICE).to(dtype).requires_grad_()
    out = cross_merge(y, backend='triton')
    ref = cross_merge_ref(y.float())
    assert rel_err(out, ref) < TOL[dtype][0]
    gm = torch.randn_like(out)
    (gy, ) = grads(out, [y], gm)
    assert torch.equal(gy,
                       cross_scan_ref(gm.view(B, C, H, W)).view(B, 4, C, H, W))


def _scan_inputs(batch, G, D, N, L, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)

    def rnd(*s, scale=1.):
        return scale * torch.randn(*s, generator=gen)

    ins = [
        rnd(batch, G * D, L).to(dtype),
        rnd(batch, G * D, L, scale=0.5).to(dtype),
        -torch.rand(G * D, N, generator=gen) - 0.2,
        rnd(batch, G, N, L).to(dtype),
        rnd(batch, G, N, L).to(dtype),
        rnd(G * D),
        rnd(G * D),
    ]
    return [t.to(DEVICE).requires_grad_() for t in ins]


@pytest.mark.parametrize('batch,G,D,N,L,splits,dtype', [
    (2, 4, 12, 1, 35, False, torch.float32),
    (1, 2, 16, 1, 1, False, torch.float32),
    (1, 2, 16, 1, 70, True, torch.float32),
    (1, 2, 5, 4, 23, False, torch.float32),
    (1, 1, 16, 16, 20, True, torch.float32),
    (1, 4, 8, 1, 40, False, torch.bfloat16),
    # degenerate shapes: one channel, L < chunk, L = chunk, chunk + 1
    (1, 1, 1, 1, 7, False, torch.float32),
    (2, 1, 1, 4, 1, False, torch.float32),
    (1, 2, 3, 1, 16, False, torch.float32),
    (1, 2, 3, 1, 17, True, torch.float32),
])
def test_selective_scan(monkeypatch, batch, G, D, N, L, splits, dtype):
    force_splits(monkeypatch, splits)
    ins = _scan_inputs(batch, G, D, N, L, dtype)
    y = selective_scan(*ins, delta_softplus=True, backend='triton')
    ref = selective_scan_ref(*[t.float() for t in ins], delta_softplus=True)
    assert y.dtype == torch.float32
    tol_f, tol_g = TOL[dtype]
    assert rel_err(y, ref) < tol_f
    g = torch.randn_like(y)
    gt = grads(y, ins, g)
    gr = grads(selective_scan_ref(*ins, delta_softplus=True), ins, g)
    for name, a, b in zip('u delta A B C D delta_bias'.split(), gt, gr):
        assert rel_err(a, b) < tol_g, name


def test_selective_scan_options_and_fixture():
    fx = load_fixture('selective_scan_ref_small')
    inp = {
        k: v.to(DEVICE).requires_grad_() if torch.is_tensor(v) else v
        for k, v in fx['inputs'].items()
    }
    names = ('u', 'delta', 'A', 'B', 'C', 'D', 'delta_bias')
    out = selective_scan(**inp, backend='triton')
    assert rel_err(out.cpu(), fx['out']) < 1e-5
    gs = grads(out, [inp[n] for n in names], fx['grad_out'].to(DEVICE))
    for name, g in zip(names, gs):
        assert rel_err(g.cpu(), fx['grads'][name]) < 1e-4, name
    # no D, no bias, no softplus, output in u's dtype
    u, delta, A, B, C = (inp[n].detach() for n in names[:5])
    delta = delta.abs()
    y = selective_scan(
        u.half(),
        delta.half(),
        A,
        B.half(),
        C.half(),
        out_dtype=None,
        backend='triton')
    ref = selective_scan_ref(u.half(), delta.half(), A, B.half(), C.half())
    assert y.dtype == torch.float16
    assert rel_err(y, ref) < 2e-3


def _ss2d_inputs(B, Di, H, W, N, R, dtype, channels_last, seed=0):
    gen = torch.Generator().manual_seed(seed)

    def rnd(*s, scale=1., shift=0.):
        return scale * torch.randn(*s, generator=gen) + shift

    x = rnd(B, Di, H, W).to(dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    ins = [
        x,
        rnd(4, R + 2 * N, Di, scale=Di**-0.5),
        rnd(4, Di, R, scale=R**-0.5),
        rnd(4, Di, scale=0.5, shift=-2.),
        torch.log(torch.rand(4 * Di, N, generator=gen) + 0.5),
        rnd(4 * Di),
    ]
    return [t.to(DEVICE).requires_grad_() for t in ins]


@pytest.mark.parametrize('B,Di,H,W,N,R,channels_last,splits,dtype', [
    (1, 16, 3, 5, 1, 2, False, False, torch.float32),
    (2, 16, 5, 4, 1, 3, True, False, torch.float32),
    (1, 16, 1, 1, 1, 2, True, False, torch.float32),
    (1, 20, 5, 6, 4, 2, False, True, torch.float32),
    (1, 16, 2, 3, 16, 1, True, False, torch.float32),
    (1, 16, 4, 4, 1, 2, True, False, torch.bfloat16),
    # degenerate shapes: one channel, 1x1 map, one row / column, L not a
    # multiple of the chunk with time splits
    (1, 1, 1, 1, 1, 1, False, False, torch.float32),
    (2, 1, 3, 5, 1, 1, True, False, torch.float32),
    (1, 16, 1, 7, 1, 2, True, False, torch.float32),
    (1, 16, 9, 1, 1, 2, False, True, torch.float32),
    (1, 16, 1, 1, 4, 2, False, False, torch.float32),
    # d_state 1 over several chunks (8 steps under the interpreter): carries
    # chained across chunks in both pair orders, partial chunks, a channel
    # count that is not a multiple of the block
    (1, 20, 9, 7, 1, 3, True, False, torch.float32),
    (2, 16, 4, 13, 1, 2, False, False, torch.float32),
])
def test_ss2d_core(monkeypatch, B, Di, H, W, N, R, channels_last, splits,
                   dtype):
    force_splits(monkeypatch, splits)
    ins = _ss2d_inputs(B, Di, H, W, N, R, dtype, channels_last)
    y = ss2d_core(*ins, backend='triton')
    ref = ss2d_core_ref(*ins)
    assert y.shape == ref.shape and y.dtype == torch.float32
    tol_f, tol_g = TOL[dtype]
    assert rel_err(y, ref) < tol_f
    # seeded: the result must not depend on which tests ran before
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1))
    gt = grads(y, ins, g.to(DEVICE))
    gr = grads(ref, ins, g.to(DEVICE))
    for name, a, b in zip('x x_proj dt_w dt_b A_logs Ds'.split(), gt, gr):
        assert rel_err(a, b) < tol_g, name


@pytest.mark.parametrize('B,Di,H,W,R,channels_last,dtype', [
    (1, 16, 3, 5, 2, False, torch.float32),
    (2, 16, 5, 4, 3, True, torch.float32),
    (1, 16, 4, 4, 2, True, torch.bfloat16),
    # L = 1, one channel
    (1, 1, 1, 1, 1, False, torch.float32),
    # over several chunks (8 steps under the interpreter): carries chained
    # across chunks in both pair orders, partial chunks, channels not a
    # multiple of the block
    (1, 20, 9, 7, 3, True, torch.float32),
    (2, 16, 4, 13, 2, False, torch.float32),
])
def test_ss2d_core_deterministic_pairs(B, Di, H, W, R, channels_last, dtype):
    """d_state 1 with deterministic algorithms asked for: the pair kernels,
    against the reference, and the same bits twice."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        ins = _ss2d_inputs(B, Di, H, W, 1, R, dtype, channels_last)
        g = torch.randn((B, Di, H, W),
                        generator=torch.Generator().manual_seed(1)).to(DEVICE)
        runs = []
        for _ in range(2):
            y = ss2d_core(*ins, backend='triton')
            runs.append([y] + list(grads(y, ins, g)))
    finally:
        torch.use_deterministic_algorithms(False)
    ref = ss2d_core_ref(*ins)
    tol_f, tol_g = TOL[dtype]
    assert rel_err(runs[0][0], ref) < tol_f
    names = 'x x_proj dt_w dt_b A_logs Ds'.split()
    for name, a, b in zip(names, runs[0][1:], grads(ref, ins, g)):
        assert rel_err(a, b) < tol_g, name
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def _pairs_match_reference(B, Di, H, W, R=2):
    """The pair kernels (deterministic mode) on float32 channels-last
    inputs: output and every gradient against the reference."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        ins = _ss2d_inputs(B, Di, H, W, 1, R, torch.float32, True)
        g = torch.randn((B, Di, H, W),
                        generator=torch.Generator().manual_seed(1)).to(DEVICE)
        y = ss2d_core(*ins, backend='triton')
        got = grads(y, ins, g)
    finally:
        torch.use_deterministic_algorithms(False)
    ref = ss2d_core_ref(*ins)
    assert rel_err(y, ref) < TOL[torch.float32][0]
    for name, a, b in zip('x x_proj dt_w dt_b A_logs Ds'.split(), got,
                          grads(ref, ins, g)):
        assert rel_err(a, b) < TOL[torch.float32][1], name


@pytest.mark.parametrize('chain', [(16, 32), (8, 16)])
def test_pair_chain_in_several_steps(monkeypatch, chain):
    """The chain kernel walking 40 chunk summaries (L = 320, chunks of 8
    under the interpreter) in steps of SB chunks over channel blocks of BD
    (``config.TUNE['chainBD'/'chainSB']``): several steps, the last one
    ragged, channel blocks with a tail (Di = 24); the forward's carries and
    the adjoint's against the reference."""
    import importlib
    config = importlib.import_module('mmvmamba.kernels.ss2d.config')
    monkeypatch.setitem(config.TUNE, 'chainBD', chain[0])
    monkeypatch.setitem(config.TUNE, 'chainSB', chain[1])
    _pairs_match_reference(1, 24, 16, 20)


def test_chain_blocks_rule(monkeypatch):
    """The chain's launch: VMamba-T's batch-128 shapes keep 64 channels and
    32 chunks per step; batch 2 at long sequences (Mask R-CNN stage 1)
    takes 16 channels and 128 chunks per step (16 programs of 525 steps
    before, 48 of 132 now), a step never above 2048 entries; TUNE wins."""
    from mmvmamba.kernels.ss2d import config
    assert config.chain_blocks(512, 96, 784, 132) == (64, 32)
    assert config.chain_blocks(512, 768, 13, 132) == (64, 32)
    assert config.chain_blocks(8, 96, 16800, 132) == (16, 128)
    assert config.chain_blocks(8, 192, 4200, 132) == (16, 128)
    assert config.chain_blocks(4, 96, 784, 132) == (16, 32)
    assert config.chain_blocks(4, 3, 1, 1) == (4, 32)
    for rows, Di, n in ((8, 96, 16800), (1, 1, 10**6), (512, 96, 784)):
        bd, sb = config.chain_blocks(rows, Di, n, 132)
        assert bd * sb <= config.CHAIN_TILE
    assert config.chain_blocks(1, 1, 1, 1) == (1, 32)
    monkeypatch.setitem(config.TUNE, 'chainSB', 64)
    assert config.chain_blocks(8, 96, 16800, 132) == (16, 64)


class _Spy:
    """Counts the launches of a Triton kernel (``kernel[grid](...)``)."""

    def __init__(self, kernel):
        self.kernel, self.calls = kernel, 0

    def __getitem__(self, grid):
        self.calls += 1
        return self.kernel[grid]


@pytest.mark.parametrize('B,deterministic,min_pixels,pairs',
                         [(2, False, 784, True), (3, False, 784, False),
                          (3, True, 784, True), (3, False, 12, True)])
def test_ss2d_core_d_state_1_dispatch(monkeypatch, B, deterministic,
                                      min_pixels, pairs):
    """d_state 1 runs the pair kernels up to PAIR_MAX_BATCH images, from
    PAIR_MIN_PIXELS pixels per image and in deterministic mode, the chunked
    kernels otherwise."""
    import importlib
    config = importlib.import_module('mmvmamba.kernels.ss2d.config')
    pair = importlib.import_module('mmvmamba.kernels.ss2d.pair')
    assert config.PAIR_MAX_BATCH == 2
    assert config.PAIR_MIN_PIXELS == 784
    monkeypatch.setattr(config, 'PAIR_MIN_PIXELS', min_pixels)
    from mmvmamba.kernels.common.launch import Launcher
    spy = _Spy(pair.kern.summary_kernel)
    monkeypatch.setattr(pair, '_SUMMARY', Launcher(spy))
    ins = _ss2d_inputs(B, 16, 3, 4, 1, 2, torch.float32, True)
    torch.use_deterministic_algorithms(deterministic)
    try:
        y = ss2d_core(*ins, backend='triton')
    finally:
        torch.use_deterministic_algorithms(False)
    assert spy.calls == (1 if pairs else 0)
    assert rel_err(y, ss2d_core_ref(*ins)) < TOL[torch.float32][0]


def test_pairs_inside_a_cuda_graph_capture():
    """Inside a CUDA-graph capture the host's cost of a call does not
    recur: d_state 1 takes the pair kernels (less GPU time) at any size;
    d_state > 1 has no pair kernels."""
    import importlib
    config = importlib.import_module('mmvmamba.kernels.ss2d.config')
    assert not config.use_pairs(1, 128, 49)
    assert config.use_pairs(1, 128, 49, capturing=True)
    assert not config.use_pairs(16, 1, 3136, capturing=True)


def test_ss2d_core_d_state_16_is_not_deterministic():
    ins = _ss2d_inputs(1, 16, 2, 3, 16, 1, torch.float32, True)
    torch.use_deterministic_algorithms(True)
    try:
        with pytest.raises(RuntimeError, match='d_state=16 has no determin'):
            ss2d_core(*ins, backend='triton')
    finally:
        torch.use_deterministic_algorithms(False)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with pytest.warns(UserWarning, match='d_state=16 has no determin'):
            ss2d_core(*ins, backend='triton')
    finally:
        torch.use_deterministic_algorithms(False)


def test_ss2d_core_rejects_bad_shapes():
    ins = _ss2d_inputs(1, 16, 2, 2, 1, 2, torch.float32, False)
    with pytest.raises(ValueError, match='dt_projs_weight'):
        ss2d_core(ins[0], ins[1], ins[2][:, :8], *ins[3:], backend='triton')
    with pytest.raises(ValueError, match='x must be'):
        ss2d_core(ins[0][0], *ins[1:], backend='triton')


def test_backend_choice():
    x = torch.randn(1, 2, 3, 3)
    assert resolve_backend(None, x) == 'torch'
    assert resolve_backend('torch', x) == 'torch'
    with pytest.raises(ValueError, match='unknown backend'):
        resolve_backend('cuda', x)
    with pytest.raises(ValueError, match='not divisible'):
        selective_scan(
            *_scan_inputs(1, 3, 2, 1, 4, torch.float32)[:3],
            torch.randn(1, 4, 1, 4),
            torch.randn(1, 4, 1, 4),
            backend='triton')


def test_public_ops_survive_submodule_import():
    # the op folders are not named after the package's public ops, so that
    # importing them can never rebind those names.
    import importlib

    import mmvmamba.kernels as kernels
    for name in ('cross.op', 'selective.op', 'ss2d.op', 'norm.op',
                 'scan.launch', 'ss2d.cpu'):
        importlib.import_module(f'mmvmamba.kernels.{name}')
    for op in ('cross_scan', 'cross_merge', 'selective_scan', 'ss2d_core',
               'layer_norm'):
        assert callable(getattr(kernels, op)), op
    x = torch.randn(1, 2, 2, 3)
    assert torch.equal(
        kernels.cross_scan(x, backend='torch'), cross_scan_ref(x))


class _PassThrough(torch.overrides.TorchFunctionMode):
    """A torch-function mode that changes nothing, but sends the ops down
    their custom-op path (as compilation and tensor subclasses do)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize('N,autocast', [(1, False), (4, False), (1, True),
                                        (4, True)])
def test_eager_training_call_matches_the_custom_op_path(N, autocast):
    """Eager training runs the x projection and the core as one autograd
    node (``_Core``); the custom ops' path (projection as aten ops, the
    core's registered autograd) gives the same output and gradients, under
    autocast too (x float32, the projection's GEMM in bfloat16)."""
    ins = _ss2d_inputs(2, 16, 3, 5, N, 2, torch.float32, True)
    g = torch.randn((2, 16, 3, 5),
                    generator=torch.Generator().manual_seed(1)).to(DEVICE)
    runs = []
    for mode in (None, _PassThrough()):
        with torch.autocast(DEVICE, torch.bfloat16, enabled=autocast):
            if mode is None:
                y = ss2d_core(*ins, backend='triton')
                assert type(y.grad_fn).__name__ == '_CoreBackward'
            else:
                with mode:
                    y = ss2d_core(*ins, backend='triton')
                assert type(y.grad_fn).__name__ != '_CoreBackward'
        runs.append([y] + list(grads(y, ins, g)))
    # the same math (bit-equal on a CPU); on a GPU the chunked kernels'
    # atomics and bf16 roundings of their sums may differ between two runs
    tol = 1e-3 if autocast else 1e-5
    names = 'y x x_proj dt_w dt_b A_logs Ds'.split()
    for name, a, b in zip(names, *runs):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert rel_err(a, b) < tol, name


@pytest.mark.parametrize('B,Di,H,W', [
    (1, 40, 3, 5),  # 15 rows: a partial chunk; 40 channels: a partial block
    (2, 32, 4, 3),  # whole chunks and blocks, two images
])
def test_pair_backward_lane_sums(monkeypatch, B, Di, H, W):
    """The backward's per-pixel dB and dC through the lane exchange's stores
    (config.lane_sums: 32 channels per program, one warp, T 4; the
    interpreter computes the exchange's lane values from separate sums, the
    GPU by inline PTX), against the reference."""
    import importlib
    config = importlib.import_module('mmvmamba.kernels.ss2d.config')
    tune = dict(T=4, BD=32, warps=1, BDB=32, warpsB=1, per_sm=1)
    monkeypatch.setattr(config, 'TUNE', tune)
    assert config.lane_sums(config.tile_config(Di, 2, H, W))
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        ins = _ss2d_inputs(B, Di, H, W, 1, 2, torch.float32, True)
        g = torch.randn((B, Di, H, W),
                        generator=torch.Generator().manual_seed(1)).to(DEVICE)
        y = ss2d_core(*ins, backend='triton')
        got = grads(y, ins, g)
    finally:
        torch.use_deterministic_algorithms(False)
    ref = ss2d_core_ref(*ins)
    assert rel_err(y, ref) < TOL[torch.float32][0]
    names = 'x x_proj dt_w dt_b A_logs Ds'.split()
    for name, a, b in zip(names, got, grads(ref, ins, g)):
        assert rel_err(a, b) < TOL[torch.float32][1], name


@pytest.mark.parametrize('B,Di,H,W,dtype', [
    (1, 40, 3, 5, torch.float32),  # a partial chunk and channel block
    (2, 16, 4, 13, torch.bfloat16),  # chunks chained, two images
])
def test_pair_kernels_write_every_buffer_they_allocate(B, Di, H, W, dtype):
    """In deterministic mode torch fills new tensors with NaN; the pair
    implementations turn that fill off (``unfilled``), which is only sound
    if the kernels write every element of their buffers before it is read.
    With the fill on (the unwrapped implementations) every output must be
    finite and bit-identical to the run without it."""
    import torch.utils.deterministic as det

    from mmvmamba.kernels.ss2d import pair
    from mmvmamba.kernels.ss2d.op import _operands
    x, *params = [
        t.detach() for t in _ss2d_inputs(B, Di, H, W, 1, 2, dtype, True)]
    _, _, x_dbl, dt_w, dt_b, a, Ds32 = _operands(x, *params, True, x.dtype)
    gy = torch.randn((B, Di, H, W), generator=torch.Generator().manual_seed(1))
    gy = gy.to(DEVICE).to(memory_format=torch.channels_last)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        assert det.fill_uninitialized_memory
        runs = []
        for fwd, bwd in [(pair._fwd1_impl, pair._bwd1_impl),
                         (pair._fwd1_impl.__wrapped__,
                          pair._bwd1_impl.__wrapped__)]:
            y, carry = fwd(x, x_dbl, dt_w, dt_b, a, Ds32)
            runs.append((y, carry) + bwd(x, x_dbl, dt_w, dt_b, a, Ds32, gy,
                                         carry))
            assert det.fill_uninitialized_memory  # restored
    finally:
        torch.use_deterministic_algorithms(False)
    for unfilled_out, filled_out in zip(*runs):
        assert torch.isfinite(filled_out).all()
        assert torch.equal(unfilled_out, filled_out)


def test_unfilled_restores_the_fill_flag():
    """``unfilled``: the fill is off inside in deterministic mode only, and
    back on afterwards, also when the call raises."""
    import torch.utils.deterministic as det

    from mmvmamba.kernels.common.util import unfilled
    seen = []

    @unfilled
    def probe(fail=False):
        seen.append(det.fill_uninitialized_memory)
        if fail:
            raise RuntimeError('boom')

    probe()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        probe()
        with pytest.raises(RuntimeError, match='boom'):
            probe(fail=True)
        assert det.fill_uninitialized_memory
    finally:
        torch.use_deterministic_algorithms(False)
    assert seen == [True, False, False]
    assert det.fill_uninitialized_memory


def test_pair_kernels_under_register_caps(monkeypatch):
    """``config.TUNE['regsB']`` reaches the backward's launches as
    Triton's ``maxnreg`` (``sweep_scan.py --regs-b``), and no other launch;
    the output and the gradients stay those of the reference."""
    import importlib
    config = importlib.import_module('mmvmamba.kernels.ss2d.config')
    pair = importlib.import_module('mmvmamba.kernels.ss2d.pair')
    monkeypatch.setitem(config.TUNE, 'regsB', 112)
    caps = {}

    def spying(name, launcher):
        launch = launcher.launch

        def spy(grid, args, kwargs):
            caps.setdefault(name, []).append(kwargs.get('maxnreg'))
            return launch(grid, args, kwargs)

        monkeypatch.setattr(launcher, 'launch', spy)

    for name, launcher in (('bwd', pair._BWD), ('summary', pair._SUMMARY),
                           ('fwd', pair._FWD), ('chain', pair._CHAIN)):
        spying(name, launcher)
    _pairs_match_reference(1, 16, 3, 5)
    assert caps['bwd'] == [112, 112]  # both pair launches
    assert len(caps['summary']) == 2  # the forward's and the adjoint's
    assert set(caps['summary']) == set(caps['fwd']) == set(caps['chain']) \
        == {None}
