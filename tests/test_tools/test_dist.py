"""tools/dist_train.sh and tools/dist_test.sh with CPU processes (gloo): two
processes on one "node", and two torchrun "nodes" (NNODES=2) on this host;
the replicas must be bit-identical after training."""
import importlib.util
import json
import os
import os.path as osp
import shutil
import signal
import socket
import subprocess
import sys

import pytest
import torch

from mmvmamba.checkpoint import safe_load
from mmvmamba.engine.replicas import state_digest
from .test_train_test import TINY_CFG, run

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DIST_TRAIN = osp.join(ROOT, 'tools', 'dist_train.sh')
needs_bash = pytest.mark.skipif(
    shutil.which('bash') is None, reason='needs bash')
cpu_only = pytest.mark.skipif(
    torch.cuda.is_available(),
    reason='the GPU variant is tools/benchmark/gpu_multi.sh')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def load_tool(*path):
    spec = importlib.util.spec_from_file_location(path[-1][:-3],
                                                  osp.join(ROOT, *path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def checkpoint_digest(path) -> str:
    return state_digest(safe_load(str(path))['state_dict'])


def digests(folder, world_size):
    """The per-rank records of a --replica-digest folder, checked."""
    files = sorted(os.listdir(folder))
    assert files == [f'rank{r}.json' for r in range(world_size)], files
    records = [json.loads((folder / f).read_text()) for f in files]
    assert [r['rank'] for r in records] == list(range(world_size))
    assert {r['world_size'] for r in records} == {world_size}
    assert all(r['num_tensors'] > 100 for r in records)
    return records


@needs_bash
@cpu_only
def test_dist_train_and_test_on_two_cpu_processes(tmp_path):
    (tmp_path / 'tiny.py').write_text(TINY_CFG)
    env = dict(PYTHON=sys.executable, PORT=str(free_port()))
    rc, out = run([
        'bash', DIST_TRAIN, 'tiny.py', '2', '--work-dir', 'run/train',
        '--replica-digest', 'run/replicas'
    ],
                  cwd=tmp_path,
                  env=env)
    assert rc == 0, out[-3000:]
    assert 'Distributed training: True' in out, out[-3000:]
    assert "dist_cfg: {'backend': 'gloo'}" in out
    ckpt = tmp_path / 'run' / 'train' / 'epoch_1.pth'
    assert ckpt.is_file()
    # each rank hashed its own parameters; both equal what rank 0 saved
    records = digests(tmp_path / 'run' / 'replicas', 2)
    assert records[0]['digest'] == records[1]['digest']
    assert records[0]['digest'] == checkpoint_digest(ckpt)
    assert 'replicas identical across 2 rank(s)' in out

    env['PORT'] = str(free_port())
    rc, out = run([
        'bash',
        osp.join(ROOT, 'tools', 'dist_test.sh'), 'tiny.py',
        'run/train/epoch_1.pth', '2', '--work-dir', 'run/test'
    ],
                  cwd=tmp_path,
                  env=env)
    assert rc == 0, out[-3000:]
    assert 'coco/bbox_mAP' in out and 'coco/segm_mAP' in out

    # the GPU report reads the same folders
    report = load_tool('tools', 'benchmark', 'multi_gpu_report.py')
    res = report.run_result(str(tmp_path / 'run'))
    assert res['replicas_identical'] is True, res['replicas']
    assert 'equal to epoch_1.pth' in res['replicas']
    assert res['checkpoint'] == str(ckpt)
    assert [e['epoch'] for e in res['evals']] == [1]
    assert f"coco/bbox_mAP: {res['test_bbox']:.4f}" in out
    assert f"coco/segm_mAP: {res['test_segm']:.4f}" in out


def _kill(procs):
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


@needs_bash
@cpu_only
def test_two_torchrun_nodes_on_one_host(tmp_path):
    """NNODES=2 with NODE_RANK=0/1 and one process each, as on two machines
    (they share the working directory here, as on a shared file system)."""
    (tmp_path / 'tiny.py').write_text(TINY_CFG)
    env = dict(
        os.environ,
        PYTHON=sys.executable,
        OMP_NUM_THREADS='1',
        NNODES='2',
        MASTER_ADDR='127.0.0.1',
        PORT=str(free_port()))
    # no validation: the test is about training across the two nodes
    cmd = [
        'bash', DIST_TRAIN, 'tiny.py', '1', '--work-dir', 'wd',
        '--replica-digest', 'replicas', '--cfg-options', 'val_cfg=None',
        'val_dataloader=None', 'val_evaluator=None'
    ]
    procs, logs = [], []
    try:
        for node in (1, 0):  # the order does not matter: both wait
            log = open(tmp_path / f'node{node}.log', 'w')
            logs.append(log)
            procs.append(
                subprocess.Popen(
                    cmd,
                    cwd=tmp_path,
                    env=dict(env, NODE_RANK=str(node)),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True))
        rcs = [p.wait(timeout=300) for p in procs]
    finally:
        _kill(procs)
        for log in logs:
            log.close()
    out0 = (tmp_path / 'node0.log').read_text()
    out1 = (tmp_path / 'node1.log').read_text()
    assert rcs == [0, 0], f'node 0:\n{out0[-2000:]}\nnode 1:\n{out1[-2000:]}'
    assert 'node 1 of 2: 1 process(es) here' in out1
    assert 'Distributed training: True' in out0
    assert 'Epoch(train) [1][1/1]' in out0  # 4 images, batch 2 on 2 ranks
    records = digests(tmp_path / 'replicas', 2)
    assert [r['node_rank'] for r in records] == [0, 1]
    assert [r['local_rank'] for r in records] == [0, 0]
    assert records[0]['digest'] == records[1]['digest']
    assert records[0]['digest'] == checkpoint_digest(tmp_path / 'wd' /
                                                     'epoch_1.pth')
    assert 'replicas identical across 2 rank(s)' in out0


def launch(tmp_path, nproc='2', **env):
    """dist_launch.sh with ``echo`` as Python: the torchrun command line."""
    proc = subprocess.run(
        ['bash',
         osp.join(ROOT, 'tools', 'dist_launch.sh'), 'train.py', nproc, 'x'],
        cwd=tmp_path,
        env=dict(os.environ, PYTHON='echo', **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True)
    return proc.returncode, proc.stdout, proc.stderr


@needs_bash
def test_dist_launch_passes_the_multi_node_settings(tmp_path):
    rc, out, err = launch(
        tmp_path,
        '4',
        NNODES='3',
        NODE_RANK='2',
        MASTER_ADDR='10.1.2.3',
        PORT='29123')
    assert rc == 0, err
    args = out.split()
    assert args[:2] == ['-m', 'torch.distributed.run']
    for flag in ('--nnodes=3', '--node_rank=2', '--master_addr=10.1.2.3',
                 '--master_port=29123', '--nproc_per_node=4'):
        assert flag in args
    assert args[-2:] == [osp.join(ROOT, 'tools', 'train.py'), 'x']
    assert 'node 2 of 3' in err

    # one machine: the defaults
    env = {k: '' for k in ('NNODES', 'NODE_RANK', 'MASTER_ADDR', 'PORT')}
    rc, out, err = launch(tmp_path, **env)
    assert rc == 0, err
    for flag in ('--nnodes=1', '--node_rank=0', '--master_addr=127.0.0.1',
                 '--master_port=29500', '--nproc_per_node=2'):
        assert flag in out.split()


@needs_bash
@pytest.mark.parametrize('nproc,env,message', [
    ('two', {}, "GPUS (processes per machine) must be a positive integer, "
     "got 'two'"),
    ('0', {}, 'must be a positive integer'),
    ('2', dict(NNODES='2', NODE_RANK='2', MASTER_ADDR='10.0.0.1'),
     'NODE_RANK=2 with NNODES=2: node ranks run from 0 to 1'),
    ('2', dict(NNODES='x'), "NNODES (the number of machines) must be a "
     "positive integer, got 'x'"),
    ('2', dict(NODE_RANK='-1'), "NODE_RANK must be an integer from 0 to "
     "NNODES-1, got '-1'"),
    ('2', dict(NNODES='2', NODE_RANK='1'), 'NNODES=2 needs MASTER_ADDR'),
    ('2', dict(PORT='70000'), "PORT must be a TCP port number (1-65535), "
     "got '70000'"),
])
def test_dist_launch_rejects_inconsistent_settings(tmp_path, nproc, env,
                                                   message):
    full = {k: '' for k in ('NNODES', 'NODE_RANK', 'MASTER_ADDR', 'PORT')}
    full.update(env)
    rc, out, err = launch(tmp_path, nproc, **full)
    assert rc == 2 and out == '', (rc, out, err)
    assert message in err
