# ImageNet-1K classification, VMamba-S[s2l15], official recipe (see
# vmamba_t_in1k.py).
_base_ = ['./vmamba_t_in1k.py']

model = dict(backbone=dict(arch='small'))
