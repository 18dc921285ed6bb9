"""torch.hub entry points: the VMamba backbones of the official release.

    model = torch.hub.load('REPO_OR_FOLDER', 'vmamba_tiny', pretrained=True)
    features = model(images)  # (B, C_i, H/4..H/32, W/4..W/32), i = 0..3

``pretrained=True`` loads the official ImageNet-1k weights listed in
``model-index.yml`` (downloaded once into the torch hub cache); a path or URL
loads that file instead. Either way through mmvmamba's weights-only loader
(nothing pickled in the file runs) and checked against the model: a file
that does not fit stops with the missing and unexpected keys. Other keyword
arguments go to :class:`mmvmamba.models.VMamba` (``out_indices``,
``backend``, ``drop_path_rate``, ...).
"""
dependencies = ['torch', 'mmengine', 'timm', 'yaml']

#: entry point -> (VMamba preset, model-index.yml entry of its weights)
_MODELS = {
    'vmamba_tiny': ('tiny', 'vmamba_t_in1k'),
    'vmamba_small': ('small', 'vmamba_s_in1k'),
    'vmamba_base': ('base', 'vmamba_b_in1k'),
}


def _vmamba(entry: str, pretrained: 'bool | str', **kwargs):
    from mmvmamba.apis.model_zoo import find_model
    from mmvmamba.checkpoint import load_pretrained
    from mmvmamba.models import VMamba
    arch, zoo_name = _MODELS[entry]
    if pretrained is True:
        pretrained = find_model(zoo_name)['Weights']
    model = VMamba(arch=arch, **kwargs)
    if pretrained:
        load_pretrained(model, pretrained)
    return model


def vmamba_tiny(pretrained: 'bool | str' = False, **kwargs):
    """VMamba-T[s1l8] backbone (official ImageNet-1k top-1 82.6)."""
    return _vmamba('vmamba_tiny', pretrained, **kwargs)


def vmamba_small(pretrained: 'bool | str' = False, **kwargs):
    """VMamba-S[s2l15] backbone (official ImageNet-1k top-1 83.6)."""
    return _vmamba('vmamba_small', pretrained, **kwargs)


def vmamba_base(pretrained: 'bool | str' = False, **kwargs):
    """VMamba-B[s2l15] backbone (official ImageNet-1k top-1 83.9)."""
    return _vmamba('vmamba_base', pretrained, **kwargs)
