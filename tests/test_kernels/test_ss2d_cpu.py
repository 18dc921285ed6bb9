"""The compiled CPU SS2D core against the float64 PyTorch reference."""
import pytest
import torch

import mmvmamba.kernels as K
from mmvmamba.kernels import ss2d_core_ref
from mmvmamba.kernels.ss2d.cpu import has_avx512, ss2d_core_cpu
from ._helpers import rel_err

NAMES = ('x', 'x_proj_weight', 'dt_projs_weight', 'dt_projs_bias', 'A_logs',
         'Ds')


def make(B, Di, H, W, N, R, bias_scale=0.5, seed=0):
    """float64 core inputs; dt + bias spreads over softplus' range."""
    g = torch.Generator().manual_seed(seed)
    f64 = dict(dtype=torch.float64, generator=g)
    return [
        torch.randn(B, Di, H, W, **f64),
        torch.randn(4, R + 2 * N, Di, **f64) * Di**-0.5,
        torch.randn(4, Di, R, **f64) * R**-0.5,
        torch.randn(4, Di, **f64) * bias_scale - 3,
        torch.randn(4 * Di, N, **f64) * 0.5,
        torch.randn(4 * Di, **f64),
    ]


# (B, Di, H, W, d_state N, dt_rank R): odd sizes, d_state 16 (vanilla),
# L = 1, a single row / column, several channel blocks of 64
SHAPES = [(2, 5, 3, 7, 1, 2), (1, 70, 4, 5, 16, 3), (2, 8, 1, 1, 1, 1),
          (1, 3, 1, 9, 1, 1), (2, 6, 5, 1, 2, 1), (1, 130, 9, 6, 1, 4)]


def check(shape, dtype, tol, bias_scale=0.5):
    ins = [t.requires_grad_() for t in make(*shape, bias_scale=bias_scale)]
    ref = ss2d_core_ref(*ins)
    gout = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, ins, gout)
    xs = [t.detach().to(dtype).requires_grad_() for t in ins]
    out = ss2d_core_cpu(*xs)
    assert out.shape == ref.shape and out.dtype == dtype
    assert rel_err(out, ref) < tol
    got = torch.autograd.grad(out, xs, gout.to(dtype))
    for name, a, b in zip(NAMES, got, ref_grads):
        assert a.dtype == dtype and a.shape == b.shape, name
        assert rel_err(a, b) < tol, name


@pytest.mark.parametrize('shape', SHAPES)
def test_float64_matches_reference(shape):
    check(shape, torch.float64, 1e-12)


@pytest.mark.parametrize('shape', SHAPES)
def test_float32_matches_float64_reference(shape):
    check(shape, torch.float32, 3e-6)


@pytest.mark.parametrize('threads', [2, 4])
def test_directions_split_over_threads(threads):
    # fewer (batch, channel group) tasks than twice the threads: the four
    # directions split into 2 or 4 parts, each summed into its own output
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for shape in (SHAPES[0], SHAPES[1], SHAPES[2]):
            check(shape, torch.float64, 1e-12)
        check(SHAPES[1], torch.float32, 3e-6)
    finally:
        torch.set_num_threads(before)


def test_softplus_range_and_long_sequence():
    # dt + bias from about -30 to 30 (both softplus branches, threshold 20)
    # and a 32 x 40 map: 1280 sequential steps per direction
    check((1, 9, 32, 40, 1, 2), torch.float32, 3e-6, bias_scale=12.)


@pytest.mark.skipif(not has_avx512(),
                    reason='the default build already is the 32-byte code')
def test_32_byte_vector_build_on_avx512_machine(monkeypatch):
    # the kernel takes 64-byte vectors where the compiler targets AVX-512;
    # the 32-byte code (AVX2 machines) is checked here with AVX-512 off
    import mmvmamba.kernels.ss2d.cpu as mod
    monkeypatch.setattr(mod, '_ext', mod.build('_no512', ['-mno-avx512f']))
    for shape in (SHAPES[1], SHAPES[5]):
        check(shape, torch.float32, 3e-6)
    check((1, 9, 32, 40, 1, 2), torch.float32, 3e-6, bias_scale=12.)


def test_dispatch_runs_cpu_kernel_for_cpu_tensors(monkeypatch):
    ins = [t.float() for t in make(1, 4, 3, 5, 1, 1)]
    calls = []
    import mmvmamba.kernels.ss2d.cpu as mod
    real = mod.ss2d_core_cpu
    monkeypatch.setattr(mod, 'ss2d_core_cpu',
                        lambda *a: calls.append(1) or real(*a))
    for backend in (None, 'torch'):
        y = K.ss2d_core(*ins, backend=backend)
        assert rel_err(y, ss2d_core_ref(*ins)) < 1e-6
    assert len(calls) == 2
    # other dtypes: the reference
    y16 = K.ss2d_core(ins[0].bfloat16(), *ins[1:])
    assert len(calls) == 2 and y16.dtype == torch.float32


def test_strided_inputs():
    ins = make(2, 7, 4, 6, 1, 2)
    x_cl = ins[0].contiguous(memory_format=torch.channels_last)
    x_t = ins[0].transpose(2, 3).contiguous().transpose(2, 3)
    ref = ss2d_core_ref(*ins)
    for x in (x_cl, x_t):
        assert rel_err(ss2d_core_cpu(x, *ins[1:]), ref) < 1e-12


def test_mismatched_shapes_raise():
    ins = make(1, 4, 3, 3, 1, 2)
    with pytest.raises(ValueError, match='dt_rank'):
        ss2d_core_cpu(ins[0], ins[1][:, :-1], *ins[2:])
    with pytest.raises(ValueError, match='do not match'):
        ss2d_core_cpu(ins[0][:, :3], *ins[1:])


def test_failed_build_warns_and_runs_reference(monkeypatch):
    import torch.utils.cpp_extension as cpp
    import mmvmamba.kernels.ss2d.cpu as mod
    for name, value in (('_ext', None), ('_error', None), ('_warned', False)):
        monkeypatch.setattr(mod, name, value)

    def no_compiler(*args, **kwargs):
        raise RuntimeError('g++: command not found')

    monkeypatch.setattr(cpp, 'load', no_compiler)
    ins = [t.float() for t in make(1, 4, 3, 5, 1, 1)]
    with pytest.warns(UserWarning, match='not found.*PyTorch reference'):
        y = K.ss2d_core(*ins)
    assert torch.equal(y, ss2d_core_ref(*ins))
    with pytest.raises(RuntimeError, match='needs g\\+\\+, ninja'):
        ss2d_core_cpu(*ins)
