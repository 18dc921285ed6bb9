# Mask R-CNN FPN 1x on COCO with VMamba-B[s2l15].
_base_ = ['./maskrcnn_vmamba_t_coco.py']

model = dict(
    backbone=dict(
        arch='base',
        init_cfg=dict(checkpoint={{_base_.vmamba_weights.base}})),
    neck=dict(in_channels=[128, 256, 512, 1024]))
