"""The checked load: does a state dict fit a model, and if not, what does
it fit?

:func:`compare` lists the missing, unexpected and mis-shaped keys;
:func:`infer_arch` reads the VMamba arguments a state dict implies and
:func:`arch_hint` turns them into the hint (the arguments that differ, the
preset that matches). Presets come in as data (``presets=``, or the
``arch_presets`` attribute of the model), so this module imports no model.
:func:`check_weights` refuses NaN/Inf and tensors without data. Every entry
point (``init_cfg=Pretrained``, ``tools/test.py``, ``tools/train.py``'s
``load_from`` and ``--resume``, the inferencers, the converter) goes
through these functions.
"""
import math
import re
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple

import torch
from mmengine.logging import print_log
from torch import Tensor

from .errors import (CheckpointContentError, CheckpointFormatError,
                     CheckpointMismatchError,
                     NonFiniteWeightsError, fmt_keys)
from .convert import StateDict, split_weights
from .unpickle import safe_load

__all__ = [
    'infer_arch', 'preset_of', 'arch_hint', 'compare', 'Comparison',
    'check_weights', 'check_state_dict', 'load_state_dict_checked',
    'pretrained_state_dict', 'load_pretrained'
]

Presets = Mapping[str, Mapping[str, Any]]


def infer_arch(state_dict: StateDict) -> Dict[str, Any]:
    """The VMamba arguments a (backbone or official) state dict implies."""
    sd = state_dict
    info: Dict[str, Any] = {}
    blocks: Dict[int, set] = {}
    for k in sd:
        m = re.match(r'layers\.(\d+)\.blocks\.(\d+)\.', k)
        if m:
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    if blocks:
        info['depths'] = tuple(
            len(blocks.get(i, ())) for i in range(max(blocks) + 1))
    dims = []
    for i in sorted(blocks):
        w = sd.get(f'layers.{i}.blocks.0.norm.weight',
                   sd.get(f'layers.{i}.blocks.0.norm2.weight'))
        if w is not None:
            dims.append(int(w.shape[0]))
    if dims:
        info['dims'] = (
            dims[0] if dims == [dims[0] * 2**i
                                for i in range(len(dims))] else tuple(dims))
    p = 'layers.0.blocks.0.'
    if p + 'op.A_logs' in sd and dims:
        Di = sd[p + 'op.A_logs'].shape[0] // 4
        info['ssm_d_state'] = int(sd[p + 'op.A_logs'].shape[1])
        info['ssm_ratio'] = Di / dims[0]
        R = int(sd[p + 'op.dt_projs_weight'].shape[-1])
        info['ssm_dt_rank'] = 'auto' if R == math.ceil(dims[0] / 16) else R
        gated = sd[p + 'op.in_proj.weight'].shape[0] == 2 * Di
        info['forward_type'] = 'v0' if gated else 'v05_noz'
        info['ssm_conv_bias'] = p + 'op.conv2d.bias' in sd
    if dims:
        fc1 = sd.get(p + 'mlp.fc1.weight')
        info['mlp_ratio'] = 0.0 if fc1 is None else fc1.shape[0] / dims[0]
    if 'layers.0.downsample.reduction.weight' in sd:
        info['downsample_version'] = 'v1'
    elif 'layers.0.downsample.1.weight' in sd:
        k = sd['layers.0.downsample.1.weight'].shape[-1]
        info['downsample_version'] = {2: 'v2', 3: 'v3'}.get(k, f'k{k}')
    if 'patch_embed.0.weight' in sd:
        info['patchembed_version'] = ('v2' if 'patch_embed.5.weight' in sd else
                                      'v1')
    return info


def preset_of(implied: Mapping[str, Any],
              presets: Optional[Presets]) -> Optional[str]:
    """The first preset whose arguments agree with every implied one."""
    for name, preset in (presets or {}).items():
        preset = dict(preset, depths=tuple(preset['depths']))
        if implied and all(
                preset.get(k) == v for k, v in implied.items() if k in preset):
            return name
    return None


def arch_hint(state_dict: StateDict,
              own: StateDict,
              presets: Optional[Presets] = None) -> str:
    """What ``state_dict`` implies that the model (state dict ``own``)
    does not, and the preset it matches."""
    implied = infer_arch(state_dict)
    if not implied:
        return ('the checkpoint has no VMamba keys (layers.*.blocks.*); is '
                'it a VMamba checkpoint, or does it need prefix=...?')
    mine = infer_arch(own)
    diffs = [
        f'{k}={v!r} (model: {mine[k]!r})' for k, v in implied.items()
        if k in mine and mine[k] != v
    ]
    msg = 'the checkpoint implies ' + (', '.join(diffs) if diffs else
                                       'the same arguments as the model')
    preset = preset_of(implied, presets)
    if preset:
        msg += f"; it matches arch='{preset}'"
    return msg


def _core_shape(t: Any) -> tuple:
    # (out, in, 1, 1) conv-shaped Linear2d weights equal (out, in) ones
    shape = tuple(t.shape)
    while len(shape) > 2 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


class Comparison(NamedTuple):
    """Keys of a state dict against a model's (``own``)."""
    missing: List[str]
    unexpected: List[str]
    mis_shaped: List[str]  # 'key (checkpoint shape) vs (model shape)'

    def __bool__(self) -> bool:  # True when something does not fit
        return bool(self.missing or self.unexpected or self.mis_shaped)

    def lines(self, model: str = 'model') -> List[str]:
        out = []
        if self.mis_shaped:
            out.append(f'{len(self.mis_shaped)} mis-shaped keys (checkpoint '
                       f'vs {model}): {fmt_keys(self.mis_shaped, 4)}')
        if self.missing:
            out.append(f'{len(self.missing)} missing keys: '
                       f'{fmt_keys(self.missing)}')
        if self.unexpected:
            out.append(f'{len(self.unexpected)} unexpected keys: '
                       f'{fmt_keys(self.unexpected)}')
        return out


def compare(own: Mapping[str, Any],
            state_dict: Mapping[str, Any],
            optional=lambda key: key.endswith('num_batches_tracked')
            ) -> Comparison:
    """Missing, unexpected and mis-shaped keys of ``state_dict`` against the
    model state ``own`` (tensors, meta tensors: only shapes are read).
    ``optional(key)``: a model key the checkpoint may lack."""
    missing = [k for k in own if k not in state_dict and not optional(k)]
    unexpected = [k for k in state_dict if k not in own]
    mis_shaped = [
        f'{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}'
        for k in own
        if k in state_dict and _core_shape(state_dict[k]) != _core_shape(own[k])
    ]
    return Comparison(missing, unexpected, mis_shaped)


def check_weights(state_dict: Mapping[str, Tensor],
                  source: str,
                  allow_nonfinite: bool = False) -> None:
    """Refuse tensors without data (saved from the meta device) and, unless
    ``allow_nonfinite``, floating tensors holding NaN or Inf (every output
    of the model would be NaN); the message names them."""
    meta = [k for k, v in state_dict.items() if v.is_meta]
    if meta:
        raise CheckpointFormatError(
            f'{source} holds tensors without data (saved from the meta '
            f'device): {fmt_keys(meta, 4)}.\n  -> save the model after its '
            'weights are materialised (model.to_empty(device=...) and '
            'loaded), not a model built under torch.device("meta")')
    if allow_nonfinite:
        return
    bad = []
    for k, v in state_dict.items():
        if (v.is_floating_point() or v.is_complex()) and v.numel() and \
                not bool(torch.isfinite(v).all()):
            n = int((~torch.isfinite(v)).sum())
            bad.append(f'{k} ({n} of {v.numel()})')
    if bad:
        raise NonFiniteWeightsError(
            f'{source} holds NaN/Inf values in {len(bad)} tensors: '
            f'{fmt_keys(bad, 6)}; every output of the model would be NaN. '
            'The training that wrote it diverged or the file is damaged.\n'
            '  -> use an earlier checkpoint of that run; to load it anyway '
            "(to inspect it), pass allow_nonfinite=True (init_cfg), "
            '--allow-nonfinite (tools/test.py, tools/train.py, '
            'tools/convert_checkpoint.py)')


def _outnorm_optional(state_dict: StateDict):
    # classification checkpoints hold only outnorm3 (the classifier norm):
    # the model's other output norms keep their fresh init
    from_classifier = {k for k in state_dict if k.startswith('outnorm')
                       } <= {'outnorm3.weight', 'outnorm3.bias'}

    def optional(k: str) -> bool:
        return k.endswith('num_batches_tracked') or (k.startswith('outnorm')
                                                     and from_classifier)

    return optional


def check_state_dict(model: torch.nn.Module,
                     state_dict: StateDict,
                     source: str = 'checkpoint',
                     presets: Optional[Presets] = None,
                     allow_nonfinite: bool = False) -> Tuple[list, list]:
    """Raise :class:`CheckpointMismatchError` (keys and hint) unless the
    backbone state dict fits ``model`` (which may live on the meta device),
    and :class:`NonFiniteWeightsError` on NaN/Inf. Returns the model keys
    that keep their fresh init and the checkpoint keys that are ignored.

    Allowed: missing ``outnorm{i}`` when the checkpoint has none besides the
    one derived from the classifier norm (classification checkpoints; they
    keep their fresh LayerNorm init as in the official code) and extra
    ``outnorm{i}`` for indices the model does not output. ``presets``
    (default: the model's ``arch_presets``) name the preset a mismatching
    checkpoint fits.
    """
    own = model.state_dict()
    found = compare(own, state_dict, _outnorm_optional(state_dict))
    ignored = [k for k in found.unexpected if k.startswith('outnorm')]
    found = found._replace(
        unexpected=[k for k in found.unexpected if k not in ignored])
    if found:
        if presets is None:
            presets = getattr(model, 'arch_presets', None)
        raise CheckpointMismatchError('\n  '.join(
            [f'{source} does not fit {type(model).__name__}:'] +
            found.lines() +
            ['Hint: ' + arch_hint(state_dict, own, presets) + '.']))
    check_weights(state_dict, source, allow_nonfinite)
    return [k for k in own if k not in state_dict], ignored


def load_state_dict_checked(model: torch.nn.Module,
                            state_dict: StateDict,
                            source: str = 'checkpoint',
                            logger: Any = 'current',
                            presets: Optional[Presets] = None,
                            allow_nonfinite: bool = False) -> Dict[str, list]:
    """Load a backbone state dict into ``model`` after
    :func:`check_state_dict`; never leaves it silently at random init."""
    fresh, ignored = check_state_dict(model, state_dict, source, presets,
                                      allow_nonfinite)
    own = model.state_dict()
    sd = OrderedDict((k, v.reshape(own[k].shape))
                     for k, v in state_dict.items() if k in own)
    model.load_state_dict(sd, strict=False)
    print_log(
        f'loaded {len(sd)} tensors from {source}' +
        (f'; kept fresh init for {fmt_keys(fresh)}' if fresh else '') +
        (f'; ignored {fmt_keys(ignored)}' if ignored else ''),
        logger=logger)
    return dict(loaded=list(sd), fresh=fresh, ignored=ignored)


def pretrained_state_dict(checkpoint: str,
                          prefix: Optional[str] = None,
                          use_ema: bool = False,
                          map_location: Any = 'cpu',
                          logger: Any = 'current') -> StateDict:
    """The backbone state dict of ``checkpoint`` (path/URL), read safely;
    a classification head is dropped (and logged)."""
    ckpt = safe_load(checkpoint, map_location)
    try:
        backbone, head = split_weights(ckpt, use_ema, prefix)
    except CheckpointContentError as e:
        raise CheckpointContentError(f'{checkpoint}: {e}') from None
    if head and logger is not None:
        print_log(
            f'{checkpoint}: not loading the classification head '
            f'({fmt_keys(sorted(head), 2)})',
            logger=logger)
    return backbone


def load_pretrained(model: torch.nn.Module,
                    checkpoint: str,
                    prefix: Optional[str] = None,
                    use_ema: bool = False,
                    map_location: Any = 'cpu',
                    logger: Any = 'current',
                    presets: Optional[Presets] = None,
                    allow_nonfinite: bool = False) -> Dict[str, list]:
    """Safely load ``checkpoint`` (path/URL) into a :class:`VMamba`.

    Raises :class:`CheckpointMismatchError` with a summary when it does not
    fit and :class:`NonFiniteWeightsError` on NaN/Inf; never leaves the model
    silently at random init.
    """
    backbone = pretrained_state_dict(checkpoint, prefix, use_ema,
                                     map_location, logger)
    return load_state_dict_checked(
        model,
        backbone,
        source=checkpoint,
        logger=logger,
        presets=presets,
        allow_nonfinite=allow_nonfinite)
