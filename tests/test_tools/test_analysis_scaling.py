"""Throughput/memory versus input size: numbers, table, plot, CLI (CPU)."""
import csv
import importlib.util
import os.path as osp

import pytest
import torch
from matplotlib.image import imread
from torch import nn

from mmvmamba.analysis.scaling import (FIELDS, batch_for_size, measure,
                                       plot_scaling, run_scaling, write_table)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_batch_keeps_pixels_constant():
    assert batch_for_size(224, 64) == 64
    assert batch_for_size(448, 64) == 16
    assert batch_for_size(1024, 2) == 1  # never zero


def test_measure_rows_and_errors():
    model = nn.Conv2d(3, 8, 3, padding=1)
    row = measure(model, 32, 2, torch.device('cpu'), warmup=1, iters=3)
    assert row['img_per_s'] == pytest.approx(2 / (row['ms_per_batch'] / 1e3))
    assert row['mpix_per_s'] == pytest.approx(row['img_per_s'] * 32 * 32 / 1e6)
    assert row['device'] == 'cpu' and row['peak_mem_mib'] >= 0
    row = measure(
        model, 16, 1, torch.device('cpu'), mode='train', iters=1, warmup=0)
    assert row['mode'] == 'train' and model.weight.grad is not None
    with pytest.raises(ValueError, match="unknown mode 'fast'"):
        measure(model, 16, 1, torch.device('cpu'), mode='fast')
    with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
        measure(model, 16, 1, torch.device('cpu'), dtype='fp8')


def test_table_and_plot(tmp_path):
    builders = {
        'conv': lambda size: nn.Conv2d(3, 4, 3),
        'pool': lambda size: nn.AvgPool2d(2),
    }
    rows = run_scaling(
        builders,
        sizes=(16, 32),
        batch_224=4,
        warmup=0,
        iters=1,
        log=lambda s: None)
    assert [(r['model'], r['size']) for r in rows] == [('conv', 16),
                                                       ('conv', 32),
                                                       ('pool', 16),
                                                       ('pool', 32)]
    write_table(rows, str(tmp_path / 't.csv'), str(tmp_path / 't.md'))
    with open(tmp_path / 't.csv') as f:
        read = list(csv.DictReader(f))
    assert list(read[0]) == list(FIELDS) and len(read) == 4
    assert float(read[1]['img_per_s']) == pytest.approx(rows[1]['img_per_s'])
    assert '| conv | 32² |' in (tmp_path / 't.md').read_text()
    img = imread(plot_scaling(rows, str(tmp_path / 'p.png')))
    assert img.shape[1] > 2 * img.shape[0] and img[..., :3].std() > 0.05


def test_cli_vmamba_and_peer(tmp_path):
    path = osp.join(ROOT, 'tools', 'analysis', 'scaling.py')
    spec = importlib.util.spec_from_file_location('_tool_scaling', path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    rows = tool.main([
        'vmamba-t', 'resnet50', '--sizes', '32', '64', '--batch-224', '1',
        '--warmup', '0', '--iters', '1', '--device', 'cpu', '--out',
        str(tmp_path)
    ])
    assert len(rows) == 4 and all(r['img_per_s'] > 0 for r in rows)
    for name in ('scaling.csv', 'scaling.md', 'scaling.png'):
        assert (tmp_path / name).stat().st_size > 100
