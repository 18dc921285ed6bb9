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
        tool.bench, 'build_classifier', lambda name: nn.Sequential(
            nn.Flatten(), nn.Linear(3 * 64 * 64, 2048), nn.GELU(),
            nn.Linear(2048, 10)))
    res = tool.per_image('probe', 64, torch.float16)
    assert res['mib_per_image'] == pytest.approx(
        (3 * 64 * 64 + 2048 + 2048) * 2 / 2**20)
    assert res['parts']['Linear float16'] == round(
        (3 * 64 * 64 + 2048) * 2 / 2**20, 2)


def test_vmamba_norms_keep_16_bit_xhat(tool):
    """The pre-norms and out_norm see float32 inputs (the residual stream,
    the scan output) and keep their normalised input in fp16 instead."""
    res = tool.per_image('vmamba-t', 64, torch.float16)
    assert res['parts'].get('LayerNorm2d float32', 0) < 0.1
    assert res['parts']['LayerNorm2d float16'] > 0.5
