# Mask R-CNN FPN 3x with multi-scale training (DETR-style resize/crop) and
# random flip on COCO, VMamba-T[s1l8]: the mmdet Swin-T 3x recipe, backbone
# swapped.
_base_ = ['mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py']

pretrained = 'https://github.com/MzeroMiko/VMamba/releases/download/%23v2cls/vssm1_tiny_0230s_ckpt_epoch_264.pth'  # noqa

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmvmamba.VMamba',
        arch='tiny',
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))

# see maskrcnn_vmamba_t_coco.py: no decay on any norm
optim_wrapper = dict(
    paramwise_cfg=dict(
        _delete_=True,
        norm_decay_mult=0.,
        custom_keys={'norm': dict(decay_mult=0.)}))

# MMEngine's LoggerHook, except that only the main process writes the test
# metrics json (in a multi-GPU test every rank wrote the same file at once)
default_hooks = dict(logger=dict(type='mmvmamba.LoggerHook'))
