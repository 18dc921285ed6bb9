"""model-index.yml and the metafiles: OpenMMLab's format, every config listed,
every listed config parses, the numbers are those of the model each config
builds, and the README's model-zoo table is the generated one.

configs/demo/ is not in the model zoo: the demo recipe is trained locally in
minutes on a generated data set, so it has no published results or weights.
"""
import glob
import importlib
import os.path as osp
import re
import sys

import pytest
import yaml
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mmvmamba  # noqa: F401
from mmvmamba.analysis.flops import SPEC_DOWNSTREAM_GFLOPS, SPEC_GFLOPS
from mmvmamba.apis.model_zoo import (TASKS_OF_SCOPE, find_model,
                                     load_model_zoo, markdown_table)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MODELS = load_model_zoo(ROOT)
BY_NAME = {m['Name']: m for m in MODELS}
RELEASE = 'https://github.com/MzeroMiko/VMamba/releases/download/'


def zoo_configs():
    return sorted(
        osp.relpath(p, ROOT)
        for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'),
                           recursive=True)
        if '/demo/' not in p and '/_base_/' not in p)


def test_modelindex_package_reads_it_without_errors():
    from modelindex.load_model_index import load
    index = load(osp.join(ROOT, 'model-index.yml'))
    errors = [
        f"{c['filepath']}: {e}" for c in index.collect_check_errors()
        for e in c['errors']
    ]
    assert errors == []
    assert sorted(m.name for m in index.models) == sorted(BY_NAME)
    for model in index.models:
        assert model.config == BY_NAME[model.name]['Config']
        assert model.weights == BY_NAME[model.name]['Weights']
        assert model.in_collection == BY_NAME[model.name]['In Collection']


def test_every_config_listed_once():
    listed = [m['Config'] for m in MODELS]
    assert len(listed) == len(set(listed)), 'a config is listed twice'
    assert len(BY_NAME) == len(MODELS), 'a model name is used twice'
    assert sorted(listed) == zoo_configs()


@pytest.mark.parametrize('model', MODELS, ids=lambda m: m['Name'])
def test_entry_format_and_config(model):
    raw = yaml.safe_load(open(osp.join(ROOT, model['metafile'])))
    collections = {c['Name']: c for c in raw['Collections']}
    coll = collections[model['In Collection']]
    assert {'Name', 'Metadata', 'Paper'} <= set(coll)
    assert coll['Paper']['URL'] == 'https://arxiv.org/abs/2401.10166'
    own = next(m for m in raw['Models'] if m['Name'] == model['Name'])
    assert {'Name', 'In Collection', 'Config', 'Metadata', 'Results',
            'Weights'} <= set(own)
    meta = model['Metadata']
    assert isinstance(meta['FLOPs'], int) and meta['FLOPs'] > 1e9
    assert isinstance(meta['Parameters'], int) and meta['Parameters'] > 1e7
    assert meta['Training Data'] in ('COCO', 'ADE20K', 'ImageNet-1k')
    # the config exists, parses, and is what the name says
    assert model['Name'] == osp.splitext(osp.basename(model['Config']))[0]
    cfg = Config.fromfile(model['config_path'])
    tasks = TASKS_OF_SCOPE[cfg.default_scope]
    assert model['Results'], 'no results'
    for result in model['Results']:
        assert result['Task'] in tasks
        assert result['Dataset'] == meta['Training Data']
        assert result['Metrics'] and all(
            isinstance(v, float) and 0 < v < 100
            for v in result['Metrics'].values())
    assert model['Weights'].startswith(RELEASE)
    assert model['Weights'].endswith('.pth')
    # a VMamba-T/S/B name has the T/S/B backbone
    arch = cfg.model.backbone.arch
    letter = re.search(r'vmamba_([tsb])_', model['Name']).group(1)
    assert arch == dict(t='tiny', s='small', b='base')[letter]
    assert meta['Backbone'].startswith(f'VMamba-{letter.upper()}[')
    # the official-eval configs evaluate exactly the listed weights
    if cfg.get('load_from', None):
        assert cfg.load_from == model['Weights']
    # the classifier configs' weights are the official ImageNet files their
    # detection/segmentation recipes are initialised from
    if cfg.default_scope == 'mmpretrain':
        det_entry = BY_NAME[f'maskrcnn_vmamba_{letter}_coco']
        det = Config.fromfile(det_entry['config_path'])
        assert det.model.backbone.init_cfg.checkpoint == model['Weights']


def test_numbers_are_the_papers_and_the_models():
    """FLOPs equal the official counts (what tools/analysis/flops.py
    reproduces) and parameters those of the model each config builds."""
    import torch
    counted = {}
    for model in MODELS:
        cfg = Config.fromfile(model['config_path'])
        meta = model['Metadata']
        arch = cfg.model.backbone.arch
        if cfg.default_scope == 'mmpretrain':
            official = SPEC_GFLOPS[arch]
        else:
            kind = 'mask-rcnn' if cfg.default_scope == 'mmdet' else 'upernet'
            official = SPEC_DOWNSTREAM_GFLOPS[f'{kind}_{arch}'][0]
        assert meta['FLOPs'] / 1e9 == pytest.approx(official, rel=5e-4)
        scope = cfg.default_scope
        key = (scope, arch)
        if key not in counted:
            registry = importlib.import_module(f'{scope}.registry').MODELS
            with DefaultScope.overwrite_default_scope(scope), \
                    torch.device('meta'):
                built = registry.build(cfg.model)
            counted[key] = sum(p.numel() for p in built.parameters())
        assert meta['Parameters'] == counted[key], model['Name']


def test_flops_tool_measures_the_listed_number():
    """One real count (the cheapest model) through tools/analysis/flops.py."""
    sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis'))
    try:
        flops_tool = importlib.import_module('flops')
        (row, ) = flops_tool.main(
            [osp.join(ROOT, BY_NAME['vmamba_t_in1k']['Config'])])
    finally:
        sys.path.remove(osp.join(ROOT, 'tools', 'analysis'))
    meta = BY_NAME['vmamba_t_in1k']['Metadata']
    assert round(row['gflops'] * 1e9) == pytest.approx(meta['FLOPs'], abs=1)
    assert round(row['mparams'] * 1e6) == meta['Parameters']


def test_find_model_by_name_and_config():
    entry = find_model('upernet_vmamba_s_ade20k-512x512-160k', ROOT)
    assert entry['Config'] == 'configs/upernet_vmamba_s_ade20k-512x512-160k.py'
    assert find_model(entry['config_path'], ROOT) is entry or \
        find_model(entry['config_path'], ROOT)['Name'] == entry['Name']
    assert find_model('no_such_model', ROOT) is None


def test_readme_table_is_generated():
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    try:
        model_zoo = importlib.import_module('model_zoo')
    finally:
        sys.path.remove(osp.join(ROOT, 'tools'))
    with open(osp.join(ROOT, 'README.md')) as f:
        readme = f.read()
    table = model_zoo.readme_table(readme)
    assert table is not None, 'README.md has no model-zoo markers'
    expected = markdown_table(MODELS)
    assert table == expected, (
        'README model-zoo table is stale: run python tools/model_zoo.py '
        '--update-readme')
    # every model is a row, with its config and weights
    for m in MODELS:
        assert f"[`{m['Name']}`]({m['Config']})" in table
        assert m['Weights'] in table
