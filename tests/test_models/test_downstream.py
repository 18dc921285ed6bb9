"""``type='mmvmamba.VMamba'`` inside mmdet, mmseg and mmpretrain models (CPU).

Each test builds a small model from a config dict in the downstream scope
and runs ``loss`` (with a backward pass) and ``predict``.
"""
import copy
from pathlib import Path

import torch
from mmengine.config import Config, ConfigDict
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData

BACKBONE = dict(
    type='mmvmamba.VMamba',
    dims=16,
    depths=(1, 1, 1, 1),
    drop_path_rate=0.1,
    backend='torch')
CHANNELS = [16, 32, 64, 128]


def assert_trains(model, losses: dict) -> None:
    total, _ = model.parse_losses(losses)  # sums every 'loss*' entry
    assert torch.isfinite(total)
    total.backward()
    grad = model.backbone.layers[0].blocks[0].op.A_logs.grad
    assert grad is not None and torch.isfinite(grad).all()


def test_mmpretrain_image_classifier():
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    cfg = dict(
        type='ImageClassifier',
        backbone=dict(BACKBONE, out_indices=(3, )),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='LinearClsHead',
            num_classes=5,
            in_channels=CHANNELS[-1],
            loss=dict(type='CrossEntropyLoss')),
        data_preprocessor=dict(
            type='ClsDataPreprocessor',
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            to_rgb=True))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg)
        model.init_weights()
        data = dict(
            inputs=[
                torch.randint(0, 255, (3, 40, 48), dtype=torch.uint8)
                for _ in range(2)
            ],
            data_samples=[DataSample().set_gt_label(i) for i in (1, 3)])
        batch = model.data_preprocessor(data, True)
        model.train()
        assert_trains(model, model(**batch, mode='loss'))
        model.eval()
        with torch.no_grad():
            preds = model(
                **model.data_preprocessor(data, False), mode='predict')
    assert len(preds) == 2 and preds[0].pred_score.shape == (5, )


def test_mmseg_upernet():
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    norm = dict(type='BN', requires_grad=True)  # SyncBN needs a process group
    cfg = dict(
        type='EncoderDecoder',
        data_preprocessor=dict(
            type='SegDataPreProcessor',
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            bgr_to_rgb=True,
            pad_val=0,
            seg_pad_val=255,
            size=(64, 64)),
        backbone=dict(BACKBONE),
        decode_head=dict(
            type='UPerHead',
            in_channels=CHANNELS,
            in_index=[0, 1, 2, 3],
            pool_scales=(1, 2, 3, 6),
            channels=16,
            dropout_ratio=0.1,
            num_classes=4,
            norm_cfg=norm,
            align_corners=False,
            loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
        auxiliary_head=dict(
            type='FCNHead',
            in_channels=CHANNELS[2],
            in_index=2,
            channels=8,
            num_convs=1,
            concat_input=False,
            dropout_ratio=0.1,
            num_classes=4,
            norm_cfg=norm,
            align_corners=False,
            loss_decode=dict(type='CrossEntropyLoss', loss_weight=0.4)),
        train_cfg=dict(),
        test_cfg=dict(mode='whole'))
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(ConfigDict(cfg))  # mmseg reads test_cfg.mode
        model.init_weights()
        samples = []
        for _ in range(2):
            s = SegDataSample(
                metainfo=dict(
                    img_shape=(64, 64), ori_shape=(64, 64), pad_shape=(64,
                                                                       64)))
            s.gt_sem_seg = PixelData(data=torch.randint(0, 4, (1, 64, 64)))
            samples.append(s)
        data = dict(
            inputs=[
                torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)
                for _ in range(2)
            ],
            data_samples=samples)
        model.train()
        assert_trains(
            model, model(**model.data_preprocessor(data, True), mode='loss'))
        model.eval()
        with torch.no_grad():
            preds = model(
                **model.data_preprocessor(data, False), mode='predict')
    assert preds[0].pred_sem_seg.data.shape == (1, 64, 64)


def test_mmdet_mask_rcnn():
    import mmdet
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    base = (
        Path(mmdet.__file__).parent / '.mim' / 'configs' / '_base_' /
        'models' / 'mask-rcnn_r50_fpn.py')
    cfg = Config.fromfile(str(base)).model
    cfg.backbone = copy.deepcopy(
        BACKBONE)  # replaces ResNet (no _delete_ needed)
    cfg.neck.in_channels = CHANNELS
    cfg.neck.out_channels = 32
    cfg.rpn_head.in_channels = 32
    cfg.rpn_head.feat_channels = 32
    for head in ('bbox', 'mask'):
        cfg.roi_head[f'{head}_roi_extractor'].out_channels = 32
        cfg.roi_head[f'{head}_head'].in_channels = 32
        cfg.roi_head[f'{head}_head'].num_classes = 3
    cfg.roi_head.bbox_head.fc_out_channels = 32
    cfg.roi_head.mask_head.conv_out_channels = 32
    cfg.train_cfg.rpn_proposal.nms_pre = 200
    cfg.train_cfg.rpn_proposal.max_per_img = 100
    cfg.train_cfg.rcnn.sampler.num = 64
    cfg.test_cfg.rpn.nms_pre = 200
    cfg.test_cfg.rpn.max_per_img = 100
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg)
        model.init_weights()
        data = demo_mm_inputs(
            2, [[3, 64, 64], [3, 61, 67]], num_classes=3, with_mask=True)
        model.train()
        losses = model(**model.data_preprocessor(data, True), mode='loss')
        assert {'loss_rpn_cls', 'loss_cls', 'loss_mask'} <= set(losses)
        assert_trains(model, losses)
        model.eval()
        with torch.no_grad():
            preds = model(
                **model.data_preprocessor(data, False), mode='predict')
    assert len(preds) == 2
    assert preds[0].pred_instances.bboxes.shape[-1] == 4
    assert 'masks' in preds[0].pred_instances
