# What the VMamba recipes share. Inherit it beside a stock mmdet / mmseg /
# mmpretrain config and take its pieces with {{_base_.NAME}}: a base file
# cannot set model, optim_wrapper or default_hooks itself, because the stock
# config beside it sets them too (MMEngine refuses keys repeated among bases).

# ImageNet-1K weights of the official release, by preset; use a local copy
# with --cfg-options model.backbone.init_cfg.checkpoint=/path/to/file.pth
vmamba_weights = dict(
    tiny='https://github.com/MzeroMiko/VMamba/releases/download/%23v2cls/vssm1_tiny_0230s_ckpt_epoch_264.pth',  # noqa
    small='https://github.com/MzeroMiko/VMamba/releases/download/%23v2cls/vssm_small_0229_ckpt_epoch_222.pth',  # noqa
    base='https://github.com/MzeroMiko/VMamba/releases/download/%23v2cls/vssm_base_0229_ckpt_epoch_237.pth',  # noqa
)

# The backbone swap of the detection and segmentation recipes: VMamba-T with
# its four stage outputs and ImageNet weights (drop_path_rate: the preset's;
# _delete_ drops the stock backbone's arguments)
vmamba_backbone = dict(
    _delete_=True,
    type='mmvmamba.VMamba',
    arch='tiny',
    out_indices=(0, 1, 2, 3),
    init_cfg=dict(type='Pretrained', checkpoint=vmamba_weights['tiny']))

# No weight decay on any norm. norm_decay_mult finds norm layers by type
# (incl. patch_embed.2/.7 and downsample.3, whose names lack "norm"); the
# 'norm' key also covers norms defined by name.
vmamba_no_decay_on_norms = dict(
    _delete_=True, norm_decay_mult=0., custom_keys={'norm': dict(decay_mult=0.)})

# MMEngine's default optimizer-wrapper constructor with plain-dict parameter
# groups, which torch.compile can trace (compile=True compiles train_step,
# the optimizer's step included; see mmvmamba/engine/optim.py)
vmamba_optim_constructor = 'mmvmamba.OptimWrapperConstructor'

# MMEngine's LoggerHook, except that only the main process writes the test
# metrics json (in a multi-GPU test every rank wrote the same file at once)
vmamba_logger = dict(type='mmvmamba.LoggerHook')
