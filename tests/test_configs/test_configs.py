"""Every shipped config loads, builds, and (reduced) runs loss and predict."""
import copy
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from torch import nn

import mmvmamba  # noqa: F401
from mmvmamba.cli.preflight import downstream_of
from mmvmamba.models import VMamba

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(
    osp.relpath(p, ROOT)
    for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'),
                       recursive=True) if '/_base_/' not in p)
RECIPES = [c for c in CONFIGS if '/demo/' not in c]
# a reduced VMamba (same structure: v2 stem, v3 downsample, ln2d) for forwards
TINY_DIMS = [16, 32, 64, 128]
TINY_ARCH = dict(dims=16, depths=(1, 1, 1, 1))
SWIN_KEYS = ('embed_dims', 'num_heads', 'window_size', 'qkv_bias',
             'convert_weights', 'patch_norm', 'attn_drop_rate')
ARCH_OF = {'_t_': 'tiny', '_s_': 'small', '_b_': 'base'}


def load(name: str) -> Config:
    return Config.fromfile(osp.join(ROOT, name))


def build(cfg: Config) -> nn.Module:
    scope = downstream_of(cfg)
    init_default_scope(scope)
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    if cfg.get('data_preprocessor', None) is not None:
        # as mmengine's Runner does: the top-level preprocessor is the model's
        cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    return revert_sync_batchnorm(registry.build(cfg.model))


def test_all_recipes_present():
    names = {osp.basename(c) for c in CONFIGS}
    for arch in 'tsb':
        assert f'maskrcnn_vmamba_{arch}_coco.py' in names
        assert f'upernet_vmamba_{arch}_ade20k-512x512-160k.py' in names
        assert f'vmamba_{arch}_in1k.py' in names
        assert f'vmamba_{arch}_in1k_official-eval.py' in names
    for arch in 'ts':
        assert f'maskrcnn_vmamba_{arch}_ms-3x_coco.py' in names
    assert 'maskrcnn_vmamba_t_demo-shapes.py' in names


@pytest.mark.parametrize('name', RECIPES)
def test_recipe_backbone(name):
    cfg = load(name)
    backbone = cfg.model.backbone
    assert backbone.type == 'mmvmamba.VMamba'
    leaked = [k for k in SWIN_KEYS if k in backbone]
    assert not leaked, f'Swin keys leaked into the backbone: {leaked}'
    arch = next(a for k, a in ARCH_OF.items() if k in osp.basename(name))
    assert backbone.arch == arch
    if downstream_of(cfg) != 'mmpretrain' or 'eval' in name:
        ckpt = cfg.load_from if 'eval' in name else backbone.init_cfg.checkpoint
        assert ckpt.startswith(
            'https://github.com/MzeroMiko/VMamba/releases/download/')
        assert ('vssm1_tiny_0230s' in ckpt) == (arch == 'tiny')
    # stated in the config or the preset's (configs do not restate it)
    expected_dpr = {'tiny': 0.2, 'small': 0.3, 'base': 0.6}[arch]
    resolved = VMamba._resolve_arch(
        backbone.arch, dict(drop_path_rate=backbone.get('drop_path_rate')))
    assert resolved['drop_path_rate'] == expected_dpr


@pytest.mark.parametrize('name', CONFIGS)
def test_logger_hook_writes_test_metrics_once(name):
    """mmvmamba.LoggerHook (rank 0 alone writes the test metrics json), with
    the downstream recipe's arguments kept, and buildable in its scope."""
    cfg = load(name)
    logger = cfg.default_hooks.logger
    assert logger.type == 'mmvmamba.LoggerHook'
    assert logger.interval > 0
    scope = downstream_of(cfg)
    hooks = __import__(f'{scope}.registry', fromlist=['HOOKS']).HOOKS
    from mmvmamba.engine.hooks import LoggerHook
    hook = hooks.build(copy.deepcopy(logger))
    assert type(hook) is LoggerHook and hook.interval == logger.interval


@pytest.mark.parametrize('name', CONFIGS)
def test_config_builds_full_model(name):
    cfg = load(name)
    cfg.model.backbone.init_cfg = None
    model = build(cfg)
    n_backbone = sum(p.numel() for p in model.backbone.parameters())
    # backbone sizes of the official Backbone_VSSM (spec §1.1), minus the
    # outnorms not requested by a classifier (out_indices=(3,))
    expected = {
        'tiny': 29_481_408,
        'small': 49_380_096,
        'base': 87_534_592
    }[cfg.model.backbone.arch]
    if tuple(cfg.model.backbone.out_indices) == (3, ):
        dims = model.backbone.dims if hasattr(model.backbone, 'dims') else (
            [96, 192, 384] if cfg.model.backbone.arch != 'base' else
            [128, 256, 512])
        expected -= 2 * sum(dims[:3])
    assert n_backbone == expected


def _reduce(cfg: Config) -> Config:
    cfg = copy.deepcopy(cfg)
    bb = cfg.model.backbone
    bb.arch = TINY_ARCH
    bb.drop_path_rate = 0.1
    bb.init_cfg = None
    scope = downstream_of(cfg)
    if scope == 'mmdet':
        cfg.model.neck.in_channels = TINY_DIMS
        cfg.model.neck.out_channels = 32
        cfg.model.rpn_head.in_channels = 32
        cfg.model.rpn_head.feat_channels = 32
        for head in ('bbox_roi_extractor', 'mask_roi_extractor'):
            cfg.model.roi_head[head].out_channels = 32
        cfg.model.roi_head.bbox_head.in_channels = 32
        cfg.model.roi_head.bbox_head.fc_out_channels = 64
        cfg.model.roi_head.mask_head.in_channels = 32
        cfg.model.roi_head.mask_head.conv_out_channels = 32
    elif scope == 'mmseg':
        cfg.model.data_preprocessor.size = (64, 64)
        cfg.model.decode_head.in_channels = TINY_DIMS
        cfg.model.decode_head.channels = 32
        cfg.model.auxiliary_head.in_channels = TINY_DIMS[2]
        cfg.model.auxiliary_head.channels = 16
    else:
        cfg.model.head.in_channels = TINY_DIMS[3]
    return cfg


def _det_step(model, cfg):
    from mmdet.testing import demo_mm_inputs
    n_cls = cfg.model.roi_head.bbox_head.num_classes
    packed = demo_mm_inputs(
        2, [[3, 64, 64], [3, 64, 48]], with_mask=True, num_classes=n_cls)
    data = model.data_preprocessor(packed, True)
    losses = model(**data, mode='loss')
    assert {'loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'} <= set(
        losses)
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(packed, False)
        preds = model(**data, mode='predict')
    assert len(preds) == 2
    inst = preds[0].pred_instances
    assert inst.bboxes.shape[1] == 4
    assert inst.masks.shape[1:] == (64, 64)
    return losses


def _seg_step(model, cfg):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    n_cls = cfg.model.decode_head.num_classes
    inputs, samples = [], []
    for _ in range(2):
        inputs.append(torch.randint(0, 255, (3, 64, 64)).float())
        s = SegDataSample(
            gt_sem_seg=PixelData(
                data=torch.randint(0, n_cls, (1, 64, 64))))
        s.set_metainfo(
            dict(img_shape=(64, 64), ori_shape=(64, 64), pad_shape=(64, 64)))
        samples.append(s)
    packed = dict(inputs=inputs, data_samples=samples)
    losses = model(**model.data_preprocessor(packed, True), mode='loss')
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(losses)
    model.eval()
    with torch.no_grad():
        preds = model(**model.data_preprocessor(packed, False),
                      mode='predict')
    assert preds[0].pred_sem_seg.data.shape == (1, 64, 64)
    assert int(preds[0].pred_sem_seg.data.max()) < n_cls
    return losses


def _cls_step(model, cfg):
    from mmpretrain.structures import DataSample
    inputs = [torch.randint(0, 255, (3, 64, 64)).float() for _ in range(2)]
    samples = [DataSample().set_gt_label(i) for i in (3, 7)]
    packed = dict(inputs=inputs, data_samples=samples)
    losses = model(**model.data_preprocessor(packed, True), mode='loss')
    assert 'loss' in losses
    model.eval()
    with torch.no_grad():
        preds = model(**model.data_preprocessor(packed, False),
                      mode='predict')
    assert preds[0].pred_score.shape == (1000, )
    return losses


@pytest.mark.parametrize('name', CONFIGS)
def test_reduced_loss_and_predict(name):
    torch.manual_seed(0)
    cfg = _reduce(load(name))
    model = build(cfg)
    model.init_weights()
    model.train()
    step = {
        'mmdet': _det_step,
        'mmseg': _seg_step,
        'mmpretrain': _cls_step
    }[downstream_of(cfg)]
    losses = step(model, cfg)
    total = sum(v.sum() for k, v in losses.items()
                if 'loss' in k and isinstance(v, torch.Tensor))
    assert torch.isfinite(total)


def _types(pipeline):
    for t in pipeline:
        yield t
        for sub in t.get('transforms', []):
            yield from _types(sub if isinstance(sub, list) else [sub])


@pytest.mark.parametrize('name', [c for c in CONFIGS if 'ms-3x' in c])
def test_3x_pipeline_is_multiscale_with_flip(name):
    cfg = load(name)
    assert cfg.train_cfg.max_epochs == 36
    pipeline = list(_types(cfg.train_dataloader.dataset.pipeline))
    flips = [t for t in pipeline if t['type'] == 'RandomFlip']
    assert flips and flips[0]['prob'] == 0.5
    resizes = [t for t in pipeline if t['type'] == 'RandomChoiceResize']
    shorter = {s[1] if s[0] == 1333 else s[0] for s in resizes[0]['scales']}
    assert shorter == set(range(480, 801, 32))
    assert any(t['type'] == 'RandomCrop' for t in pipeline)
    assert cfg.param_scheduler[1]['milestones'] == [27, 33]


@pytest.mark.parametrize('name', [c for c in CONFIGS if 'upernet' in c])
def test_upernet_pipeline_and_schedule(name):
    cfg = load(name)
    types = {t['type']: t for t in cfg.train_dataloader.dataset.pipeline}
    assert types['RandomResize']['ratio_range'] == (0.5, 2.0)
    assert types['RandomCrop']['crop_size'] == (512, 512)
    assert types['RandomFlip']['prob'] == 0.5
    assert 'PhotoMetricDistortion' in types
    assert cfg.train_cfg.max_iters == 160000
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.weight_decay) == ('AdamW', 6e-5, 0.01)
    # multi-scale + flip TTA is available through --tta
    tta = cfg.tta_pipeline[1]['transforms']
    ratios = [t['scale_factor'] for t in tta[0]]
    assert ratios == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    assert [t['prob'] for t in tta[1]] == [0., 1.]
    assert cfg.tta_model.type == 'SegTTAModel'


def test_in1k_recipe():
    cfg = load('configs/vmamba_t_in1k.py')
    assert cfg.train_cfg.max_epochs == 300
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.weight_decay) == ('AdamW', 1e-3, 0.05)
    assert cfg.optim_wrapper.clip_grad.max_norm == 5.0
    types = {t['type']: t for t in cfg.train_dataloader.dataset.pipeline}
    assert types['RandAugment']['magnitude_level'] == 9
    augments = {a['type']: a['alpha'] for a in cfg.model.train_cfg.augments}
    assert augments == {'Mixup': 0.8, 'CutMix': 1.0}
    ema = [h for h in cfg.custom_hooks if h['type'] == 'EMAHook']
    assert ema and ema[0]['momentum'] == pytest.approx(1e-4)
    assert cfg.train_dataloader.batch_size * 16 == 1024


def _is_norm(m: nn.Module) -> bool:
    return isinstance(m, (nn.LayerNorm, nn.GroupNorm,
                          nn.modules.batchnorm._BatchNorm))


@pytest.mark.parametrize('name', [
    'configs/maskrcnn_vmamba_t_coco.py',
    'configs/maskrcnn_vmamba_t_ms-3x_coco.py',
    'configs/upernet_vmamba_t_ade20k-512x512-160k.py',
    'configs/vmamba_t_in1k.py'
])
def test_no_weight_decay_on_any_norm(name):
    from mmengine.optim import build_optim_wrapper
    cfg = _reduce(load(name))
    model = build(cfg)
    wd = cfg.optim_wrapper.optimizer.weight_decay
    optim = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    decay = {}
    for group in optim.optimizer.param_groups:
        for p in group['params']:
            decay[id(p)] = group['weight_decay']
    norm_params = {
        f'{mn}.{pn}': p
        for mn, m in model.named_modules() if _is_norm(m)
        for pn, p in m.named_parameters(recurse=False)
    }
    # the norms whose names lack "norm" must be among them
    for key in ('backbone.patch_embed.2.weight',
                'backbone.patch_embed.7.weight',
                'backbone.layers.0.downsample.3.weight'):
        assert key in norm_params
    decayed = [n for n, p in norm_params.items() if decay[id(p)] != 0]
    assert not decayed, f'norm parameters with weight decay: {decayed}'
    conv = model.backbone.patch_embed[0].weight
    assert decay[id(conv)] == pytest.approx(wd)
