"""tools/demo.py (``make demo``): what its terminal shows, the threads it
asks for, and the demo dataset generator it relies on.

The full demo is ``make demo`` itself; these tests run MMEngine's real
start-of-training output (a tiny runner) through the demo's console filter.
"""
import glob
import io
import json
import logging
import os
import os.path as osp
import subprocess
import sys
import warnings

import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn

from mmvmamba.cli.entry import (cpu_threads, hide_third_party_warnings,
                                python_warnings_env)

from .._tools import load_tool

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _load_demo():
    return load_tool('tools', 'demo.py')


class _Tiny(BaseModel):

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)
        self.norm = nn.LayerNorm(2)

    def forward(self, inputs, data_samples=None, mode='loss'):
        x = inputs
        return dict(loss=self.norm(self.fc(x)).pow(2).mean())


def _runner_output(tmp_path, capsys) -> str:
    """What MMEngine prints while a runner starts and trains 2 steps."""
    runner = Runner(
        model=_Tiny(),
        work_dir=str(tmp_path / 'work'),
        experiment_name=f'demo-filter-{os.getpid()}',
        train_dataloader=dict(
            dataset=[dict(inputs=torch.ones(2))] * 4,
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate'),
            batch_size=2,
            num_workers=0),
        optim_wrapper=dict(
            optimizer=dict(type='SGD', lr=0.1, weight_decay=1e-4),
            paramwise_cfg=dict(norm_decay_mult=0.)),
        train_cfg=dict(by_epoch=True, max_epochs=1),
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1)),
        cfg=dict(marker_of_the_config_dump=1))
    runner.train()
    return capsys.readouterr().out


def test_console_hides_config_environment_and_param_groups(tmp_path, capsys):
    out = _runner_output(tmp_path, capsys)
    # what MMEngine prints unfiltered (the demo's first screen before)
    for text in ('System environment', 'marker_of_the_config_dump',
                 'paramwise_options -- norm.weight', 'Hooks will be executed'):
        assert text in out
    shown = ''.join(_load_demo().console_lines(io.StringIO(out)))
    for text in ('System environment', 'marker_of_the_config_dump',
                 'paramwise_options', 'Hooks will be executed',
                 '(NORMAL      ) IterTimerHook'):
        assert text not in shown
    # progress stays, every progress line of the original
    progress = [line for line in out.splitlines() if 'Epoch(train)' in line]
    assert len(progress) == 2
    assert [line for line in shown.splitlines()
            if 'Epoch(train)' in line] == progress
    # and the log file keeps everything
    log, = glob.glob(str(tmp_path / 'work' / '*' / '*.log'))
    with open(log) as f:
        text = f.read()
    assert 'marker_of_the_config_dump' in text
    assert 'paramwise_options -- norm.weight' in text


def test_demo_uses_every_core_whatever_the_load(monkeypatch, tmp_path):
    demo = _load_demo()
    monkeypatch.delenv('DEMO_THREADS', raising=False)
    monkeypatch.setattr(os, 'getloadavg', lambda: (50.0, 50.0, 50.0))
    seen = []

    class Stop(Exception):
        pass

    def popen(cmd, env, **kwargs):
        seen.append(env)
        raise Stop

    monkeypatch.setattr(demo.subprocess, 'Popen', popen)
    try:
        demo.main(['--work-dir', str(tmp_path)])
    except Stop:
        pass
    assert seen[0]['OMP_NUM_THREADS'] == str(len(os.sched_getaffinity(0)))
    assert cpu_threads() == len(os.sched_getaffinity(0))
    assert seen[0]['PYTHONWARNINGS'].startswith(
        'ignore:pkg_resources is deprecated as an API:UserWarning')
    monkeypatch.setenv('DEMO_THREADS', '1')
    try:
        demo.main(['--work-dir', str(tmp_path)])
    except Stop:
        pass
    assert seen[1]['OMP_NUM_THREADS'] == '1'


def test_third_party_warning_filter_hides_only_those():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        hide_third_party_warnings()
        warnings.warn('pkg_resources is deprecated as an API. See ...',
                      UserWarning)
        warnings.warn('something of ours', UserWarning)
    assert [str(w.message) for w in caught] == ['something of ours']
    # torch's notice on importing cpp_extension without a GPU; others stay
    logger = logging.getLogger('torch.utils.cpp_extension')
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        logger.warning("No CUDA runtime is found, using CUDA_HOME='%s'", '/x')
        logger.warning('Error checking compiler version')
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in records] == [
        'Error checking compiler version'
    ]
    # the same filter handed to a child process through PYTHONWARNINGS
    code = ('import warnings; warnings.warn("pkg_resources is deprecated as '
            'an API. x", UserWarning); warnings.warn("kept", UserWarning)')
    err = subprocess.run([sys.executable, '-c', code],
                         env=dict(os.environ,
                                  PYTHONWARNINGS=python_warnings_env()),
                         capture_output=True,
                         text=True,
                         check=True).stderr
    assert 'kept' in err and 'pkg_resources' not in err


def test_demo_shapes_script(tmp_path):
    root = tmp_path / 'shapes'
    subprocess.run([
        sys.executable,
        osp.join(ROOT, 'mmvmamba', 'datasets', 'demo_shapes.py'), '--root',
        str(root), '--num-train', '2', '--num-val', '1', '--img-size', '64'
    ],
                   check=True,
                   capture_output=True)
    with open(root / 'annotations' / 'instances_train.json') as f:
        coco = json.load(f)
    assert len(coco['images']) == 2 and coco['annotations']
    assert len(os.listdir(root / 'val')) == 1


def test_train_and_test_tools_start_without_third_party_noise(tmp_path):
    """tools/train.py and tools/test.py hide the pkg_resources notice that
    MMEngine's config loading triggers (here up to their first check)."""
    cfg = osp.join(ROOT, 'configs', 'maskrcnn_vmamba_t_coco.py')
    for tool, args in (('train.py', [cfg]),
                       ('test.py', [cfg, str(tmp_path / 'missing.pth')])):
        proc = subprocess.run(
            [sys.executable,
             osp.join(ROOT, 'tools', tool), *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 2, out[-2000:]
        assert '[mmvmamba] error:' in out
        assert 'pkg_resources' not in out
