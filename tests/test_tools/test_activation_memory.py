"""tools/benchmark/activation_memory.py counts, without a GPU, the bytes a
training step's forward saves for the backward."""
import importlib
import os.path as osp

import pytest
import torch
import torch.nn as nn

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture(scope='module')
def tool():
    path = osp.join(ROOT, 'tools', 'benchmark', 'activation_memory.py')
    spec = importlib.util.spec_from_file_location('activation_memory', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_counts_a_known_model(tool, monkeypatch):
    """Linear -> GELU -> Linear under fp16 autocast, per image: the first
    Linear keeps its fp16 input (3·64·64), GELU its fp16 input (2048), the
    second Linear GELU's fp16 output (2048); the weight copies are per step
    and drop out."""
    monkeypatch.setattr(
        tool.bench_models, 'build', lambda name: nn.Sequential(
            nn.Flatten(), nn.Linear(3 * 64 * 64, 2048), nn.GELU(),
            nn.Linear(2048, 10)))
    res = tool.per_image('probe', 64, torch.float16)
    assert res['mib_per_image'] == pytest.approx(
        (3 * 64 * 64 + 2048 + 2048) * 2 / 2**20)
    assert res['parts']['Linear float16'] == round(
        (3 * 64 * 64 + 2048) * 2 / 2**20, 2)


def test_vmamba_norms_keep_half_with_xhat16(tool, monkeypatch):
    ln = importlib.import_module('mmvmamba.kernels.layer_norm_triton')
    res = {}
    for save in ('input', 'xhat16'):
        monkeypatch.setattr(ln, 'SAVE', save)
        res[save] = tool.per_image('vmamba_t', 64, torch.float16)
    # by default the pre-norms and out_norm keep their float32 inputs ...
    norms32 = res['input']['parts']['LayerNorm2d float32']
    assert norms32 > 1
    # ... with xhat16 their normalised input in fp16 instead
    assert res['xhat16']['parts'].get('LayerNorm2d float32', 0) < 0.1
    saved = res['input']['mib_per_image'] - res['xhat16']['mib_per_image']
    assert saved == pytest.approx(norms32 / 2, rel=0.1)
