# Mask R-CNN FPN 1x on COCO with VMamba-T[s1l8] (official detection recipe:
# the mmdet Swin-T 1x recipe with the backbone swapped; AdamW 1e-4 / 0.05
# from the base, no decay on any norm).
_base_ = [
    'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py', './_base_/vmamba.py'
]

model = dict(
    backbone={{_base_.vmamba_backbone}},
    neck=dict(in_channels=[96, 192, 384, 768]))
optim_wrapper = dict(
    constructor={{_base_.vmamba_optim_constructor}},
    paramwise_cfg={{_base_.vmamba_no_decay_on_norms}})
default_hooks = dict(logger={{_base_.vmamba_logger}})
