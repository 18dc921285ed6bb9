# UperNet on ADE20K 512x512, 160k iterations, VMamba-S[s2l15].
_base_ = ['./upernet_vmamba_t_ade20k-512x512-160k.py']

model = dict(
    backbone=dict(
        arch='small',
        init_cfg=dict(checkpoint={{_base_.vmamba_weights.small}})))
