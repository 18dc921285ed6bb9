"""Inference on one's own images with a VMamba detector, segmentor or
classifier, through the downstream libraries' own inferencers.

:func:`build_inferencer` returns mmdet's ``DetInferencer``, mmseg's
``MMSegInferencer`` or mmpretrain's ``ImageClassificationInferencer`` for a
config, with weights that were

* read once, without executing pickled code
  (:func:`mmvmamba.checkpoint.safe_load`), and handed to the inferencer
  already loaded,
* converted when they are an official VMamba classification file, and
* checked against the config's model before it is built: weights of another
  task, of another VMamba variant, or of another head raise a
  :class:`~mmvmamba.cli.preflight.PreflightError` that names the file and
  the fix (the libraries would load them non-strictly, with a warning, and
  predict garbage).

:func:`run_image_demo` (``tools/image_demo.py``) checks every input image
first, runs the inferencer into a temporary folder beside ``out_dir`` and
moves the drawn predictions (``vis/``) and the predictions (``preds/``) into
place only when all images succeeded.
"""
import copy
import importlib
import json
import os
import os.path as osp
import re
import shutil
import tempfile
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Dict, Iterator, List, Optional, Tuple

import cv2
import numpy as np
import torch
from mmengine.config import Config
from mmengine.fileio import list_dir_or_file

from mmvmamba.cli.preflight import (PreflightError, downstream_of,
                                    drop_pretrained, load_config)
from .model_zoo import REPO_ROOT, find_model, load_model_zoo

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.ppm', '.pgm', '.tif',
                  '.tiff', '.webp')

#: what a config of each scope builds, and the state-dict prefixes that only
#: a model of that scope has
_WHAT = {
    'mmdet': 'a detector (mmdet)',
    'mmseg': 'a semantic segmentor (mmseg)',
    'mmpretrain': 'an image classifier (mmpretrain)',
}
_HEAD_PREFIXES = (
    ('mmdet', ('rpn_head.', 'roi_head.', 'bbox_head.')),
    ('mmseg', ('decode_head.', 'auxiliary_head.')),
    ('mmpretrain', ('head.', )),
)
_URL_PREFIXES = ('http://', 'https://')

# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------


def list_images(path: str) -> List[str]:
    """The image files of ``path`` (a file, or a folder: its images, not
    those of sub-folders), each checked to decode; raises
    :class:`PreflightError` naming the first bad one."""
    import mmcv
    if not osp.exists(path):
        raise PreflightError(
            f'input {path!r} does not exist; pass an image file or a folder '
            'of images')
    if osp.isdir(path):
        files = sorted(
            osp.join(path, f)
            for f in list_dir_or_file(path, list_dir=False)
            if f.lower().endswith(IMG_EXTENSIONS))
        if not files:
            raise PreflightError(
                f'folder {path!r} holds no images (looked for '
                f'{", ".join(IMG_EXTENSIONS)} files directly in it, not in '
                'sub-folders); put images there or pass an image file')
    else:
        files = [path]
    stems: Dict[str, str] = {}
    for f in files:
        stem = osp.splitext(osp.basename(f))[0]
        if stem in stems:
            raise PreflightError(
                f'images {stems[stem]!r} and {f!r} would get the same output '
                f'names ({stem}.*); rename one of them')
        stems[stem] = f
        try:
            img = mmcv.imread(f)
        except Exception as e:  # unreadable file, odd formats
            img, why = None, f' ({type(e).__name__}: {e})'
        else:
            why = ''
        if img is None or img.size == 0:
            raise PreflightError(
                f'cannot read image {f!r}: not a decodable image (empty, '
                f'truncated or not an image format OpenCV reads){why}. Fix: '
                'replace it with a valid JPEG/PNG file or remove it from the '
                'input; nothing was written')
    return files


# --------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------


def read_checkpoint(weights: str) -> Any:
    """The checkpoint at ``weights`` (path or URL), read with
    :func:`~mmvmamba.checkpoint.safe_load`; every way it can fail (absent,
    a folder, not a checkpoint, damaged, crafted, not downloadable) is a
    :class:`PreflightError` that names the file and the fix."""
    from mmvmamba.checkpoint import (CheckpointDownloadError,
                                     CheckpointError, CheckpointFormatError,
                                     missing_file_message, safe_load)
    if '://' not in weights and not osp.isfile(weights):
        raise PreflightError(
            f'{missing_file_message(weights, "weights")}; pass a checkpoint '
            'written by tools/train.py or an official VMamba file (path or '
            "URL; model-index.yml lists them), or leave it out to use the "
            "config's")
    try:
        if '://' in weights and not weights.startswith(_URL_PREFIXES):
            # open-mmlab://, s3://, ...: MMEngine's loader, routed to
            # safe_load on import of mmvmamba
            from mmengine.runner.checkpoint import CheckpointLoader
            return CheckpointLoader.load_checkpoint(weights, 'cpu')
        return safe_load(weights)
    except CheckpointDownloadError as e:
        raise PreflightError(
            f'{e}\n  -> or pass a local copy: --weights '
            '/path/to/file.pth') from e
    except CheckpointFormatError as e:  # its message says what to pass
        raise PreflightError(f'cannot read the weights: {e}') from e
    except CheckpointError as e:  # crafted files: what to do
        raise PreflightError(str(e)) from e


def weights_of(ckpt: Any,
               weights: str,
               allow_nonfinite: bool = False) -> Dict[str, Any]:
    """``{'state_dict': ..., 'meta': ...}`` of a checkpoint read by
    :func:`read_checkpoint`: OpenMMLab files (``state_dict`` + ``meta``),
    bare state dicts, and official VMamba classification files (converted
    to the mmpretrain layout); NaN/Inf weights are refused unless
    ``allow_nonfinite``."""
    from mmvmamba.checkpoint import (CheckpointError, PickledObject,
                                     check_weights, extract_state_dict,
                                     is_official, split_weights, strip_prefix,
                                     to_layout)
    meta = ckpt.get('meta', None) if isinstance(ckpt, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    try:
        if is_official(ckpt):
            head = split_weights(ckpt)[1]
            sd = to_layout(ckpt, 'mmpretrain' if head else 'official')
        else:
            sd = extract_state_dict(ckpt)
            if sd and all(k.startswith('module.') for k in sd):
                sd = strip_prefix(sd, 'module.')
    except CheckpointError as e:
        raise PreflightError(
            f'{weights!r} holds no model weights ({e}); pass a checkpoint '
            'written by tools/train.py or an official VMamba file') from e
    try:
        check_weights(sd, repr(weights), allow_nonfinite)
    except CheckpointError as e:
        raise PreflightError(str(e)) from e
    out_meta = {}
    for key in ('dataset_meta', 'CLASSES', 'experiment_name'):
        if key in meta and not isinstance(meta[key], PickledObject):
            out_meta[key] = meta[key]
    return dict(state_dict=sd, meta=out_meta)


def load_weights(weights: str,
                 allow_nonfinite: bool = False) -> Dict[str, Any]:
    """``{'state_dict': ..., 'meta': ...}`` from a checkpoint path or URL
    (:func:`read_checkpoint`, then :func:`weights_of`); nothing pickled in
    the file is executed."""
    return weights_of(read_checkpoint(weights), weights, allow_nonfinite)


def _scope_of_weights(sd: Dict[str, torch.Tensor]) -> Optional[str]:
    """'mmdet'/'mmseg'/'mmpretrain' from the head keys, 'backbone' for
    backbone-only weights, None for anything else."""
    for scope, prefixes in _HEAD_PREFIXES:
        if any(k.startswith(prefixes) for k in sd):
            return scope
    if any(k.startswith('backbone.') or re.match(r'layers\.\d+\.blocks\.', k)
           for k in sd):
        return 'backbone'
    return None


def _backbone_arch(sd: Dict[str, Any]) -> Dict[str, Any]:
    from mmvmamba.checkpoint import infer_arch
    inner = {k[len('backbone.'):]: v
             for k, v in sd.items() if k.startswith('backbone.')}
    info = infer_arch(inner or sd)
    keys = ('dims', 'depths', 'ssm_ratio', 'ssm_d_state', 'mlp_ratio')
    return {k: info[k] for k in keys if k in info}


def _preset_of(arch: Dict[str, Any]) -> Optional[str]:
    from mmvmamba.checkpoint import preset_of
    from mmvmamba.models import ARCH_SETTINGS
    return preset_of(arch, ARCH_SETTINGS)


def _describe(arch: Dict[str, Any]) -> str:
    preset = _preset_of(arch)
    shape = ', '.join(f'{k}={v}' for k, v in arch.items()
                      if k in ('dims', 'depths', 'ssm_ratio'))
    return f"arch='{preset}' ({shape})" if preset else shape


def _show(path: str) -> str:
    """``path`` relative to the working directory if it is below it."""
    rel = osp.relpath(path)
    return path if rel.startswith('..') else rel


def _zoo_configs(scope: str, arch: Dict[str, Any]) -> List[str]:
    """Model-zoo configs of ``scope`` whose backbone is ``arch``."""
    from mmvmamba.models.vmamba import ARCH_ALIASES
    preset = _preset_of(arch)
    found = []
    try:
        models = load_model_zoo()
    except Exception:
        return found
    for m in models:
        if not osp.isfile(m['config_path']):
            continue
        cfg_scope, name = _scope_and_arch(m['config_path'])
        if preset and cfg_scope == scope and \
                ARCH_ALIASES.get(name, name) == preset:
            found.append(_show(m['config_path']))
    return found


@lru_cache(maxsize=None)
def _scope_and_arch(config: str) -> Tuple[Optional[str], Optional[str]]:
    """A config's default_scope and backbone ``arch`` preset name."""
    cfg = Config.fromfile(config)
    name = cfg.model.get('backbone', {}).get('arch')
    return cfg.get('default_scope'), name if isinstance(name, str) else None


def _model_state_shapes(cfg: Config) -> Dict[str, Any]:
    """The state dict (on the meta device: shapes only, no memory) of the
    model the config builds."""
    from mmengine.registry import DefaultScope
    scope = downstream_of(cfg)
    registry = importlib.import_module(f'{scope}.registry').MODELS
    model_cfg = copy.deepcopy(cfg.model)
    if scope == 'mmpretrain':
        model_cfg.setdefault('data_preprocessor',
                             cfg.get('data_preprocessor', None))
    with DefaultScope.overwrite_default_scope(scope):
        try:
            with torch.device('meta'):
                model = registry.build(model_cfg)
        except Exception:  # a module that needs real tensors to build
            model = registry.build(model_cfg)
    return model.state_dict()


def _trained_config(meta: Dict[str, Any]) -> Optional[str]:
    """The config a checkpoint was trained with, from its experiment name
    (``<config stem>_<YYYYMMDD_HHMMSS>``), if it is in this repository."""
    name = meta.get('experiment_name')
    if not isinstance(name, str):
        return None
    stem = re.sub(r'_\d{8}_\d{6}$', '', name)
    for root, _, files in os.walk(osp.join(REPO_ROOT, 'configs')):
        if stem + '.py' in files:
            return _show(osp.join(root, stem + '.py'))
    return None


def check_weights_fit(cfg: Config, ckpt: Dict[str, Any], weights: str,
                      config: str) -> None:
    """Raise :class:`PreflightError` if ``ckpt`` (from :func:`weights_of`)
    does not fit the model of ``cfg``: another task, another VMamba variant
    or other necks/heads. The message names the file, the missing /
    unexpected / mis-shaped keys, and the config or preset that fits.
    ``tools/test.py``, ``tools/train.py`` (``load_from``, ``--resume``) and
    the inferencers all check with it."""
    from mmvmamba.checkpoint import compare, fmt_keys
    scope = downstream_of(cfg)
    sd = ckpt['state_dict']
    entry = find_model(config)
    official = (f' (the official ones: --weights {entry["Weights"]})'
                if entry and entry.get('Weights') else '')
    found = _scope_of_weights(sd)
    if found is None:
        raise PreflightError(
            f'{weights!r} holds no weights of an mmdet/mmseg/mmpretrain model '
            f'(first keys: {fmt_keys(list(sd), 4)}); pass a checkpoint '
            f'written by tools/train.py with {config!r}{official}')
    own = _model_state_shapes(cfg)
    keys = compare(own, sd).lines('config')
    details = ''.join(f'\n  {line}' for line in keys)
    ck_arch = _backbone_arch(sd)
    if found != scope:
        if found == 'backbone' or (found == 'mmpretrain'
                                   and any('head.fc.' in k for k in sd)):
            what = ('VMamba backbone weights' if found == 'backbone' else
                    'image-classification (ImageNet) weights')
            raise PreflightError(
                f'{weights!r} holds {what}, but {config!r} builds '
                f'{_WHAT[scope]}, whose neck and heads they lack. Fix: pass '
                f'weights trained with this config{official}. Backbone/'
                'ImageNet weights start a training run instead: python '
                f'tools/train.py {config} --cfg-options '
                f'model.backbone.init_cfg.checkpoint={weights}' + details)
        others = _zoo_configs(found, ck_arch)
        use = (f'use them with a config for that task, e.g. {others[0]}, '
               'or ' if others else '')
        raise PreflightError(
            f'{weights!r} holds the weights of {_WHAT[found]}, but {config!r} '
            f'builds {_WHAT[scope]}. Fix: {use}pass weights of this config'
            f'{official}' + details)
    own_arch = _backbone_arch(own)
    if ck_arch and own_arch and ck_arch != own_arch:
        others = _zoo_configs(scope, ck_arch)
        use = (f'use the config of that backbone ({", ".join(others)}) or '
               if others else 'use a config with that backbone or ')
        raise PreflightError(
            f'{weights!r} holds a VMamba backbone with {_describe(ck_arch)}, '
            f'but {config!r} builds one with {_describe(own_arch)}. Fix: '
            f'{use}pass weights of this config{official}' + details)
    if keys:
        trained = _trained_config(ckpt['meta'])
        fix = (f'pass the config it was trained with: {trained}'
               if trained and osp.realpath(trained) != osp.realpath(config)
               else 'pass the config the checkpoint was trained with '
               '(other heads, number of classes or channels)')
        raise PreflightError('\n  '.join(
            [f'{weights!r} does not fit the model of {config!r}:'] + keys +
            [f'Fix: {fix}, or weights of this config{official}.']))


def checked_load_from(cfg: Config,
                      weights: str,
                      config: str,
                      allow_nonfinite: bool = False) -> str:
    """The one checked load of ``tools/test.py`` and ``tools/train.py``
    (``load_from``, ``--resume``): read ``weights`` safely, convert an
    official file, refuse NaN/Inf and a checkpoint that does not fit the
    model of ``cfg`` (:func:`check_weights_fit`), and return the name under
    which the Runner loads the checked checkpoint (``cfg.load_from``).
    Raises :class:`PreflightError` before anything is built or written."""
    from mmvmamba.checkpoint import is_official, prepare
    ckpt = read_checkpoint(weights)
    found = weights_of(ckpt, weights, allow_nonfinite)
    check_weights_fit(cfg, found, weights, config)
    return prepare(found if is_official(ckpt) else ckpt, weights)


# --------------------------------------------------------------------------
# Inferencers
# --------------------------------------------------------------------------

@contextmanager
def _prepared_checkpoint(ckpt: Dict[str, Any], weights: str) -> Iterator[str]:
    """A name under which mmengine's ``CheckpointLoader`` (used by all
    three inferencers) returns ``ckpt``, already loaded safely from
    ``weights`` (the name its log line shows)."""
    from mmvmamba.checkpoint import prepare, release
    name = prepare(ckpt, weights)
    try:
        yield name
    finally:
        release(name)


def resolve_config(config: str,
                   cfg_options: Optional[dict] = None
                   ) -> Tuple[Config, str, Optional[Dict]]:
    """(config, its path, model-zoo entry) for a config file or a model
    name of model-index.yml."""
    entry = find_model(config)
    if not osp.isfile(config):
        if entry is None:
            try:
                names = [m['Name'] for m in load_model_zoo()]
            except Exception:
                names = []
            raise PreflightError(
                f'{config!r} is neither a config file nor a model name of '
                f'model-index.yml (names: {", ".join(names) or "none"})')
        config = _show(entry['config_path'])
    cfg = load_config(config, 'none', cfg_options, None)
    downstream_of(cfg)
    return cfg, config, entry


def default_weights(cfg: Config, config: str,
                    entry: Optional[Dict]) -> Tuple[str, str]:
    """(weights, where they come from) when ``--weights`` is not given:
    the config's ``load_from``, the last checkpoint of ``tools/train.py``
    in the config's work_dir, or the official weights of model-index.yml."""
    if cfg.get('load_from', None):
        return cfg.load_from, "the config's load_from"
    last = osp.join(cfg.work_dir, 'last_checkpoint')
    if osp.isfile(last):
        with open(last) as f:
            ckpt = f.read().strip()
        if osp.isfile(ckpt):
            return ckpt, f'the last checkpoint of tools/train.py ({last})'
    if entry and entry.get('Weights'):
        return entry['Weights'], 'the official weights in model-index.yml'
    raise PreflightError(
        f'no weights for {config!r}: pass --weights CKPT (a checkpoint '
        'written by tools/train.py, e.g. work_dirs/<config name>/epoch_N.pth, '
        'or an official file from model-index.yml); train one with python '
        f'tools/train.py {config}')


def build_inferencer(cfg: Config,
                     ckpt: Dict[str, Any],
                     device: Optional[str] = None,
                     weights: str = 'weights') -> Any:
    """The downstream library's inferencer for ``cfg`` with the (checked)
    weights ``ckpt`` that :func:`load_weights` read from ``weights``."""
    scope = downstream_of(cfg)
    if device is None:
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise PreflightError(
            f'--device {device} needs a CUDA GPU; use --device cpu')
    from mmengine.registry import DefaultScope
    cfg = copy.deepcopy(cfg)
    drop_pretrained(cfg.model)  # the weights come from ckpt
    if not {'dataset_meta', 'CLASSES'} & set(ckpt['meta']):
        # the libraries would fall back to COCO/Cityscapes class names
        dataset_meta = _config_dataset_meta(cfg)
        if dataset_meta:
            ckpt = dict(ckpt, meta=dict(ckpt['meta'],
                                        dataset_meta=dataset_meta))
    with _prepared_checkpoint(ckpt, weights) as name, \
            DefaultScope.overwrite_default_scope(scope):
        if scope == 'mmdet':
            from mmdet.apis import DetInferencer
            return DetInferencer(
                model=cfg, weights=name, device=device, show_progress=False)
        if scope == 'mmseg':
            from mmseg.apis import MMSegInferencer
            return MMSegInferencer(model=cfg, weights=name, device=device)
        from mmpretrain.apis import ImageClassificationInferencer
        return ImageClassificationInferencer(
            model=cfg, pretrained=name, device=device)


def _config_dataset_meta(cfg: Config) -> Optional[Dict[str, Any]]:
    """Class names (and palette) of the config's test set: its
    ``metainfo``, else its dataset class's ``METAINFO``."""
    from mmengine.registry import DefaultScope
    ds = cfg.get('test_dataloader', {}).get('dataset', {})
    while isinstance(ds, dict) and 'dataset' in ds:  # dataset wrappers
        ds = ds['dataset']
    if not isinstance(ds, dict):
        return None
    meta = ds.get('metainfo', None)
    if isinstance(meta, dict) and meta.get('classes'):
        return dict(meta)
    scope = downstream_of(cfg)
    registry = importlib.import_module(f'{scope}.registry').DATASETS
    with DefaultScope.overwrite_default_scope(scope):
        try:
            dataset_cls = registry.get(ds.get('type'))
        except Exception:  # an unregistered or odd type: no fallback
            return None
    info = getattr(dataset_cls, 'METAINFO', None)
    return dict(info) if isinstance(info, dict) and info.get('classes') \
        else None


def _to_jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if hasattr(obj, 'tolist'):
        return obj.tolist()
    return obj


def _run(inferencer: Any, scope: str, images: List[str], out: str,
         score_thr: float) -> List[Any]:
    """Run on ``images``, writing ``out/vis`` and ``out/preds``."""
    if scope == 'mmdet':
        result = inferencer(
            images,
            out_dir=out,
            no_save_pred=False,
            pred_score_thr=score_thr)
        return result['predictions']
    if scope == 'mmseg':
        # mmseg names its label maps by a counter (and always writes them);
        # ours keep the image names
        scratch = '.mmseg_preds'
        result = inferencer(
            images, out_dir=out, img_out_dir='vis', pred_out_dir=scratch)
        shutil.rmtree(osp.join(out, scratch), ignore_errors=True)
        preds = result['predictions']
        preds = list(preds) if len(images) > 1 else [preds]
        os.makedirs(osp.join(out, 'preds'))
        for img, pred in zip(images, preds):
            stem = osp.splitext(osp.basename(img))[0]
            dtype = np.uint8 if pred.max(initial=0) < 256 else np.uint16
            cv2.imwrite(
                osp.join(out, 'preds', stem + '.png'), pred.astype(dtype))
        return preds
    preds = inferencer(images, show_dir=osp.join(out, 'vis'))
    os.makedirs(osp.join(out, 'preds'))
    for img, pred in zip(images, preds):
        stem = osp.splitext(osp.basename(img))[0]
        with open(osp.join(out, 'preds', stem + '.json'), 'w') as f:
            json.dump(_to_jsonable(pred), f)
    return preds


def _move_into(tmp: str, out_dir: str) -> None:
    if not osp.exists(out_dir):
        os.replace(tmp, out_dir)
        return
    for root, _, files in os.walk(tmp):
        dest = osp.join(out_dir, osp.relpath(root, tmp))
        os.makedirs(dest, exist_ok=True)
        for f in files:
            os.replace(osp.join(root, f), osp.join(dest, f))
    shutil.rmtree(tmp)


def run_image_demo(inputs: str,
                   config: str,
                   weights: Optional[str] = None,
                   device: Optional[str] = None,
                   out_dir: str = 'outputs',
                   cfg_options: Optional[dict] = None,
                   score_thr: float = 0.3) -> Dict[str, Any]:
    """Predict on an image or a folder of images and draw the predictions.

    Writes ``out_dir/vis/<image>`` (drawn predictions) and
    ``out_dir/preds/<image stem>.json`` (``.png`` label maps for
    segmentation) only after every image succeeded; everything is checked
    before the model runs. Returns the images, the predictions (the
    inferencer's own format), the task scope and where the files are.
    """
    from mmengine.registry import DefaultScope
    images = list_images(inputs)
    cfg, config, entry = resolve_config(config, cfg_options)
    source = '--weights'
    if not weights:
        weights, source = default_weights(cfg, config, entry)
    if osp.exists(out_dir) and not osp.isdir(out_dir):
        raise PreflightError(f'--out-dir {out_dir!r} is a file; pass a '
                             'folder')
    ckpt = load_weights(weights)
    check_weights_fit(cfg, ckpt, weights, config)
    scope = downstream_of(cfg)
    inferencer = build_inferencer(cfg, ckpt, device, weights)
    parent = osp.dirname(osp.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.image_demo-', dir=parent)
    try:
        with DefaultScope.overwrite_default_scope(scope):
            preds = _run(inferencer, scope, images, tmp, score_thr)
        written = sorted(
            osp.join(osp.relpath(root, tmp), f)
            for root, _, files in os.walk(tmp) for f in files)
        _move_into(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dict(
        images=images,
        predictions=preds,
        scope=scope,
        config=config,
        weights=weights,
        weights_source=source,
        inferencer=inferencer,
        out_dir=out_dir,
        files=[osp.join(out_dir, f) for f in written])
