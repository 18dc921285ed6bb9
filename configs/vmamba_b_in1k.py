# ImageNet-1K classification, VMamba-B[s2l15], official recipe (see
# vmamba_t_in1k.py).
_base_ = ['./vmamba_t_in1k.py']

model = dict(
    backbone=dict(arch='base', drop_path_rate=0.6),
    head=dict(in_channels=1024))
