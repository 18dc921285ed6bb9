"""The Triton LayerNorm (with its fused output cast) against F.layer_norm.

On a CPU under ``TRITON_INTERPRET=1`` (this folder's conftest), on a GPU
compiled. Forward values must equal ``F.layer_norm(...).to(out_dtype)`` to
the rounding of ``out_dtype``; the three gradients those of PyTorch.
"""
import pytest
import torch
import torch.nn.functional as F

from mmvmamba.kernels import layer_norm
from mmvmamba.kernels.norm import op as LN
from mmvmamba.models.vmamba import LayerNorm2d
from ._helpers import DEVICE, grads, rel_err

# (forward, gradient) tolerance by the coarser of input/output dtype
TOL = {torch.float32: (1e-5, 1e-5), torch.bfloat16: (1e-2, 1e-2)}


@pytest.mark.parametrize(
    'shape,dtype,out_dtype',
    [
        ((3, 5, 96), torch.float32, torch.float32),
        ((2, 7, 7, 768), torch.float32, torch.bfloat16),  # C = BLOCK_C
        ((130, 20), torch.bfloat16, torch.float32),  # rows over programs
        ((1, 3, 3, 33), torch.bfloat16, torch.bfloat16),  # odd C
    ])
def test_layer_norm_matches_torch(shape, dtype, out_dtype):
    torch.manual_seed(0)
    C = shape[-1]
    x = (torch.randn(shape) * 3 + 1).to(dtype).to(DEVICE).requires_grad_()
    w = (torch.randn(C) * 0.5 + 1).to(DEVICE).requires_grad_()
    b = torch.randn(C).to(DEVICE).requires_grad_()
    y = layer_norm(x, w, b, 1e-6, out_dtype, backend='triton')
    ref = F.layer_norm(x.float(), (C, ), w, b, 1e-6)
    assert y.dtype == out_dtype and y.shape == x.shape
    coarse = torch.float32 if dtype == out_dtype == torch.float32 else \
        torch.bfloat16
    tol_f, tol_g = TOL[coarse]
    assert rel_err(y.float(), ref.to(out_dtype).float()) < tol_f
    g = torch.randn(shape).to(DEVICE).to(out_dtype)
    gt = grads(y, [x, w, b], g)
    gr = grads(ref, [x, w, b], g.float())
    assert gt[0].dtype == dtype
    for name, a, r in zip(('x', 'weight', 'bias'), gt, gr):
        assert rel_err(a.float(), r) < tol_g, name


@pytest.mark.parametrize('dy_layout', ['channels_last', 'contiguous'])
def test_layer_norm_over_channels_of_a_channels_last_map(dy_layout):
    # dim=1 of a (B, C, H, W) channels_last map: the kernel reads the
    # memory as rows of C (no permute), the output keeps x's strides, and a
    # gradient in another layout is read in x's memory order
    torch.manual_seed(0)
    x = (torch.randn(2, 24, 5, 3) * 2 + 1).to(DEVICE).to(
        memory_format=torch.channels_last).requires_grad_()
    w = (torch.randn(24) * 0.5 + 1).to(DEVICE).requires_grad_()
    b = torch.randn(24).to(DEVICE).requires_grad_()
    for out_dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 1e-2)):
        y = layer_norm(x, w, b, 1e-6, out_dtype, backend='triton', dim=1)
        ref = F.layer_norm(x.permute(0, 2, 3, 1), (24, ), w, b,
                           1e-6).permute(0, 3, 1, 2)
        assert y.shape == x.shape and y.dtype == out_dtype
        assert y.stride() == x.stride()
        assert rel_err(y.float(), ref) < tol
        g = torch.randn(x.shape).to(DEVICE)
        if dy_layout == 'channels_last':
            g = g.contiguous(memory_format=torch.channels_last)
        gt = grads(y, [x, w, b], g.to(out_dtype))
        gr = grads(ref, [x, w, b], g)
        for name, a, r in zip(('x', 'weight', 'bias'), gt, gr):
            assert rel_err(a.float(), r) < tol, name
    # the reference backend computes the same function
    torch.testing.assert_close(
        layer_norm(x, w, b, 1e-6, backend='torch', dim=1),
        layer_norm(x, w, b, 1e-6, backend='triton', dim=1), rtol=1e-5,
        atol=1e-5)


def test_layer_norm_rejects_bad_dim_and_layout():
    x = torch.randn(2, 8, 3, 3).to(DEVICE)
    w, b = torch.ones(8).to(DEVICE), torch.zeros(8).to(DEVICE)
    with pytest.raises(ValueError, match='dim=2'):
        layer_norm(x, w, b, 1e-5, dim=2)
    with pytest.raises(ValueError, match='4-D channels_last input'):
        LN.layer_norm_triton(x, w, b, 1e-5, torch.float32, dim=1)
    # the public op takes an NCHW map through the reference instead
    out = layer_norm(x, w, b, 1e-5, backend='triton', dim=1)
    ref = F.layer_norm(x.permute(0, 2, 3, 1), (8, ), w, b,
                       1e-5).permute(0, 3, 1, 2)
    torch.testing.assert_close(out, ref)


def test_calls_without_a_gradient_take_the_forward_alone(monkeypatch):
    # no_grad / frozen inputs: one allocation and one launch, no statistics
    # and no autograd node, the values of the training forward
    calls = []
    infer = LN._ln_infer
    monkeypatch.setattr(LN, '_ln_infer',
                        lambda *a: calls.append(1) or infer(*a))
    torch.manual_seed(0)
    x = torch.randn(2, 16, 3, 5).to(DEVICE).to(
        memory_format=torch.channels_last)
    w, b = torch.randn(16).to(DEVICE), torch.randn(16).to(DEVICE)
    ref = F.layer_norm(x.permute(0, 2, 3, 1), (16, ), w, b,
                       1e-5).permute(0, 3, 1, 2)
    out = layer_norm(x, w, b, 1e-5, torch.bfloat16, backend='triton', dim=1)
    assert calls == [1] and out.grad_fn is None
    assert out.dtype == torch.bfloat16 and out.stride() == x.stride()
    wg = w.clone().requires_grad_()
    trained = layer_norm(x, wg, b, 1e-5, torch.bfloat16, backend='triton',
                         dim=1)
    assert calls == [1] and trained.grad_fn is not None
    assert torch.equal(out, trained.detach())
    assert rel_err(out.float(), ref) < 1e-2
    with torch.no_grad():
        layer_norm(x, wg, b, 1e-5, backend='triton', dim=1)
    assert calls == [1, 1]


def test_layer_norm_rejects_bad_weight():
    x = torch.randn(2, 8).to(DEVICE)
    with pytest.raises(ValueError, match=r'weight and bias must be \(8,\)'):
        layer_norm(
            x, torch.ones(4).to(DEVICE), torch.zeros(8).to(DEVICE), 1e-5,
            backend='triton')


def test_layer_norm2d_cast_out_only_under_autocast():
    # the model's pre-norms return the autocast dtype; without autocast
    # they keep F.layer_norm's dtype
    norm = LayerNorm2d(16).to(DEVICE)
    norm.cast_out = True
    x = torch.randn(2, 16, 3, 5).to(DEVICE).to(
        memory_format=torch.channels_last)
    ref = F.layer_norm(x.permute(0, 2, 3, 1), (16, ), norm.weight,
                       norm.bias, norm.eps).permute(0, 3, 1, 2)
    out = norm(x)
    assert out.dtype == torch.float32
    assert rel_err(out, ref) < 1e-5
    dev = 'cuda' if DEVICE == 'cuda' else 'cpu'
    with torch.autocast(dev, dtype=torch.bfloat16):
        out = norm(x)
        norm.cast_out = False
        out32 = norm(x)
    assert out.dtype == torch.bfloat16 and out32.dtype == torch.float32
    assert rel_err(out.float(), ref) < 1e-2


@pytest.mark.parametrize('out_dtype,kept',
                         [(torch.float32, torch.float32),
                          (torch.bfloat16, torch.bfloat16)])
def test_what_the_backward_keeps(out_dtype, kept):
    """A 16-bit output keeps the 16-bit normalised input instead of the
    float32 input: half the activation bytes, gradients within bf16
    rounding. A float32 output keeps the input."""
    torch.manual_seed(0)
    x = (torch.randn(4, 6, 64) * 2 + 3).to(DEVICE).requires_grad_()
    w = (torch.randn(64) * 0.5 + 1).to(DEVICE).requires_grad_()
    b = torch.randn(64).to(DEVICE).requires_grad_()
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = layer_norm(x, w, b, 1e-6, out_dtype, backend='triton')
    big = [t for t in saved if t.shape == x.shape]
    assert [t.dtype for t in big] == [kept]
    ref = F.layer_norm(x.float(), (64, ), w, b, 1e-6)
    g = torch.randn(x.shape).to(DEVICE)
    gt = grads(y, [x, w, b], g.to(out_dtype))
    for a, r in zip(gt, grads(ref, [x, w, b], g)):
        assert rel_err(a, r) < 1e-2
    # without gradients nothing extra is written
    with torch.no_grad():
        out = LN._ln_fwd(x, w, b, 1e-6, torch.bfloat16, False)
    assert out[2].numel() == 0


def test_model_weights_take_the_eager_path():
    """A model's weights are nn.Parameters: the call still runs the op's
    implementation under a plain autograd.Function (kernels/common/eager.py), not
    the custom-op dispatcher, and gives the same values and gradients."""
    norm = torch.nn.LayerNorm(24).to(DEVICE)
    x = torch.randn(5, 24).to(DEVICE).requires_grad_()
    y = layer_norm(x, norm.weight, norm.bias, 1e-5, backend='triton')
    assert type(y.grad_fn).__name__ == 'EagerOpBackward'
    g = torch.randn(5, 24).to(DEVICE)
    gt = grads(y, [x, norm.weight, norm.bias], g)
    ref = F.layer_norm(x, (24, ), norm.weight, norm.bias, 1e-5)
    assert rel_err(y, ref) < 1e-5
    for a, r in zip(gt, grads(ref, [x, norm.weight, norm.bias], g)):
        assert rel_err(a, r) < 1e-5


@pytest.mark.parametrize('dtype,out_dtype', [(torch.float32, torch.float32),
                                             (torch.float32, torch.bfloat16)])
def test_backward_over_many_programs_is_deterministic(dtype, out_dtype):
    """Rows spread over several backward programs, the last one partial:
    dx and the weight/bias sums of the per-program partials match PyTorch,
    and a second backward is bit-identical (no atomics)."""
    torch.manual_seed(0)
    x = (torch.randn(5, 130, 20) * 2 + 1).to(dtype).to(DEVICE)
    x.requires_grad_()
    w = (torch.randn(20) * 0.5 + 1).to(DEVICE).requires_grad_()
    b = torch.randn(20).to(DEVICE).requires_grad_()
    y = layer_norm(x, w, b, 1e-6, out_dtype, backend='triton')
    g = torch.randn(x.shape).to(DEVICE).to(out_dtype)
    first = grads(y, [x, w, b], g)
    y = layer_norm(x, w, b, 1e-6, out_dtype, backend='triton')
    second = grads(y, [x, w, b], g)
    assert all(torch.equal(a, c) for a, c in zip(first, second))
    ref = F.layer_norm(x.float(), (20, ), w, b, 1e-6)
    tol = 1e-5 if out_dtype == torch.float32 else 1e-2
    for name, a, r in zip(('x', 'weight', 'bias'), first,
                          grads(ref, [x, w, b], g.float())):
        assert rel_err(a.float(), r) < tol, name


@pytest.mark.parametrize('xhat', [False, True])
def test_backward_op_registration(xhat):
    """The backward is a custom op (compile, fake tensors): its schema,
    fake implementation and eager implementation agree."""
    torch.manual_seed(0)
    x = torch.randn(3, 40, 24).to(DEVICE)
    w, b = torch.randn(24).to(DEVICE), torch.randn(24).to(DEVICE)
    _, stats, xh = LN._ln_fwd(x, w, b, 1e-5, torch.bfloat16, xhat)
    assert stats.shape == (2, 3 * 40)
    kept = xh if xhat else x
    dy = torch.randn(x.shape).to(DEVICE).to(torch.bfloat16)
    torch.library.opcheck(
        LN._ln_bwd, (kept, dy, w, stats, xhat, torch.float32),
        test_utils=('test_schema', 'test_faketensor'))


@pytest.mark.parametrize('shape,dtype,out_dtype', [
    ((3, 5, 96), torch.float32, torch.bfloat16),
    ((130, 20), torch.bfloat16, torch.float32),
])
def test_layer_norm_writes_every_buffer_it_allocates(shape, dtype, out_dtype):
    """The LayerNorm implementations turn torch's deterministic NaN fill of
    new tensors off (``unfilled``); with it on (the unwrapped functions)
    the outputs must be finite and bit-identical."""
    torch.manual_seed(0)
    C = shape[-1]
    x = torch.randn(shape, device=DEVICE).to(dtype)
    w = torch.randn(C, device=DEVICE)
    b = torch.randn(C, device=DEVICE)
    dy = torch.randn(shape, device=DEVICE).to(out_dtype)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        runs = []
        for fwd, infer, bwd in [
            (LN._ln_fwd_impl, LN._ln_infer, LN._ln_bwd_impl),
            (LN._ln_fwd_impl.__wrapped__, LN._ln_infer.__wrapped__,
             LN._ln_bwd_impl.__wrapped__)
        ]:
            y, stats, xhat = fwd(x, w, b, 1e-6, out_dtype, True)
            runs.append((y, stats, xhat, infer(x, w, b, 1e-6, out_dtype)) +
                        bwd(xhat, dy, w, stats, True, dtype))
    finally:
        torch.use_deterministic_algorithms(False)
    for unfilled_out, filled_out in zip(*runs):
        assert torch.isfinite(filled_out).all()
        assert torch.equal(unfilled_out, filled_out)
