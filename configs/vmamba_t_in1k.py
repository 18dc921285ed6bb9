# ImageNet-1K classification, VMamba-T[s1l8], the official recipe: 300
# epochs, batch 1024 (16 GPUs x 64), AdamW lr 1e-3 / wd 0.05 (no decay on
# norms, biases and 1-D parameters), 20 warm-up epochs, cosine to 1e-5,
# grad clip 5, label smoothing 0.1, RandAugment m9-mstd0.5 (increasing),
# mixup 0.8 / cutmix 1.0, random erasing 0.25, EMA 0.9999; evaluation at
# 224 after a bicubic resize to 256. This is the mmpretrain Swin-T recipe,
# which matches it, with the backbone swapped and EMA added. The official
# runs used mixed precision: add --amp on GPUs.
_base_ = [
    'mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py',
    './_base_/vmamba.py'
]

model = dict(
    backbone=dict(
        _delete_=True,  # no Swin keys leak into VMamba
        type='mmvmamba.VMamba',
        arch='tiny',  # drop_path_rate: the preset's
        # stage-3 outnorm plays the role of the official classifier.norm
        out_indices=(3, )),
    head=dict(in_channels=768))

# official model EMA with decay 0.9999 (momentum = 1 - decay)
custom_hooks = [dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL')]

optim_wrapper = dict(constructor={{_base_.vmamba_optim_constructor}})
default_hooks = dict(logger={{_base_.vmamba_logger}})
