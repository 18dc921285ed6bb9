# Mask R-CNN FPN 3x multi-scale on COCO with VMamba-S[s2l15].
_base_ = ['./maskrcnn_vmamba_t_ms-3x_coco.py']

model = dict(
    backbone=dict(
        arch='small',
        init_cfg=dict(checkpoint={{_base_.vmamba_weights.small}})))
