# UperNet on ADE20K 512x512, 160k iterations, VMamba-S[s2l15].
_base_ = ['./upernet_vmamba_t_ade20k-512x512-160k.py']

pretrained = 'https://github.com/MzeroMiko/VMamba/releases/download/%23v2cls/vssm_small_0229_ckpt_epoch_222.pth'  # noqa

model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
