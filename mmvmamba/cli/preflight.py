"""Checks that run before ``tools/`` build an MMEngine ``Runner``.

They turn the usual late failures (a missing dataset, a mistyped checkpoint
path, an unreachable URL) into one clear message before anything is written,
so a failed start leaves no work_dir, log or half-downloaded file behind.
"""
import os
import os.path as osp
from typing import Any, Dict, Iterator, List, Optional, Tuple

from mmengine.config import Config

from mmvmamba.checkpoint import (CheckpointDownloadError, cached_download,
                                 missing_file_message, wait_for_file)

DOWNSTREAMS = ('mmdet', 'mmseg', 'mmpretrain')
_URL_PREFIXES = ('http://', 'https://')

DEMO_HINT = ('No dataset at hand? The built-in demo set needs no download: '
             'python tools/train.py '
             'configs/demo/maskrcnn_vmamba_t_demo-shapes.py')

# How to get each dataset, by dataset type.
_DATA_HINTS = {
    'CocoDataset':
    'Download COCO 2017 (train2017.zip, val2017.zip, '
    'annotations_trainval2017.zip) from https://cocodataset.org/#download '
    'and unpack them so that {root} holds annotations/, train2017/ and '
    'val2017/ (or link an existing copy: ln -s /path/to/coco {root}).',
    'ADE20KDataset':
    'Download ADEChallengeData2016.zip from '
    'http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip '
    'and unzip it into data/ade/ so that {root} holds images/ and '
    'annotations/ (or link an existing copy there).',
    'ImageNet':
    'Get ImageNet-1K (ILSVRC2012) from https://image-net.org/download.php '
    'and arrange it as {root}/train/<class>/*.JPEG and '
    '{root}/val/<class>/*.JPEG (or link an existing copy there).',
}


class PreflightError(RuntimeError):
    """A problem found before training/testing starts, with the fix."""


def load_config(path: str, launcher: str, cfg_options: Optional[dict],
                work_dir: Optional[str]) -> Config:
    """The config of a tools/ entry point with the common options applied.

    ``work_dir`` defaults to ``./work_dirs/<config name>`` as in mmdet.
    """
    if not osp.isfile(path):
        raise PreflightError(f'config file {path!r} does not exist')
    cfg = Config.fromfile(path)
    cfg.launcher = launcher
    if cfg_options is not None:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(path))[0])
    return cfg


def downstream_of(cfg: Config) -> str:
    """'mmdet', 'mmseg' or 'mmpretrain', from the config's ``default_scope``."""
    scope = cfg.get('default_scope', None)
    if scope not in DOWNSTREAMS:
        raise PreflightError(
            f'config has default_scope={scope!r}; expected one of '
            f'{DOWNSTREAMS}. Inherit a downstream base config, e.g. '
            "_base_ = ['mmdet::_base_/default_runtime.py'].")
    return scope


def ensure_demo_data(cfg: Config) -> None:
    """Generate the demo dataset if the config asks for it (``demo_data``)."""
    demo = cfg.get('demo_data', None)
    if not demo:
        return
    from mmvmamba.datasets.demo_shapes import generate_demo_shapes
    kwargs = dict(demo)
    if int(os.environ.get('RANK', os.environ.get('LOCAL_RANK', 0))) == 0:
        generate_demo_shapes(**kwargs)
    else:
        # other ranks wait for rank 0 (the dataset appears atomically)
        wait_for_file(osp.join(kwargs.get('root'), 'meta.json'), 600)


def _datasets(dataset: Any) -> Iterator[Dict]:
    """Leaf dataset configs below wrappers (Repeat/Concat/ClassBalanced)."""
    if isinstance(dataset, (list, tuple)):
        for d in dataset:
            yield from _datasets(d)
    elif isinstance(dataset, dict):
        if 'dataset' in dataset:
            yield from _datasets(dataset['dataset'])
        elif 'datasets' in dataset:
            yield from _datasets(dataset['datasets'])
        else:
            yield dataset


def _join(root: Optional[str], path: str) -> str:
    if not root or osp.isabs(path) or '://' in path:
        return path
    return osp.join(root, path)


def _required_paths(ds: Dict) -> List[Tuple[str, str]]:
    """(what, path) pairs a dataset config needs on disk."""
    root = ds.get('data_root', None) or ''
    paths = []
    if root:
        paths.append(('data_root', root))
    ann = ds.get('ann_file', None)
    if ann:
        paths.append(('ann_file', _join(root, ann)))
    prefix = ds.get('data_prefix', None)
    if isinstance(prefix, dict):
        for key, value in prefix.items():
            if value:
                paths.append((f'data_prefix.{key}', _join(root, value)))
    elif isinstance(prefix, str) and prefix:
        paths.append(('data_prefix', _join(root, prefix)))
    split = ds.get('split', None)
    if split and not ann and ds.get('type', '').endswith('ImageNet'):
        paths.append((f'split {split!r}', _join(root, split)))
    return paths


def check_datasets(cfg: Config, loaders: Tuple[str, ...]) -> None:
    """Fail early, naming the path and how to get the data, if it is absent.

    Args:
        cfg: the full config.
        loaders: dataloader keys to check, e.g. ('train_dataloader',
            'val_dataloader').
    """
    for key in loaders:
        loader = cfg.get(key, None)
        if not loader or 'dataset' not in loader:
            continue
        for ds in _datasets(loader['dataset']):
            for what, path in _required_paths(ds):
                if '://' in path or osp.exists(path):
                    continue
                ds_type = str(ds.get('type', 'dataset')).split('.')[-1]
                root = ds.get('data_root', None) or osp.dirname(path)
                hint = _DATA_HINTS.get(ds_type,
                                       'Put the dataset at that path.')
                raise PreflightError(
                    f'{ds_type} for {key} not found: {what} {path!r} does '
                    f'not exist (looked relative to {os.getcwd()!r}).\n'
                    f'  -> {hint.format(root=root)}\n'
                    '  -> or point the config at your copy: --cfg-options '
                    f'{key}.dataset.data_root=/path/to/data (and the '
                    'evaluator\'s ann_file where it has one)\n'
                    f'  -> {DEMO_HINT}')
    for key in (k.replace('dataloader', 'evaluator') for k in loaders):
        evaluators = cfg.get(key, None)
        if isinstance(evaluators, dict):
            evaluators = [evaluators]
        for ev in evaluators or []:
            ann = ev.get('ann_file', None) if isinstance(ev, dict) else None
            if ann and '://' not in ann and not osp.exists(ann):
                raise PreflightError(
                    f'{key} ann_file {ann!r} does not exist (looked relative '
                    f'to {os.getcwd()!r}); set it with --cfg-options '
                    f'{key}.ann_file=/path/to/annotations.json\n'
                    f'  -> {DEMO_HINT}')


def _pretrained_cfgs(node: Any,
                     path: str = 'model') -> Iterator[Tuple[str, Dict]]:
    """(dotted path, init_cfg dict) for every ``Pretrained`` init_cfg."""
    if isinstance(node, dict):
        if node.get('type') == 'Pretrained' and node.get('checkpoint'):
            yield path, node
        for key, value in node.items():
            yield from _pretrained_cfgs(value, f'{path}.{key}')
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _pretrained_cfgs(value, f'{path}.{i}')


def check_pretrained_fit(cfg: Config) -> None:
    """Check every ``Pretrained`` checkpoint of a VMamba backbone against
    that backbone built on the meta device (shapes only), with the checks of
    ``init_cfg``'s load, before the work_dir exists: a checkpoint that does
    not fit or holds NaN/Inf stops the run with nothing written."""
    import torch

    from mmvmamba.checkpoint import (CheckpointError, check_state_dict,
                                     pretrained_state_dict)
    from mmvmamba.models import VMamba
    for path, init_cfg in _pretrained_cfgs(cfg.get('model', {})):
        keys = path.split('.')
        if 'init_cfg' not in keys:
            continue
        owner = cfg
        for key in keys[:len(keys) - 1 - keys[::-1].index('init_cfg')]:
            owner = owner[int(key)] if isinstance(owner, list) else owner[key]
        if not isinstance(owner, dict) or owner.get('type') not in (
                'VMamba', 'mmvmamba.VMamba'):
            continue
        args = {k: v for k, v in owner.items() if k != 'type'}
        try:
            with torch.device('meta'):
                model = VMamba(**args)
            sd = pretrained_state_dict(
                init_cfg['checkpoint'],
                init_cfg.get('prefix'),
                init_cfg.get('use_ema', False),
                logger=None)
            check_state_dict(model, sd, init_cfg['checkpoint'],
                             allow_nonfinite=init_cfg.get(
                                 'allow_nonfinite', False))
        except CheckpointError as e:
            raise PreflightError(
                f'{path}.checkpoint={init_cfg["checkpoint"]!r} cannot start '
                f'this run: {e}\n  -> pass the checkpoint of the backbone '
                f'this config builds (--cfg-options {path}.checkpoint=...), '
                'or the preset it fits') from e


def drop_pretrained(node: Any) -> None:
    """Remove every ``Pretrained`` init_cfg in place (the weights of a test
    or an inference come from the checkpoint being evaluated)."""
    if isinstance(node, dict):
        init = node.get('init_cfg', None)
        if isinstance(init, dict) and init.get('type') == 'Pretrained':
            node['init_cfg'] = None
        for value in node.values():
            drop_pretrained(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            drop_pretrained(value)


def _download(url: str, option: str) -> str:
    try:
        return cached_download(url, option)
    except CheckpointDownloadError as e:
        raise PreflightError(str(e)) from e


def check_checkpoints(cfg: Config, download: bool = True) -> None:
    """Check every ``Pretrained`` checkpoint and the ``load_from`` file.

    Local files must exist; URLs are fetched into the torch hub cache now
    (rank 0) and the config is pointed at the cached file, so a network
    failure is reported before a work_dir exists.
    """
    for path, init_cfg in _pretrained_cfgs(cfg.get('model', {})):
        ckpt = init_cfg['checkpoint']
        if ckpt.startswith(_URL_PREFIXES):
            if download:
                init_cfg['checkpoint'] = _download(
                    ckpt, f'--cfg-options {path}.checkpoint=/path/to/file.pth')
        elif '://' not in ckpt and not osp.isfile(ckpt):
            what = ('is a folder, not a file' if osp.isdir(ckpt) else
                    'does not exist')
            raise PreflightError(
                f'pretrained checkpoint {ckpt!r} ({path}.checkpoint) {what}. '
                'Fix the path with --cfg-options '
                f'{path}.checkpoint=/path/to/file.pth '
                f'or train from scratch with --cfg-options {path}=None')
    load_from = cfg.get('load_from', None)
    if load_from and not cfg.get('resume', False):
        if load_from.startswith(_URL_PREFIXES):
            if download:
                cfg.load_from = _download(
                    load_from, 'tools/test.py CONFIG /path/to/file.pth, or '
                    '--cfg-options load_from=/path/to/file.pth')
        elif '://' not in load_from and not osp.isfile(load_from):
            raise PreflightError('load_from: ' +
                                 missing_file_message(load_from))
