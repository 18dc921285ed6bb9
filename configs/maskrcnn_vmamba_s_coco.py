# Mask R-CNN FPN 1x on COCO with VMamba-S[s2l15].
_base_ = ['./maskrcnn_vmamba_t_coco.py']

model = dict(
    backbone=dict(
        arch='small',
        init_cfg=dict(checkpoint={{_base_.vmamba_weights.small}})))
