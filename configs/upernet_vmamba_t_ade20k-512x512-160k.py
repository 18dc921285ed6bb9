# UperNet on ADE20K 512x512, 160k iterations, VMamba-T[s1l8]: the mmseg
# Swin-T recipe (random resize 0.5-2.0, random crop, flip, photometric
# distortion; AdamW 6e-5 / 0.01; multi-scale + flip TTA with --tta) with the
# backbone swapped, no decay on any norm.
_base_ = [
    'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',  # noqa
    './_base_/vmamba.py'
]

model = dict(
    backbone={{_base_.vmamba_backbone}},
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
optim_wrapper = dict(
    constructor={{_base_.vmamba_optim_constructor}},
    paramwise_cfg={{_base_.vmamba_no_decay_on_norms}})
default_hooks = dict(logger={{_base_.vmamba_logger}})
