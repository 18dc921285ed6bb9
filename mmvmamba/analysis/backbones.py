"""Build the backbones the analysis tools compare, from a short name or a config.

A *model spec* is one of:

* ``vmamba-t`` / ``vmamba-s`` / ``vmamba-b`` or ``vmamba:<arch>`` (any preset of
  ``mmvmamba.VMamba``, random init);
* ``swin-t``, ``swin-s``, ``swin-b``, ``convnext-t``, ``convnext-s``, ``convnext-b``,
  ``resnet50``, ``resnet101``: the comparison models of every benchmark
  (:data:`mmvmamba.analysis.bench.PEERS`, timm's implementations, random init;
  ``swin_t`` is ``swin-t``);
* ``timm:<model name>`` (any timm model, ``pretrained=False``, no download);
* a path to an OpenMMLab config (``.py``): its ``model`` is built in the config's
  ``default_scope``; with a checkpoint, the weights are loaded into the whole
  model (so ``backbone.`` keys match), then its ``backbone`` is used.

Every built model is wrapped in :class:`LastStage`, whose forward returns the
last stage's feature map as (B, C, h, w).
"""
import os.path as osp
from typing import Dict, Optional

from torch import Tensor, nn

from .bench import PEERS, model_key


__all__ = [
    'LastStage', 'build_last_stage', 'build_from_config', 'PEERS', 'spec_label'
]

VMAMBA_ARCHS: Dict[str, str] = {'t': 'tiny', 's': 'small', 'b': 'base'}


class LastStage(nn.Module):
    """Wraps a backbone so that forward returns its last map, (B, C, h, w)."""

    def __init__(self, backbone: nn.Module, timm_model: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.timm_model = timm_model

    def forward(self, x: Tensor) -> Tensor:
        if self.timm_model:
            # timm's own API for NCHW stage maps (NHWC models included)
            return self.backbone.forward_intermediates(
                x, indices=1, intermediates_only=True)[-1]
        out = self.backbone(x)
        if isinstance(out, (list, tuple)):
            out = out[-1]
        if not isinstance(out, Tensor) or out.dim() != 4:
            raise TypeError('expected the backbone to return a (B, C, h, w) '
                            f'map or a list of them, got {type(out)}')
        return out


def spec_label(spec: str) -> str:
    """A short plot label for a model spec."""
    if osp.isfile(spec):
        return osp.splitext(osp.basename(spec))[0]
    return spec.split(':', 1)[-1] if spec.startswith('timm:') else spec


def build_from_config(path: str,
                      checkpoint: Optional[str] = None) -> nn.Module:
    """The full ``model`` of an OpenMMLab config, SyncBN reverted, no init.

    Pretrained ``init_cfg`` weights are not fetched (``init_weights`` is not
    called). ``checkpoint`` goes to a VMamba backbone through
    :func:`mmvmamba.checkpoint.load_pretrained` (official or mm files, only the
    backbone's weights), otherwise into the whole model.
    """
    import importlib

    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(path)
    registry = MODELS
    scope = cfg.get('default_scope', None)
    if scope is not None:
        init_default_scope(scope)
        # build in the downstream registry (e.g. mmdet's) so its types resolve
        registry = importlib.import_module(f'{scope}.registry').MODELS
    model = registry.build(cfg.model)
    if checkpoint:
        from mmvmamba.models.vmamba import VMamba
        backbone = getattr(model, 'backbone', model)
        if isinstance(backbone, VMamba):
            # official, legacy and mm checkpoints; safe unpickling; fails
            # loudly when the weights do not fit the backbone
            from mmvmamba.checkpoint import load_pretrained
            load_pretrained(backbone, checkpoint)
        else:
            from mmengine.runner import load_checkpoint

            # MMEngine's loader is routed to mmvmamba.checkpoint.safe_load
            # (weights-only; registered on ``import mmvmamba``)
            load_checkpoint(model, checkpoint, map_location='cpu')
    return revert_sync_batchnorm(model)


def build_last_stage(spec: str,
                     checkpoint: Optional[str] = None,
                     img_size: Optional[int] = None,
                     vmamba_kwargs: Optional[dict] = None) -> LastStage:
    """Build the backbone named by ``spec`` (see the module docstring).

    Args:
        spec: model spec.
        checkpoint: weights for a config spec (ignored by presets).
        img_size: input size, for timm models that fix it at construction.
        vmamba_kwargs: extra ``mmvmamba.VMamba`` arguments for presets.
    """
    from mmengine.registry import MODELS

    import mmvmamba  # noqa: F401  (registers the mmvmamba scope)
    if osp.isfile(spec):
        model = build_from_config(spec, checkpoint)
        return LastStage(getattr(model, 'backbone', model))
    if checkpoint:
        raise ValueError(f'--checkpoint needs a config file spec, got {spec!r}'
                         '; pass the config of the checkpoint instead')
    key = model_key(spec.lower())
    if key in PEERS:
        spec = key = 'timm:' + PEERS[key]
    if key.startswith('vmamba'):
        arch = key[len('vmamba'):].lstrip(':-_')
        arch = VMAMBA_ARCHS.get(arch, arch) or 'tiny'
        cfg = dict(type='mmvmamba.VMamba', arch=arch, out_indices=(3, ))
        cfg.update(vmamba_kwargs or {})
        return LastStage(MODELS.build(cfg))
    if key.startswith('timm:'):
        import timm
        name = spec.split(':', 1)[1]
        kwargs = dict(pretrained=False, num_classes=0)
        if img_size is not None:
            try:
                return LastStage(
                    timm.create_model(name, img_size=img_size, **kwargs),
                    timm_model=True)
            except TypeError:  # models without a fixed input size
                pass
        return LastStage(timm.create_model(name, **kwargs), timm_model=True)
    raise ValueError(
        f'unknown model spec {spec!r}; expected vmamba-t/-s/-b, '
        f'vmamba:<arch>, one of {sorted(PEERS)}, timm:<name> or a config '
        'file path')
