"""VMamba backbone: parameter counts, parity with the official model, knobs."""
import math

import pytest
import torch
import torch.nn as nn
from mmengine.registry import MODELS as ROOT_MODELS

from mmvmamba.checkpoint import official_to_backbone
from mmvmamba.kernels import selective_scan
from mmvmamba.models import ARCH_SETTINGS, FORWARD_TYPES, VMamba
from mmvmamba.registry import MODELS

# spec §1.1: (classifier params, Backbone_VSSM params with out_indices 0-3,
# classifier state-dict keys) of the official models, 1000 classes
OFFICIAL = {
    'vanilla_tiny': (22_893_448, 22_125_792, 212),
    'vanilla_small': (44_417_416, 43_649_760, 446),
    'vanilla_base': (76_254_056, 75_230_848, 446),
    'tiny_s2l5': (30_705_832, 29_938_176, 222),
    'small': (50_147_752, 49_380_096, 402),
    'base': (88_557_800, 87_534_592, 402),
    'tiny': (30_249_064, 29_481_408, 276),
    'small_s1l20': (49_012_840, 48_245_184, 492),
    'base_s1l20': (86_614_504, 85_591_296, 492),
}

TINY = dict(dims=16, depths=(1, 1, 1, 1), backend='torch')


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize('arch', sorted(OFFICIAL))
def test_parameter_counts_equal_official(arch):
    cls_params, backbone_params, num_keys = OFFICIAL[arch]
    with torch.device('meta'):  # no allocation, no init cost
        backbone = VMamba(arch=arch)
        # the classifier = outnorm3 (classifier.norm) + GAP + Linear head
        trunk = VMamba(arch=arch, out_indices=(3, ))
        head = nn.Linear(trunk.dims[-1], 1000)
    assert count(backbone) == backbone_params
    assert count(trunk) + count(head) == cls_params
    assert len(trunk.state_dict()) + 2 == num_keys


def test_presets_cover_released_models():
    assert set(ARCH_SETTINGS) == set(OFFICIAL)
    with torch.device('meta'):
        m = VMamba(arch='base_s2l15')  # alias of 'base'
    assert m.depths == [2, 2, 15, 2] and m.dims == [128, 256, 512, 1024]


@pytest.mark.parametrize('name', [
    'vmamba_v05noz_ln2d_small', 'vmamba_v05noz_ln_dstate4_small',
    'vmamba_v0_vanilla_small'
])
def test_backbone_parity_with_official(golden, name):
    fx = golden.load(name)
    model = VMamba(**golden.kwargs(fx)).eval()
    sd = official_to_backbone(fx['state_dict'])
    sd.update(fx['backbone_outnorm_state_dict'])
    model.load_state_dict(sd, strict=True)
    with torch.no_grad():
        outs = model(fx['input'])
    assert len(outs) == len(fx['backbone_outs']) == 4
    for out, ref in zip(outs, fx['backbone_outs']):
        assert out.shape == ref.shape
        assert golden.rel(out, ref) <= 1e-5


@pytest.mark.parametrize('name', [
    'vmamba_v05noz_ln2d_small', 'vmamba_v05noz_ln_dstate4_small',
    'vmamba_v0_vanilla_small'
])
def test_classifier_logits_parity_with_official(golden, name):
    """Official classifier = outnorm3 → global average pool → linear."""
    fx = golden.load(name)
    model = VMamba(**golden.kwargs(fx, out_indices=(3, ))).eval()
    model.load_state_dict(official_to_backbone(fx['state_dict']), strict=True)
    with torch.no_grad():
        feat = model(fx['input'])[-1].mean((2, 3))
        logits = nn.functional.linear(
            feat, fx['state_dict']['classifier.head.weight'],
            fx['state_dict']['classifier.head.bias'])
    assert golden.rel(logits, fx['logits']) <= 1e-5


def test_layouts_compute_the_same_function(golden):
    """One state dict, channel-first (ln2d) and channel-last (ln) models."""
    fx = golden.load('vmamba_v05noz_ln2d_small')
    outs = []
    for norm in ('ln2d', 'ln'):
        model = VMamba(**golden.kwargs(fx, norm_layer=norm)).eval()
        sd = official_to_backbone(fx['state_dict'])
        sd.update(fx['backbone_outnorm_state_dict'])
        model.load_state_dict(sd)
        with torch.no_grad():
            outs.append(model(fx['input']))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_selective_scan_op_parity_with_official(golden):
    fx = golden.load('selective_scan_ref_small')
    inputs = {
        k: (v.clone().requires_grad_(True) if torch.is_tensor(v) else v)
        for k, v in fx['inputs'].items()
    }
    out = selective_scan(**inputs, backend='torch')
    assert out.dtype == torch.float32
    assert golden.rel(out, fx['out']) <= 1e-5
    out.backward(fx['grad_out'])
    assert set(fx['grads']) == {'u', 'delta', 'A', 'B', 'C', 'D', 'delta_bias'}
    for name, ref in fx['grads'].items():
        assert golden.rel(inputs[name].grad, ref) <= 1e-5, name


@pytest.mark.parametrize(
    'kwargs',
    [
        dict(),  # v2 stem / downsample v3, channel-first
        dict(
            forward_type='v0',
            ssm_d_state=4,
            mlp_ratio=0.0,
            downsample_version='v1',
            patchembed_version='v1',
            norm_layer='ln'),
        dict(downsample_version='v2', norm_layer='ln'),
    ])
@pytest.mark.parametrize('size', [(33, 47), (64, 40)])
def test_output_shapes_odd_and_non_square(kwargs, size):
    model = VMamba(**TINY, **kwargs).eval()
    H, W = size
    with torch.no_grad():
        outs = model(torch.randn(1, 3, H, W))
    assert len(outs) == 4
    if kwargs.get('patchembed_version') == 'v1':
        h, w = H // 4, W // 4
    else:
        h, w = math.ceil(H / 4), math.ceil(W / 4)
    for i, out in enumerate(outs):
        assert out.shape == (1, 16 * 2**i, h, w)
        assert out.is_contiguous()
        if kwargs.get('downsample_version') == 'v2':
            h, w = h // 2, w // 2  # 2x2 stride-2 conv floors
        else:
            h, w = math.ceil(h / 2), math.ceil(w / 2)


def test_patch_merging_odd_sizes_agree_across_layouts():
    """Downsample v1 pads odd sizes correctly in both layouts (the official
    channel-first path pads the wrong dims)."""
    kw = dict(
        TINY,
        forward_type='v0',
        ssm_d_state=2,
        mlp_ratio=0.0,
        downsample_version='v1',
        patchembed_version='v1')
    torch.manual_seed(0)
    last = VMamba(**kw, norm_layer='ln').eval()
    first = VMamba(**kw, norm_layer='ln2d').eval()
    first.load_state_dict(last.state_dict())
    x = torch.randn(1, 3, 36, 44)  # 9x11 after the stem: odd everywhere
    with torch.no_grad():
        for a, b in zip(last(x), first(x)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_out_indices_and_outnorms():
    model = VMamba(**TINY, out_indices=(1, 3))
    assert hasattr(model, 'outnorm1') and hasattr(model, 'outnorm3')
    assert not hasattr(model, 'outnorm0')
    outs = model(torch.randn(1, 3, 32, 32))
    assert [o.shape[1] for o in outs] == [32, 128]
    assert isinstance(outs, tuple)


def test_frozen_stages_and_norm_eval():
    model = VMamba(**TINY, frozen_stages=2, norm_eval=True, norm_layer='bn')
    model.train()
    frozen = [
        model.patch_embed, model.layers[0], model.layers[1], model.outnorm0,
        model.outnorm1
    ]
    for m in frozen:
        assert not m.training
        assert all(not p.requires_grad for p in m.parameters())
    for m in (model.layers[2], model.layers[3], model.outnorm2):
        assert all(p.requires_grad for p in m.parameters())
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)
    assert model.layers[2].blocks[0].op.training
    # gradients flow only into the trainable stages
    sum(o.sum() for o in model(torch.randn(1, 3, 32, 32))).backward()
    assert model.patch_embed[0].weight.grad is None
    assert model.layers[2].blocks[0].op.A_logs.grad is not None


def test_with_cp_gives_the_same_gradients():
    torch.manual_seed(0)
    kw = dict(TINY, depths=(1, 2, 1, 1), drop_path_rate=0.0)
    ref = VMamba(**kw)
    cp_model = VMamba(**kw, with_cp=True)
    cp_model.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 32, 40)
    grads = []
    for model in (ref, cp_model):
        model.train()
        sum((o**2).mean() for o in model(x)).backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(
            grads[0][name], grads[1][name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize('post_norm', [False, True])
def test_drop_path_residual_matches_timm_drop_path(post_norm):
    """The block's fused residual (mask and 1/keep inside one addcmul) is
    timm's ``x + DropPath(branch)``: the same draw, outputs and gradients."""
    from mmvmamba.models.vmamba import VSSBlock
    torch.manual_seed(0)
    block = VSSBlock(16, drop_path=0.5, ssm_d_state=1, ssm_ratio=1.0,
                     forward_type='v05_noz', post_norm=post_norm,
                     backend='torch').train()
    x = torch.randn(8, 8, 8, 16, requires_grad=True)

    def timm_forward(x):
        dp = block.drop_path
        if post_norm:
            x = x + dp(block.norm(block.op(x)))
            return x + dp(block.norm2(block.mlp(x)))
        x = x + dp(block.op(block.norm(x)))
        return x + dp(block.mlp(block.norm2(x)))

    outs, grads = [], []
    for fn in (block, timm_forward):
        torch.manual_seed(1)
        out = fn(x)
        out.square().sum().backward()
        outs.append(out)
        grads.append([x.grad] + [p.grad for p in block.parameters()])
        x.grad = None
        block.zero_grad(set_to_none=True)
    dropped = (outs[0] == x).flatten(1).all(1)
    assert 0 < dropped.sum() < 8  # some samples kept, some dropped
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)
    for a, b in zip(grads[0], grads[1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_forward_type_aliases_compute_the_same_function():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    for family in (('v05_noz', 'v2_noz', 'v3_noz_no32', 'v04_noz'),
                   ('v0', 'v0seq', 'v05', 'v2', 'v03_no32')):
        ref = VMamba(**TINY, forward_type=family[0]).eval()
        for ft in family[1:]:
            other = VMamba(**TINY, forward_type=ft).eval()
            other.load_state_dict(ref.state_dict(), strict=True)
            with torch.no_grad():
                for a, b in zip(ref(x), other(x)):
                    torch.testing.assert_close(a, b)
    assert all(FORWARD_TYPES[f] for f in ('v0', 'v05', 'v2'))
    assert not any(FORWARD_TYPES[f] for f in ('v05_noz', 'v2_noz'))


def test_ssm_hyper_parameters_shape_the_parameters():
    model = VMamba(
        **TINY, ssm_d_state=3, ssm_ratio=1.5, ssm_dt_rank=5, ssm_conv=1)
    op = model.layers[0].blocks[0].op
    Di = 24
    assert op.x_proj_weight.shape == (4, 5 + 2 * 3, Di)
    assert op.dt_projs_weight.shape == (4, Di, 5)
    assert op.A_logs.shape == (4 * Di, 3)
    assert not hasattr(op, 'conv2d')  # ssm_conv < 2: no depthwise conv
    # official init: A = -[1..N], D = 1, softplus(dt bias) in [1e-3, 1e-1]
    torch.testing.assert_close(op.A_logs[0].exp(), torch.tensor([1., 2., 3.]))
    assert torch.all(op.Ds == 1)
    dt = nn.functional.softplus(op.dt_projs_bias)
    assert dt.min() >= 1e-4 and dt.max() <= 0.1 + 1e-6
    model(torch.randn(1, 3, 32, 32))


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(
            ValueError, match=r"unknown forward_type 'v2x'.*v05_noz"):
        VMamba(**TINY, forward_type='v2x')
    with pytest.raises(ValueError, match='unknown forward_type'):
        VMamba(**TINY, forward_type='v052d')  # another scan pattern
    with pytest.raises(TypeError, match="unknown arguments.*'depth'"):
        VMamba(dims=16, depth=(1, 1, 1, 1))
    with pytest.raises(TypeError, match=r"\['embed_dims'\].*_delete_=True"):
        VMamba(**TINY, embed_dims=96)  # one Swin key: not a leftover set
    # a Swin leftover set is ignored (tests/test_configs), a typo beside it
    # is not
    with pytest.raises(TypeError, match=r"unknown arguments \['ssm_dstate'\]"):
        VMamba(**TINY, embed_dims=96, num_heads=[3, 6], ssm_dstate=1)
    with pytest.raises(ValueError, match="unknown arch 'huge'"):
        VMamba(arch='huge')
    with pytest.raises(ValueError, match="unknown norm_layer 'gn'"):
        VMamba(**TINY, norm_layer='gn')
    with pytest.raises(ValueError, match="unknown downsample_version 'v4'"):
        VMamba(**TINY, downsample_version='v4')
    with pytest.raises(ValueError, match='out_indices'):
        VMamba(**TINY, out_indices=(4, ))
    with pytest.raises(ValueError, match='frozen_stages'):
        VMamba(**TINY, frozen_stages=5)
    with pytest.raises(ValueError, match='d_state must be >= 1'):
        VMamba(**TINY, ssm_d_state=0)


def test_official_arguments_and_registry():
    cfg = dict(
        type='mmvmamba.VMamba',
        out_indices=(0, 1, 2, 3),
        pretrained='',  # what official v2 configs ship
        dims=16,
        depths=(1, 1, 1, 1),
        ssm_d_state=1,
        ssm_dt_rank='auto',
        ssm_ratio=2.0,
        ssm_conv=3,
        ssm_conv_bias=False,
        forward_type='v05_noz',
        mlp_ratio=4.0,
        downsample_version='v3',
        patchembed_version='v2',
        norm_layer='ln2d',
        drop_path_rate=0.2,
        num_classes=1000,
        use_checkpoint=False)
    model = ROOT_MODELS.build(cfg)
    assert isinstance(model, VMamba) and MODELS.get('VMamba') is VMamba
    assert model.init_cfg is None
    model = VMamba(**TINY, pretrained='some.pth')
    assert model.init_cfg == dict(type='Pretrained', checkpoint='some.pth')
    # explicit arguments override the preset
    with torch.device('meta'):
        m = VMamba(arch='small', depths=(2, 2, 3, 2), drop_path_rate=0.0)
    assert m.depths == [2, 2, 3, 2] and m.dims[0] == 96
    assert m.layers[0].blocks[0].op.d_inner == 192


@pytest.mark.parametrize('shape,onednn', [((1, 8, 64, 64), True),
                                          ((2, 8, 40, 50), True),
                                          ((1, 8, 14, 14), False),
                                          ((2, 8, 7, 7), False)])
def test_linear2d_cpu_onednn_route(shape, onednn):
    """A channels_last fp32 Linear2d on the CPU runs oneDNN's convolution
    from MKLDNN_MIN_PIXELS pixels, a GEMM on the NHWC view below; both equal
    the linear map over channels, forward and backward."""
    import torch.nn.functional as F
    from torch.profiler import profile

    from mmvmamba.models import vmamba as vm
    assert vm.MKLDNN_MIN_PIXELS == 4000
    torch.manual_seed(0)
    lin = vm.Linear2d(8, 4)
    x = torch.randn(shape).to(
        memory_format=torch.channels_last).requires_grad_()
    with profile() as prof:
        y = lin(x)
    names = {e.name for e in prof.events()}
    ran = 'aten::mkldnn_convolution' in names
    if torch.backends.mkldnn.is_available():
        assert ran == onednn
    assert ('aten::linear' in names) == (not ran)
    ref = F.linear(x.permute(0, 2, 3, 1), lin.weight,
                   lin.bias).permute(0, 3, 1, 2)
    g = torch.randn_like(ref)
    got = torch.autograd.grad(y, [x, lin.weight, lin.bias], g)
    want = torch.autograd.grad(ref, [x, lin.weight, lin.bias], g)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('approximate', ['none', 'tanh'])
@pytest.mark.parametrize('shape,op', [
    ((1, 8, 64, 64), 'mkldnn::_convolution_pointwise'),
    ((1, 8, 14, 14), 'mkldnn::_linear_pointwise')
])
def test_mlp_gelu_inside_onednn_op_without_autograd(shape, op, approximate):
    """The channel-first fp32 Mlp on a CPU runs GELU as a post-op of fc1's
    oneDNN convolution (from MKLDNN_MIN_PIXELS) or linear (below) when no
    gradient is recorded, with the values of fc1 -> GELU; with autograd or
    a hook on fc1 it runs them apart, and gradients flow."""
    import torch.nn as nn
    import torch.nn.functional as F
    from torch.profiler import profile

    from mmvmamba.models import vmamba as vm
    torch.manual_seed(0)
    mlp = vm.Mlp(8, 32, channel_first=True,
                 act_layer=lambda: nn.GELU(approximate=approximate)).eval()
    x = torch.randn(shape).to(memory_format=torch.channels_last)

    def ref(x):
        h = F.gelu(
            F.linear(x.permute(0, 2, 3, 1), mlp.fc1.weight, mlp.fc1.bias),
            approximate=approximate)
        return F.linear(h, mlp.fc2.weight, mlp.fc2.bias).permute(0, 3, 1, 2)

    def ran_fused(fn):
        with profile() as prof:
            out = fn()
        return out, any(e.name.endswith('_pointwise')
                        for e in prof.events())

    with profile() as prof, torch.no_grad():
        y = mlp(x)
    if torch.backends.mkldnn.is_available():
        assert [e.name for e in prof.events() if e.name.endswith('_pointwise')
                ] == [op]
    torch.testing.assert_close(y, ref(x), rtol=1e-5, atol=1e-5)
    # a forward hook on fc1 sees its call: the two run apart
    seen = []
    handle = mlp.fc1.register_forward_hook(lambda *a: seen.append(1))
    with torch.no_grad():
        y, ran = ran_fused(lambda: mlp(x))
    handle.remove()
    assert seen == [1] and not ran
    torch.testing.assert_close(y, ref(x), rtol=1e-5, atol=1e-5)
    xg = x.clone().requires_grad_()
    y, ran = ran_fused(lambda: mlp(xg))
    assert not ran
    torch.testing.assert_close(y, ref(x), rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y)
    got = torch.autograd.grad(y, [xg, mlp.fc1.weight], g)
    want = torch.autograd.grad(ref(xg), [xg, mlp.fc1.weight], g)
    for a, b in zip(got, want):  # fc1's weight: sums over 4096 pixels
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


_COMPILE_CHECK = """
import torch
import torch._dynamo as dynamo
from mmvmamba.models import VMamba
torch.manual_seed(0)
model = VMamba(arch='tiny', depths=(1, 1, 1, 1), backend={backend!r}).train()
x = torch.randn(1, 3, 32, 32)
explained = dynamo.explain(model)(x)
assert explained.graph_break_count == 0, [
    str(b.reason)[:300] for b in explained.break_reasons]
assert explained.graph_count == 1, explained.graph_count
compiled = torch.compile(model, backend='eager', fullgraph=True)
for out, ref in zip(compiled(x), model(x)):
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
print('one graph')
"""


@pytest.mark.parametrize('backend', [None, 'triton'])
def test_whole_model_compiles_without_graph_breaks(backend):
    """Dynamo traces a whole VMamba training forward as one graph: the CPU
    fp32 path (its oneDNN checks), and the Triton ops (custom ops; run by
    the interpreter, which must be on before the kernels are first
    imported: a fresh process), with drop path; the compiled model computes
    the eager model's outputs."""
    import os
    import subprocess
    import sys
    env = dict(os.environ)
    if backend == 'triton':
        env['TRITON_INTERPRET'] = '1'
    out = subprocess.run([sys.executable, '-c',
                          _COMPILE_CHECK.format(backend=backend)],
                         env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'one graph' in out.stdout
