# Mask R-CNN FPN 1x on COCO with VMamba-T[s1l8] (official detection recipe:
# the mmdet Swin-T 1x recipe with the backbone swapped).
_base_ = ['mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py']

# ImageNet-1K weights of the official release; use a local copy with
# --cfg-options model.backbone.init_cfg.checkpoint=/path/to/file.pth
pretrained = 'https://github.com/MzeroMiko/VMamba/releases/download/%23v2cls/vssm1_tiny_0230s_ckpt_epoch_264.pth'  # noqa

model = dict(
    backbone=dict(
        _delete_=True,  # no Swin keys leak into VMamba
        type='mmvmamba.VMamba',
        arch='tiny',
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))

# AdamW 1e-4 / 0.05 from the base; no decay on any norm. norm_decay_mult
# finds norm layers by type (incl. patch_embed.2/.7 and downsample.3, whose
# names lack "norm"); the 'norm' key also covers norms defined by name.
optim_wrapper = dict(
    paramwise_cfg=dict(
        _delete_=True,
        norm_decay_mult=0.,
        custom_keys={'norm': dict(decay_mult=0.)}))

# MMEngine's LoggerHook, except that only the main process writes the test
# metrics json (in a multi-GPU test every rank wrote the same file at once)
default_hooks = dict(logger=dict(type='mmvmamba.LoggerHook'))
