"""Safe loading and key conversion of VMamba checkpoints.

Checkpoints are untrusted input. :func:`safe_load` first tries PyTorch's
``weights_only`` loader; files that carry other pickled objects (official
VMamba files hold a yacs ``CfgNode``, MMEngine files a message hub) are read by
a restricted unpickler that builds only PyTorch's allow-listed types and turns
every other class or function into an inert :class:`PickledObject` that is
never imported, called or executed.

Key conversions are pure functions (state dict in, state dict out), used by
``VMamba.init_weights`` and by ``tools/convert_checkpoint.py``.

Names: *official* = the official classification model (``layers.*``,
``classifier.norm.*``, ``classifier.head.*``); *backbone* = :class:`VMamba`
(``layers.*``, ``outnorm{i}.*``); *mmpretrain* = an ``ImageClassifier`` with a
VMamba backbone, ``GlobalAveragePooling`` neck and ``LinearClsHead``
(``backbone.*``, ``head.fc.*``). The official classifier is
``classifier.norm → avgpool → head``, which is exactly ``outnorm3 → GAP → fc``.
"""
import math
import os
import os.path as osp
import pickle
import re
import time
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import unquote, urlparse

import torch
from mmengine.logging import print_log
from torch import Tensor

__all__ = [
    'PickledObject', 'safe_load', 'extract_state_dict', 'convert_legacy_keys',
    'strip_prefix', 'official_to_backbone', 'official_to_mmpretrain',
    'to_backbone_state_dict', 'infer_arch', 'load_state_dict_checked',
    'load_pretrained', 'CheckpointMismatchError', 'CheckpointDownloadError',
    'cached_download', 'wait_for_file'
]

StateDict = Dict[str, Tensor]

# --------------------------------------------------------------------------
# Safe unpickling
# --------------------------------------------------------------------------


class PickledObject(dict):
    """Inert stand-in for an object of a class we refuse to import.

    Keeps what the pickle said (constructor args, state, items) for
    inspection; nothing of the original class is ever run. Subclasses
    ``dict`` so dict-like objects (yacs ``CfgNode``) keep their items.
    """

    pickled_module = ''
    pickled_name = ''

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()
        self.args, self.kwargs, self.state, self.list_items = args, kwargs, \
            None, []

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def append(self, item: Any) -> None:
        self.list_items.append(item)

    def extend(self, items: Any) -> None:
        self.list_items.extend(items)

    def __call__(self, *args, **kwargs) -> 'PickledObject':
        # A pickle may call the result of a REDUCE; stay inert.
        return _placeholder(self.pickled_module,
                            self.pickled_name + '()')(*args, **kwargs)

    def __reduce__(self):
        return (dict, (dict(self), ))

    def __repr__(self) -> str:
        return (f'<PickledObject {self.pickled_module}.{self.pickled_name} '
                '(not loaded)>')


_PLACEHOLDERS: Dict[Tuple[str, str], type] = {}


def _placeholder(module: str, name: str) -> type:
    key = (module, name)
    if key not in _PLACEHOLDERS:
        _PLACEHOLDERS[key] = type(
            re.sub(r'\W', '_', name) or 'Object', (PickledObject, ),
            dict(pickled_module=module, pickled_name=name))
    return _PLACEHOLDERS[key]


def _allowed_globals() -> Dict[str, Any]:
    """PyTorch's own weights_only allow-list (tensors, dtypes, storages)."""
    allowed: Dict[str, Any] = {'collections.OrderedDict': OrderedDict}
    try:
        from torch._weights_only_unpickler import _get_allowed_globals
        allowed.update(_get_allowed_globals())
    except Exception:  # private API; the minimal list still loads tensors
        allowed['torch._utils._rebuild_tensor_v2'] = \
            torch._utils._rebuild_tensor_v2
        allowed['torch._utils._rebuild_parameter'] = \
            torch._utils._rebuild_parameter
    for obj in torch.serialization.get_safe_globals():
        if isinstance(obj, tuple):
            obj, name = obj
        else:
            name = f'{obj.__module__}.{obj.__qualname__}'
        allowed[name] = obj
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):

    _allowed: Optional[Dict[str, Any]] = None

    def find_class(self, module: str, name: str) -> Any:
        if _RestrictedUnpickler._allowed is None:
            _RestrictedUnpickler._allowed = _allowed_globals()
        obj = self._allowed.get(f'{module}.{name}')
        return obj if obj is not None else _placeholder(module, name)


class _RestrictedPickleModule:
    """The ``pickle_module`` protocol of ``torch.load``."""
    __name__ = 'mmvmamba_restricted_pickle'
    Unpickler = _RestrictedUnpickler

    @staticmethod
    def load(f, **kwargs) -> Any:
        return _RestrictedUnpickler(f, **kwargs).load()


class CheckpointDownloadError(RuntimeError):
    """A checkpoint URL could not be fetched; the message says what to do."""


def wait_for_file(path: str, timeout: float) -> None:
    """Block until rank 0 has written ``path`` (other ranks of a launch)."""
    start = time.time()
    while not osp.exists(path):
        if time.time() - start > timeout:
            raise TimeoutError(f'timed out after {timeout:.0f} s waiting for '
                               f'{path!r} from rank 0')
        time.sleep(1)


def cached_download(url: str) -> str:
    """Download ``url`` into the torch hub cache once; returns the file.

    ``torch.hub.download_url_to_file`` writes to a temporary file and renames
    it, so a failed download leaves nothing half-written.
    """
    cache_dir = osp.join(torch.hub.get_dir(), 'checkpoints')
    name = osp.basename(unquote(urlparse(url).path))
    dst = osp.join(cache_dir, name)
    if osp.isfile(dst):
        return dst
    if int(os.environ.get('LOCAL_RANK', 0)) != 0:
        wait_for_file(dst, 3600)
        return dst
    os.makedirs(cache_dir, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, dst, progress=True)
    except Exception as e:  # network errors come in many types
        raise CheckpointDownloadError(
            f'could not download the checkpoint {name!r} from {url} '
            f'({type(e).__name__}: {e}).\n'
            f'  -> download it on a machine with internet access and put it '
            f'at {dst!r}, or pass a local copy with --cfg-options '
            '<path.to.init_cfg>.checkpoint=/path/to/file.pth') from e
    return dst


def _local_file(filename: str) -> str:
    if filename.startswith(('http://', 'https://')):
        return cached_download(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file not found: {filename!r}')
    return filename


def safe_load(filename: str, map_location: Any = 'cpu') -> Any:
    """Load a checkpoint file (path or http(s) URL) without executing it.

    Unknown pickled classes become :class:`PickledObject` placeholders.
    """
    local = _local_file(filename)
    try:
        return torch.load(local, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        pass  # holds non-tensor objects: retry with placeholders
    return torch.load(
        local,
        map_location=map_location,
        weights_only=False,
        pickle_module=_RestrictedPickleModule)


# --------------------------------------------------------------------------
# Pure key conversions
# --------------------------------------------------------------------------


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())


def extract_state_dict(ckpt: Any, use_ema: bool = False) -> StateDict:
    """The weights of a checkpoint: ``model_ema`` (if ``use_ema``),
    ``model`` (official), ``state_dict`` (OpenMMLab) or a bare state dict."""
    if not isinstance(ckpt, dict):
        raise TypeError(f'checkpoint is a {type(ckpt).__name__}, expected a '
                        'dict')
    order = (['model_ema'] if use_ema else []) + ['model', 'state_dict']
    if use_ema and 'model_ema' not in ckpt:
        raise KeyError(f'use_ema=True but the checkpoint has no '
                       f"'model_ema' (top-level keys: {sorted(ckpt)})")
    for key in order:
        if key in ckpt and isinstance(ckpt[key], dict):
            return OrderedDict(
                (k, v) for k, v in ckpt[key].items() if isinstance(v, Tensor))
    if _is_state_dict(ckpt):
        return OrderedDict(ckpt)
    raise KeyError("no weights found in the checkpoint: expected 'model', "
                   f"'model_ema' or 'state_dict' (top-level keys: "
                   f'{sorted(map(str, ckpt))}) or a bare state dict')


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
    out = OrderedDict()
    for k, v in state_dict.items():
        if k.startswith('classifier.norm.'):
            out['outnorm3.' + k[len('classifier.norm.'):]] = v
        elif not k.startswith('classifier.'):
            out[k] = v
    return out


def official_to_mmpretrain(state_dict: StateDict) -> StateDict:
    """Official classification names → mmpretrain ``ImageClassifier`` names
    (``backbone.*`` with ``outnorm3``, ``head.fc.*``)."""
    out = OrderedDict(('backbone.' + k, v)
                      for k, v in official_to_backbone(state_dict).items())
    for k, v in state_dict.items():
        if k.startswith('classifier.head.'):
            out['head.fc.' + k[len('classifier.head.'):]] = v
    return out


def to_backbone_state_dict(ckpt: Any,
                           use_ema: bool = False,
                           prefix: Optional[str] = None) -> StateDict:
    """Any supported checkpoint → :class:`VMamba` state dict.

    Handles official classification files (``model``/``model_ema``), legacy
    v0 names, OpenMMLab files (``state_dict`` with a ``backbone.`` prefix;
    necks and heads are dropped), DDP ``module.`` prefixes and bare dicts.
    """
    sd = ckpt if _is_state_dict(ckpt) else extract_state_dict(ckpt, use_ema)
    if all(k.startswith('module.') for k in sd):
        sd = strip_prefix(sd, 'module.')
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        sd = strip_prefix(sd, prefix)
        if not sd:
            raise KeyError(f'no checkpoint key starts with prefix {prefix!r}')
    elif any(k.startswith('backbone.') for k in sd):
        sd = strip_prefix(sd, 'backbone.')
    return official_to_backbone(convert_legacy_keys(sd))


# --------------------------------------------------------------------------
# Checked loading
# --------------------------------------------------------------------------


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


def _model_arch(model) -> Dict[str, Any]:
    cfg = dict(getattr(model, 'arch_settings', {}))
    if not cfg:
        return cfg
    cfg['depths'] = tuple(cfg['depths'])
    if not isinstance(cfg['dims'], int):
        cfg['dims'] = tuple(cfg['dims'])
    from mmvmamba.models.vmamba import FORWARD_TYPES
    cfg['forward_type'] = ('v0' if FORWARD_TYPES.get(cfg['forward_type']) else
                           'v05_noz')
    cfg['ssm_ratio'] = float(cfg['ssm_ratio'])
    cfg['mlp_ratio'] = float(cfg['mlp_ratio'])
    return cfg


def _mismatch_hint(model, state_dict: StateDict) -> str:
    implied = infer_arch(state_dict)
    if not implied:
        return ('the checkpoint has no VMamba keys (layers.*.blocks.*); is '
                'it a VMamba checkpoint, or does it need prefix=...?')
    own = _model_arch(model)
    diffs = [
        f'{k}={v!r} (model: {own[k]!r})' for k, v in implied.items()
        if k in own and own[k] != v
    ]
    from mmvmamba.models.vmamba import ARCH_SETTINGS
    presets = []
    for name, preset in ARCH_SETTINGS.items():
        preset = dict(preset, depths=tuple(preset['depths']))
        if all(preset.get(k) == v for k, v in implied.items() if k in preset):
            presets.append(name)
    msg = 'the checkpoint implies ' + (', '.join(diffs) if diffs else
                                       'the same arguments as the model')
    if presets:
        msg += f"; it matches arch='{presets[0]}'"
    return msg


class CheckpointMismatchError(RuntimeError):
    """A checkpoint does not fit the configured model."""


def _fmt(keys: List[str], limit: int = 8) -> str:
    shown = ', '.join(keys[:limit])
    return shown + (f', ... (+{len(keys) - limit})'
                    if len(keys) > limit else '')


def _core_shape(t: Tensor) -> tuple:
    # (out, in, 1, 1) conv-shaped Linear2d weights equal (out, in) ones
    shape = tuple(t.shape)
    while len(shape) > 2 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def load_state_dict_checked(model: torch.nn.Module,
                            state_dict: StateDict,
                            source: str = 'checkpoint',
                            logger: Any = 'current') -> Dict[str, list]:
    """Load a backbone state dict into ``model``; raise on any mismatch.

    Allowed: missing ``outnorm{i}`` when the checkpoint has none besides the
    one derived from the classifier norm (classification checkpoints; they
    keep their fresh LayerNorm init as in the official code) and extra
    ``outnorm{i}`` for indices the model does not output.
    """
    own = model.state_dict()
    sd_outnorms = {k for k in state_dict if k.startswith('outnorm')}
    from_classifier = sd_outnorms <= {'outnorm3.weight', 'outnorm3.bias'}
    missing, unexpected, mis_shaped, fresh, ignored = [], [], [], [], []
    for k in own:
        if k in state_dict:
            if _core_shape(state_dict[k]) != _core_shape(own[k]):
                mis_shaped.append(f'{k} {tuple(state_dict[k].shape)} vs '
                                  f'{tuple(own[k].shape)}')
        elif k.endswith('num_batches_tracked') or (k.startswith('outnorm')
                                                   and from_classifier):
            fresh.append(k)
        else:
            missing.append(k)
    for k in state_dict:
        if k not in own:
            (ignored if k.startswith('outnorm') else unexpected).append(k)
    if missing or unexpected or mis_shaped:
        parts = [f'{source} does not fit {type(model).__name__}:']
        if missing:
            parts.append(f'{len(missing)} missing keys: {_fmt(missing)}')
        if unexpected:
            parts.append(f'{len(unexpected)} unexpected keys: '
                         f'{_fmt(unexpected)}')
        if mis_shaped:
            parts.append(f'{len(mis_shaped)} mis-shaped keys (checkpoint vs '
                         f'model): {_fmt(mis_shaped, 4)}')
        parts.append('Hint: ' + _mismatch_hint(model, state_dict) + '.')
        raise CheckpointMismatchError('\n  '.join(parts))
    sd = OrderedDict((k, v.reshape(own[k].shape) if k in own else v)
                     for k, v in state_dict.items() if k in own)
    model.load_state_dict(sd, strict=False)
    print_log(
        f'loaded {len(sd)} tensors from {source}' +
        (f'; kept fresh init for {_fmt(fresh)}' if fresh else '') +
        (f'; ignored {_fmt(ignored)}' if ignored else ''),
        logger=logger)
    return dict(loaded=list(sd), fresh=fresh, ignored=ignored)


def load_pretrained(model: torch.nn.Module,
                    checkpoint: str,
                    prefix: Optional[str] = None,
                    use_ema: bool = False,
                    map_location: Any = 'cpu',
                    logger: Any = 'current') -> Dict[str, list]:
    """Safely load ``checkpoint`` (path/URL) into a :class:`VMamba`.

    Raises :class:`CheckpointMismatchError` with a summary when it does not
    fit; never leaves the model silently at random init.
    """
    ckpt = safe_load(checkpoint, map_location)
    raw = ckpt if _is_state_dict(ckpt) else extract_state_dict(ckpt, use_ema)
    dropped = [
        k for k in convert_legacy_keys(raw)
        if k.startswith(('classifier.head.', 'head.'))
    ]
    if dropped:
        print_log(
            f'{checkpoint}: not loading the classification head '
            f'({_fmt(dropped, 2)})',
            logger=logger)
    sd = to_backbone_state_dict(raw, prefix=prefix)
    return load_state_dict_checked(model, sd, source=checkpoint, logger=logger)
