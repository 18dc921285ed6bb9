# UperNet on ADE20K 512x512, 160k iterations, VMamba-T[s1l8]: the mmseg
# Swin-T recipe (random resize 0.5-2.0, random crop, flip, photometric
# distortion; AdamW 6e-5 / 0.01; multi-scale + flip TTA with --tta) with the
# backbone swapped.
_base_ = [
    'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'  # noqa
]

pretrained = 'https://github.com/MzeroMiko/VMamba/releases/download/%23v2cls/vssm1_tiny_0230s_ckpt_epoch_264.pth'  # noqa

model = dict(
    backbone=dict(
        _delete_=True,  # no Swin keys leak into VMamba
        type='mmvmamba.VMamba',
        arch='tiny',
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))

# see maskrcnn_vmamba_t_coco.py: no decay on any norm
optim_wrapper = dict(
    paramwise_cfg=dict(
        _delete_=True,
        norm_decay_mult=0.,
        custom_keys={'norm': dict(decay_mult=0.)}))

# MMEngine's LoggerHook, except that only the main process writes the test
# metrics json (in a multi-GPU test every rank wrote the same file at once)
default_hooks = dict(logger=dict(type='mmvmamba.LoggerHook'))
