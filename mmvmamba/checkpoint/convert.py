"""Conversion between the checkpoint layouts: pure functions, state dict
(or whole checkpoint) in, state dict out.

Layouts: *official* = the official classification model (``layers.*``,
``classifier.norm.*``, ``classifier.head.*``); *backbone* = :class:`VMamba`
(``layers.*``, ``outnorm{i}.*``); *mmpretrain* = an ``ImageClassifier`` with a
VMamba backbone, ``GlobalAveragePooling`` neck and ``LinearClsHead``
(``backbone.*``, ``head.fc.*``). The official classifier is
``classifier.norm → avgpool → head``, which is exactly ``outnorm3 → GAP → fc``.

One pipeline, :func:`split_weights`, reads every supported file (official
files with ``model``/``model_ema`` and their legacy v0 names, OpenMMLab
files with ``state_dict`` and a ``backbone.`` prefix, DDP ``module.``
prefixes, bare state dicts) into a backbone state dict and a classification
head; :func:`to_layout` writes either layout from it.
"""
import re
from collections import OrderedDict
from typing import Any, Dict, Optional, Tuple

from torch import Tensor

from .errors import CheckpointContentError, bounded_repr, fmt_keys

__all__ = [
    'LAYOUTS', 'StateDict', 'extract_state_dict', 'strip_prefix',
    'convert_legacy_keys', 'official_to_backbone', 'official_to_mmpretrain',
    'split_weights', 'to_layout', 'to_backbone_state_dict', 'is_official'
]

StateDict = Dict[str, Tensor]
LAYOUTS = ('backbone', 'mmpretrain', 'official')


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())


def is_official(ckpt: Any) -> bool:
    """An official VMamba release file (weights under ``model``)."""
    return isinstance(ckpt, dict) and isinstance(ckpt.get('model'), dict)


def _tensors(weights: dict, where: str) -> StateDict:
    bad = [k for k in weights if not isinstance(k, str)]
    if bad:
        raise CheckpointContentError(
            f'the weights under {where} have keys that are not names: '
            f'{bounded_repr(bad[:3], 160)}; a state dict maps names to '
            'tensors')
    return OrderedDict(
        (k, v) for k, v in weights.items() if isinstance(v, Tensor))


def extract_state_dict(ckpt: Any, use_ema: bool = False) -> StateDict:
    """The weights of a checkpoint: ``model_ema`` (if ``use_ema``),
    ``model`` (official), ``state_dict`` (OpenMMLab) or a bare state dict."""
    if not isinstance(ckpt, dict):
        raise CheckpointContentError(
            f'the checkpoint is a {type(ckpt).__name__}, expected a dict '
            '(official files hold model/model_ema, OpenMMLab files '
            'state_dict)')
    top = fmt_keys(sorted(ckpt, key=str) if all(
        isinstance(k, str) for k in ckpt) else list(ckpt), 12)
    order = (['model_ema'] if use_ema else []) + ['model', 'state_dict']
    if use_ema and 'model_ema' not in ckpt:
        raise CheckpointContentError(
            f"use_ema=True but the checkpoint has no 'model_ema' (top-level "
            f'keys: {top})')
    for key in order:
        if key in ckpt and isinstance(ckpt[key], dict):
            return _tensors(ckpt[key], repr(key))
    if _is_state_dict(ckpt):
        return OrderedDict(ckpt)
    raise CheckpointContentError(
        "no weights found in the checkpoint: expected 'model', 'model_ema' "
        f"or 'state_dict' (top-level keys: {top}) or a bare state dict")


def strip_prefix(state_dict: StateDict, prefix: str) -> StateDict:
    """Keep only keys starting with ``prefix`` and remove it."""
    return OrderedDict((k[len(prefix):], v) for k, v in state_dict.items()
                       if k.startswith(prefix))


# legacy (Jan 2024) official names → current names (spec §2.2)
_LEGACY_RULES = [
    (re.compile(r'^patch_embed\.proj\.'), 'patch_embed.0.'),
    (re.compile(r'^patch_embed\.norm\.'), 'patch_embed.2.'),
    (re.compile(r'(^layers\.\d+\.blocks\.\d+\.)ln_1\.'), r'\1norm.'),
    (re.compile(r'(^layers\.\d+\.blocks\.\d+\.)self_attention\.'), r'\1op.'),
    (re.compile(r'^norm\.'), 'classifier.norm.'),
    (re.compile(r'^head\.'), 'classifier.head.'),
]


def convert_legacy_keys(state_dict: StateDict) -> StateDict:
    """Rename legacy v0 keys to the current official names (idempotent)."""
    out = OrderedDict()
    for k, v in state_dict.items():
        for pattern, repl in _LEGACY_RULES:
            k = pattern.sub(repl, k)
        out[k] = v
    return out


def official_to_backbone(state_dict: StateDict) -> StateDict:
    """Official classification names → :class:`VMamba` names.

    ``classifier.norm`` becomes ``outnorm3`` (the same LayerNorm on the last
    stage); ``classifier.head`` is dropped.
    """
    return split_weights(state_dict)[0]


def official_to_mmpretrain(state_dict: StateDict) -> StateDict:
    """Official classification names → mmpretrain ``ImageClassifier`` names
    (``backbone.*`` with ``outnorm3``, ``head.fc.*``)."""
    return to_layout(state_dict, 'mmpretrain')


def split_weights(ckpt: Any,
                  use_ema: bool = False,
                  prefix: Optional[str] = None) -> Tuple[StateDict, StateDict]:
    """(backbone state dict, classification head) of any supported
    checkpoint or state dict: weights extracted, a DDP ``module.`` prefix
    and an OpenMMLab ``backbone.`` prefix (or ``prefix``) stripped (necks
    and detection/segmentation heads are dropped; an mmpretrain
    ``head.fc`` is kept), legacy v0 names renamed, ``classifier.norm`` →
    ``outnorm3``. The head is ``{'weight', 'bias'}`` or empty."""
    sd = ckpt if _is_state_dict(ckpt) else extract_state_dict(ckpt, use_ema)
    if sd and all(k.startswith('module.') for k in sd):
        sd = strip_prefix(sd, 'module.')
    head = OrderedDict()
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        inner = strip_prefix(sd, prefix)
        if not inner:
            raise CheckpointContentError(
                f'no checkpoint key starts with prefix {prefix!r} (first '
                f'keys: {fmt_keys(sd, 4)})')
        sd = inner
    elif any(k.startswith('backbone.') for k in sd):
        head = strip_prefix(sd, 'head.fc.')  # an mmpretrain LinearClsHead
        sd = strip_prefix(sd, 'backbone.')
    backbone = OrderedDict()
    for k, v in convert_legacy_keys(sd).items():
        if k.startswith('classifier.norm.'):
            backbone['outnorm3.' + k[len('classifier.norm.'):]] = v
        elif k.startswith('classifier.head.'):
            head[k[len('classifier.head.'):]] = v
        elif not k.startswith('classifier.'):
            backbone[k] = v
    return backbone, head


def to_layout(ckpt: Any,
              layout: str,
              use_ema: bool = False,
              prefix: Optional[str] = None) -> StateDict:
    """Any supported checkpoint → the state dict of ``layout``
    (``'backbone'``, ``'mmpretrain'`` or ``'official'``)."""
    if layout not in LAYOUTS:
        raise ValueError(f'unknown layout {layout!r}; expected one of '
                         f'{LAYOUTS}')
    backbone, head = split_weights(ckpt, use_ema, prefix)
    if layout == 'backbone':
        return backbone
    if layout == 'mmpretrain':
        out = OrderedDict(('backbone.' + k, v) for k, v in backbone.items())
        out.update(('head.fc.' + k, v) for k, v in head.items())
        return out
    out = OrderedDict()
    for k, v in backbone.items():
        if k.startswith('outnorm3.'):
            out['classifier.norm.' + k[len('outnorm3.'):]] = v
        elif not k.startswith('outnorm'):  # the official model has no others
            out[k] = v
    out.update(('classifier.head.' + k, v) for k, v in head.items())
    return out


def to_backbone_state_dict(ckpt: Any,
                           use_ema: bool = False,
                           prefix: Optional[str] = None) -> StateDict:
    """Any supported checkpoint → :class:`VMamba` state dict."""
    return to_layout(ckpt, 'backbone', use_ema, prefix)
