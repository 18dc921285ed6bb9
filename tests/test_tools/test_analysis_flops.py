"""FLOP counting with the official rules (spec §4, §6)."""
import pytest
import torch
from torch import nn

import mmvmamba.kernels as K
from mmvmamba.analysis.backbones import LastStage
from mmvmamba.analysis.flops import (SPEC_GFLOPS, ImageClassifierForFlops,
                                     count_flops, counted_ss2d_core,
                                     ss2d_core_flops)
from mmvmamba.models import vmamba as vmamba_module
from mmvmamba.models.vmamba import VMamba


class _Core(nn.Module):
    """Calls the public op like the model does."""

    def __init__(self, Di=8, R=2, N=3):
        super().__init__()
        self.xw = nn.Parameter(torch.randn(4, R + 2 * N, Di))
        self.dw = nn.Parameter(torch.randn(4, Di, R))
        self.db = nn.Parameter(torch.randn(4, Di))
        self.A = nn.Parameter(torch.zeros(4 * Di, N))
        self.D = nn.Parameter(torch.ones(4 * Di))

    def forward(self, x):
        return K.ss2d_core(x, self.xw, self.dw, self.db, self.A, self.D)


def test_ss2d_core_formula():
    # x_proj + dt_proj as grouped conv1d, scan 9·B·L·D·N + B·D·L, D = 4·Di
    B, Di, H, W, R, N = 2, 8, 5, 7, 2, 3
    L, D = H * W, 4 * Di
    expect = B * L * D * (R + 2 * N) + B * L * D * R + 9 * B * L * D * N \
        + B * D * L
    assert ss2d_core_flops(B, Di, H, W, 4, R, N) == expect
    out = count_flops(_Core(Di, R, N), torch.randn(B, Di, H, W))
    assert out['flops'] == expect
    assert set(out['by_operator']) == {'PythonOp.SS2DCoreCounted'}


def test_counted_core_output_and_restore():
    core, x = _Core(), torch.randn(1, 8, 4, 6)
    ref = K.ss2d_core_ref(x, core.xw, core.dw, core.db, core.A, core.D)
    original = vmamba_module.ss2d_core
    with counted_ss2d_core():
        # routed through the kernels' dispatch: no module attribute replaced
        assert vmamba_module.ss2d_core is original is K.ss2d_core
        with torch.no_grad():
            graph = str(torch.jit.trace(core, x).graph)
        assert 'SS2DCoreCounted' in graph
        torch.testing.assert_close(core(x), ref)  # real core by default
    # after the context the real op runs again: traced as plain ops and
    # differentiable (the counted one refuses backward)
    with torch.no_grad():
        assert 'SS2DCoreCounted' not in str(torch.jit.trace(core, x).graph)
    xg = x.clone().requires_grad_()
    core(xg).sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0


def test_routed_function_reaches_the_op():
    # a recorder routed in front of the op sees every call and, calling the
    # op itself, gets the normal result (no recursion into itself)
    core, x = _Core(), torch.randn(1, 8, 4, 6)
    seen = []

    def record(*args, backend=None):
        seen.append(args[0].shape)
        return K.ss2d_core(*args, backend=backend)

    with K.routed(ss2d_core=record):
        out = core(x)
    torch.testing.assert_close(out, core(x))
    assert seen == [x.shape]


def test_routed_rejects_unknown_ops():
    with pytest.raises(ValueError, match='routable ops'):
        with K.routed(cross_scan=lambda *a: None):
            pass


def test_counted_core_refuses_backward():
    core, x = _Core(), torch.randn(1, 8, 4, 6, requires_grad=True)
    with counted_ss2d_core(), pytest.raises(RuntimeError, match='counting'):
        core(x).sum().backward()


@pytest.mark.parametrize('arch', ['tiny', 'small', 'base'])
def test_preset_flops_match_official(arch):
    # T-s1l8 4.906G, S-s2l15 8.716G, B-s2l15 15.36G at 224² with the head
    bb = VMamba(arch=arch, out_indices=(3, ))
    model = ImageClassifierForFlops(LastStage(bb), bb.num_features)
    out = count_flops(model, torch.randn(1, 3, 224, 224), cheap_core=True)
    assert out['flops'] / 1e9 == pytest.approx(SPEC_GFLOPS[arch], rel=0.01)
    params = {'tiny': 30_249_064, 'small': 50_147_752, 'base': 88_557_800}
    assert out['params'] == params[arch]
    assert 'PythonOp.SS2DCoreCounted' in out['by_operator']


def test_cheap_core_counts_like_real_core():
    bb = VMamba(arch=dict(dims=16, depths=(1, 1, 2, 1)), out_indices=(3, ))
    x = torch.randn(1, 3, 64, 96)
    real = count_flops(bb, x)['flops']
    assert count_flops(bb, x, cheap_core=True)['flops'] == real > 0


def test_detector_counts_backbone_through_mmdet(tmp_path):
    pytest.importorskip('mmdet')
    from mmvmamba.analysis.backbones import build_from_config
    from mmvmamba.analysis.flops import count_model_flops
    cfg = tmp_path / 'mask_rcnn_tiny_vmamba.py'
    cfg.write_text(
        "_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'\n"
        'model = dict(backbone=dict(_delete_=True, type="mmvmamba.VMamba", '
        'arch=dict(dims=16, depths=(1, 1, 1, 1))), '
        'neck=dict(in_channels=[16, 32, 64, 128]))\n')
    model = build_from_config(str(cfg))
    det = count_model_flops(model, (128, 96), cheap_core=True)
    alone = count_flops(model.backbone, torch.randn(1, 3, 128, 96))
    op = 'PythonOp.SS2DCoreCounted'
    # the whole detector ran in tensor mode (RPN + RoI heads counted) and
    # the backbone's scans were seen through mmdet's registry-built model
    assert det['by_operator'][op] == alone['by_operator'][op] > 0
    assert det['flops'] > alone['flops'] + 1e9  # 1000 RoIs in the box head
    assert det['params'] == sum(p.numel() for p in model.parameters())
