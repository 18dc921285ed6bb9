# Mask R-CNN FPN 3x multi-scale on COCO with VMamba-S[s2l15].
_base_ = ['./maskrcnn_vmamba_t_ms-3x_coco.py']

pretrained = 'https://github.com/MzeroMiko/VMamba/releases/download/%23v2cls/vssm_small_0229_ckpt_epoch_222.pth'  # noqa

model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
