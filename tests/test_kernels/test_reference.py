"""The PyTorch reference ops: golden fixture and float64 gradchecks."""
import pytest
import torch

from mmvmamba.kernels import (cross_merge_ref, cross_scan_ref,
                              selective_scan_ref, ss2d_core_ref)
from ._helpers import load_fixture, rel_err

NAMES = ('u', 'delta', 'A', 'B', 'C', 'D', 'delta_bias')


def test_selective_scan_ref_matches_official_fixture():
    fx = load_fixture('selective_scan_ref_small')
    inp = {
        k: v.clone().requires_grad_() if torch.is_tensor(v) else v
        for k, v in fx['inputs'].items()
    }
    out = selective_scan_ref(**inp)
    assert rel_err(out, fx['out']) < 1e-5
    gs = torch.autograd.grad(out, [inp[n] for n in NAMES], fx['grad_out'])
    for name, g in zip(NAMES, gs):
        assert rel_err(g, fx['grads'][name]) < 1e-5, name


def test_cross_scan_directions_worked_example():
    x = torch.arange(6.).view(1, 1, 2, 3)
    ys = cross_scan_ref(x)[0, :, 0]
    expect = [[0, 1, 2, 3, 4, 5], [0, 3, 1, 4, 2, 5], [5, 4, 3, 2, 1, 0],
              [5, 2, 4, 1, 3, 0]]
    assert ys.tolist() == expect


def test_cross_merge_is_adjoint_of_cross_scan():
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    y = torch.randn(2, 4, 3, 5, 4, dtype=torch.float64)
    lhs = (cross_scan_ref(x) * y.flatten(3)).sum()
    rhs = (x.flatten(2) * cross_merge_ref(y)).sum()
    assert torch.allclose(lhs, rhs)
    assert torch.autograd.gradcheck(cross_scan_ref, (x.requires_grad_(), ))
    assert torch.autograd.gradcheck(cross_merge_ref, (y.requires_grad_(), ))


@pytest.mark.parametrize('N', [1, 3])
def test_selective_scan_ref_gradcheck(N):
    torch.manual_seed(0)
    f64 = dict(dtype=torch.float64)
    batch, G, D, L = 2, 2, 2, 7
    ins = (torch.randn(batch, G * D, L,
                       **f64), 0.5 * torch.randn(batch, G * D, L, **f64),
           -torch.rand(G * D, N, **f64) - 0.5,
           torch.randn(batch, G, N, L,
                       **f64), torch.randn(batch, G, N, L, **f64),
           torch.randn(G * D, **f64), torch.randn(G * D, **f64))
    ins = [t.requires_grad_() for t in ins]

    def fn(*args):
        return selective_scan_ref(
            *args, delta_softplus=True, out_dtype=torch.float64)

    assert torch.autograd.gradcheck(fn, ins)


def test_ss2d_core_ref_gradcheck():
    torch.manual_seed(0)
    f64 = dict(dtype=torch.float64)
    Di, R, N = 3, 2, 2
    ins = (torch.randn(1, Di, 3, 2,
                       **f64), 0.5 * torch.randn(4, R + 2 * N, Di, **f64),
           0.5 * torch.randn(4, Di, R, **f64), torch.randn(4, Di, **f64),
           torch.randn(4 * Di, N, **f64).clamp(-1,
                                               1), torch.randn(4 * Di, **f64))
    ins = [t.requires_grad_() for t in ins]

    assert torch.autograd.gradcheck(ss2d_core_ref, ins)


def test_ss2d_core_ref_rejects_bad_projection():
    x = torch.randn(1, 4, 2, 2)
    with pytest.raises(ValueError, match='dt_rank'):
        ss2d_core_ref(x, torch.randn(4, 5, 4), torch.randn(4, 4, 2),
                      torch.randn(4, 4), torch.randn(16, 2), torch.randn(16))
