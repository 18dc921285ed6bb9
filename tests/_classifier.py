"""The tiny mmpretrain ImageClassifier with a VMamba backbone that the
training-step tests build (5 classes, 32² inputs)."""
import torch


def tiny_classifier(mixup: bool = False, **backbone):
    """Seeded: two calls give the same weights. ``backbone`` overrides the
    VMamba arguments."""
    import mmpretrain.models  # noqa: F401  (registers ImageClassifier)
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    torch.manual_seed(0)
    pre = dict(type='ClsDataPreprocessor', num_classes=5, mean=[0.] * 3,
               std=[1.] * 3)
    if mixup:
        pre['batch_augments'] = dict(augments=[dict(type='Mixup', alpha=.8)])
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(
            dict(
                type='ImageClassifier',
                backbone=dict(
                    dict(type='mmvmamba.VMamba', dims=8, depths=(1, 1, 1, 1),
                         ssm_d_state=1, ssm_ratio=1.0, mlp_ratio=2.0,
                         drop_path_rate=0.0, out_indices=(3, )),
                    **backbone),
                neck=dict(type='GlobalAveragePooling'),
                head=dict(
                    type='LinearClsHead', num_classes=5, in_channels=64,
                    loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
                data_preprocessor=pre))
