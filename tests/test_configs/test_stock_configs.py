"""Official-style configs: a stock mmdet / mmseg config of another backbone
(Swin, ResNet, ConvNeXt) builds VMamba by changing only ``type``; what its
base leaves in the backbone dict is ignored with one warning."""
import inspect
import warnings

import pytest
import torch
from mmengine.config import Config

from mmvmamba.models import VMamba
from mmvmamba.models.vmamba import FOREIGN_BACKBONE_ARGS
from mmvmamba.registry import MODELS

# (stock base config, backbone its leftovers belong to)
STOCK = {
    'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py': 'SwinTransformer',
    'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py':  # noqa: E501
    'SwinTransformer',
    'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py': 'ResNet',
    'mmseg::pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py': 'ResNet',
    'mmdet::convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py':
    'ConvNeXt',
}
# what an official VMamba config states (reduced to a 16-wide model)
OFFICIAL_ARGS = dict(
    type='mmvmamba.VMamba',
    dims=16,
    depths=(1, 1, 1, 1),
    ssm_d_state=1,
    ssm_ratio=1.0,
    forward_type='v05_noz',
    downsample_version='v3',
    patchembed_version='v2',
    norm_layer='ln2d',
    out_indices=(0, 1, 2, 3),
    backend='torch')


def backbone_cfg(base: str, **args) -> dict:
    cfg = Config.fromstring(
        f'_base_ = [{base!r}]\nmodel = dict(backbone={args!r})', '.py')
    return cfg.model.backbone.to_dict()


@pytest.mark.parametrize('base', sorted(STOCK))
def test_changing_only_type_builds_with_one_warning(base):
    cfg = backbone_cfg(base, **OFFICIAL_ARGS)
    expected = sorted(
        set(cfg) & set(FOREIGN_BACKBONE_ARGS[STOCK[base]]) - {'_scope_'})
    assert len(expected) >= 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        model = MODELS.build(cfg)
    ours = [w for w in caught if 'VMamba ignores' in str(w.message)]
    assert len(ours) == 1, [str(w.message) for w in caught]
    message = str(ours[0].message)
    assert f'{STOCK[base]} arguments {expected}' in message
    assert 'add `_delete_=True`' in message
    assert isinstance(model, VMamba) and model.dims == [16, 32, 64, 128]
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [16, 32, 64, 128]


def test_explicit_pretrained_replaces_the_inherited_init_cfg():
    """Official configs set ``pretrained=...`` over Swin's init_cfg."""
    base = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py'
    cfg = backbone_cfg(base, pretrained='vssm1_tiny.pth', **OFFICIAL_ARGS)
    assert 'swin' in cfg['init_cfg']['checkpoint']
    with pytest.warns(UserWarning, match=r"its init_cfg \(pretrained="):
        model = MODELS.build(cfg)
    assert model.init_cfg == dict(type='Pretrained',
                                  checkpoint='vssm1_tiny.pth')
    # without leftovers, both at once is still a mistake
    with pytest.raises(ValueError, match='either `pretrained` or'):
        VMamba(dims=16, depths=(1, 1, 1, 1), pretrained='a.pth',
               init_cfg=dict(type='Pretrained', checkpoint='b.pth'))


def test_other_unknown_arguments_still_stop():
    base = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py'
    cfg = backbone_cfg(base, ssm_dstate=1, **OFFICIAL_ARGS)
    with pytest.raises(TypeError, match=r"unknown arguments \['ssm_dstate'\]"):
        MODELS.build(cfg)


def test_foreign_argument_lists_are_the_real_signatures():
    """The table is what those backbones take and VMamba does not."""
    from mmdet.models.backbones import ResNet as DetResNet
    from mmdet.models.backbones import SwinTransformer as DetSwin
    from mmpretrain.models.backbones import ConvNeXt
    from mmseg.models.backbones import ResNet as SegResNet
    from mmseg.models.backbones import SwinTransformer as SegSwin
    own = set(inspect.signature(VMamba).parameters)

    def args(*classes):
        names = set()
        for cls in classes:
            names |= set(inspect.signature(cls.__init__).parameters)
        return sorted(names - own - {'self', 'args', 'kwargs'})

    assert sorted(FOREIGN_BACKBONE_ARGS['SwinTransformer']) == args(
        DetSwin, SegSwin)
    assert sorted(FOREIGN_BACKBONE_ARGS['ResNet']) == args(
        DetResNet, SegResNet)
    assert sorted(FOREIGN_BACKBONE_ARGS['ConvNeXt']) == args(ConvNeXt)
