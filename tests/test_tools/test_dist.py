"""tools/dist_train.sh and tools/dist_test.sh with 2 CPU processes (gloo)."""
import os.path as osp
import shutil
import socket
import sys

import pytest
import torch

from .test_train_test import TINY_CFG, run

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which('bash') is None, reason='needs bash')
@pytest.mark.skipif(
    torch.cuda.is_available(), reason='the GPU variant runs on the H100')
def test_dist_train_and_test_on_two_cpu_processes(tmp_path):
    (tmp_path / 'tiny.py').write_text(TINY_CFG)
    env = dict(PYTHON=sys.executable, PORT=str(free_port()))
    rc, out = run([
        'bash',
        osp.join(ROOT, 'tools', 'dist_train.sh'), 'tiny.py', '2',
        '--work-dir', 'wd'
    ],
                  cwd=tmp_path,
                  env=env)
    assert rc == 0, out[-3000:]
    assert 'Distributed training: True' in out, out[-3000:]
    assert "dist_cfg: {'backend': 'gloo'}" in out
    assert (tmp_path / 'wd' / 'epoch_1.pth').is_file()

    env['PORT'] = str(free_port())
    rc, out = run([
        'bash',
        osp.join(ROOT, 'tools', 'dist_test.sh'), 'tiny.py', 'wd/epoch_1.pth',
        '2', '--work-dir', 'wd_test'
    ],
                  cwd=tmp_path,
                  env=env)
    assert rc == 0, out[-3000:]
    assert 'coco/bbox_mAP' in out and 'coco/segm_mAP' in out
