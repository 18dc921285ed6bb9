"""The chunked reference scan equals the plain recurrence at every length."""
import pytest
import torch

from mmvmamba.kernels import linear_scan_ref


def _loop(a, b, h0=None):
    h = torch.zeros_like(b[..., 0]) if h0 is None else h0
    out = []
    for t in range(a.shape[-1]):
        h = a[..., t] * h + b[..., t]
        out.append(h)
    return torch.stack(out, -1)


@pytest.mark.parametrize('L', [1, 2, 63, 64, 65, 130, 64 * 64 + 3])
def test_matches_recurrence(L):
    g = torch.Generator().manual_seed(L)
    # decays close to 1 so that carries across chunks matter
    a = torch.rand(2, 3, L, generator=g, dtype=torch.float64)**0.01
    b = torch.randn(2, 3, L, generator=g, dtype=torch.float64)
    h0 = torch.randn(2, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(linear_scan_ref(a, b), _loop(a, b))
    torch.testing.assert_close(linear_scan_ref(a, b, h0), _loop(a, b, h0))


@pytest.mark.parametrize('L', [1, 70, 150])
def test_gradcheck(L):
    g = torch.Generator().manual_seed(L)
    a = torch.rand(2, 2, L, generator=g, dtype=torch.float64)
    b = torch.randn(2, 2, L, generator=g, dtype=torch.float64)
    h0 = torch.randn(2, 2, generator=g, dtype=torch.float64)
    for t in (a, b, h0):
        t.requires_grad_(True)
    assert torch.autograd.gradcheck(linear_scan_ref, (a, b, h0))


def test_broadcast_decay():
    a = torch.rand(1, 3, 100, dtype=torch.float64)
    b = torch.randn(4, 3, 100, dtype=torch.float64)
    torch.testing.assert_close(
        linear_scan_ref(a, b), _loop(a.expand_as(b), b))
