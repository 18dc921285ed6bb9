# UperNet on ADE20K 512x512, 160k iterations, VMamba-B[s2l15].
_base_ = ['./upernet_vmamba_t_ade20k-512x512-160k.py']

model = dict(
    backbone=dict(
        arch='base',
        init_cfg=dict(checkpoint={{_base_.vmamba_weights.base}})),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
