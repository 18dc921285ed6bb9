"""CPU-runnable parts of the GPU downstream benchmark scripts."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

from .._tools import run_script
from .test_dist import free_port

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def step_speed(tmp_path, launcher, *args, env=None):
    """maskrcnn_step_speed.py on the CPU (64x96, batch 1, one timed step)."""
    return run_script([
        *launcher,
        osp.join(ROOT, 'tools', 'benchmark', 'maskrcnn_step_speed.py'),
        '--device', 'cpu', '--batch', '1', '--height', '64', '--width', '96',
        '--iters', '1', *args
    ], tmp_path, env)


def test_maskrcnn_step_speed_runs_on_cpu(tmp_path):
    out = tmp_path / 'step.json'
    proc = step_speed(tmp_path, [sys.executable], '--warmup', '0', '--out',
                      str(out))
    assert proc.returncode == 0, proc.stdout[-3000:]
    res = json.loads(out.read_text())['results']
    assert res['vmamba_t']['sec_per_iter'] > 0
    assert res['swin_t']['sec_per_iter'] > 0
    assert res['vmamba_over_swin'] == (res['vmamba_t']['sec_per_iter'] /
                                       res['swin_t']['sec_per_iter'])
    # the model step on device-resident data, the headline
    assert res['vmamba_t']['model_step_sec'] > 0
    assert res['vmamba_over_swin_model_step'] == (
        res['vmamba_t']['model_step_sec'] / res['swin_t']['model_step_sec'])
    assert 'VMamba-T / Swin-T model step time' in proc.stdout


def test_gpu_scripts_are_valid_bash():
    for name in ('gpu_speed.sh', 'gpu_multi.sh', 'device_env.sh'):
        path = osp.join(ROOT, 'tools', 'benchmark', name)
        assert subprocess.run(['bash', '-n', path]).returncode == 0


def test_maskrcnn_step_speed_data_parallel_on_two_cpu_processes(tmp_path):
    """The multi-GPU throughput path (torchrun + DDP) with gloo."""
    out = tmp_path / 'speed_n2.json'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    torchrun = [
        sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node',
        '2', '--master_port',
        str(free_port())
    ]
    proc = step_speed(tmp_path, torchrun, '--models', 'vmamba_t', '--warmup',
                      '1', '--out', str(out), env=env)
    assert proc.returncode == 0, proc.stdout[-3000:]
    data = json.loads(out.read_text())
    assert data['world_size'] == 2
    res = data['results']['vmamba_t']
    assert res['images_per_sec'] == pytest.approx(2 * 1 /
                                                  res['sec_per_iter'])
    # rank 0 alone reports
    assert proc.stdout.count('img/s on 2 process(es)') == 1


def test_gpu_multi_plan(tmp_path):
    """PLAN_ONLY=1: the commands for N = 1, 2, 4 of 4 GPUs, without GPUs."""
    script = osp.join(ROOT, 'tools', 'benchmark', 'gpu_multi.sh')

    def plan(*args, **env):
        return subprocess.run(['bash', script, *args],
                              cwd=ROOT,
                              env=dict(
                                  os.environ,
                                  PLAN_ONLY='1',
                                  OUT=str(tmp_path / 'out'),
                                  **env),
                              stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE,
                              text=True)

    proc = plan(NGPUS='4')
    assert proc.returncode == 0, proc.stderr
    cmds = [ln[2:] for ln in proc.stdout.splitlines() if ln.startswith('+ ')]
    train = [c for c in cmds if 'dist_train.sh' in c and 'NNODES' not in c]
    test = [c for c in cmds if 'dist_test.sh' in c]
    speed = [c for c in cmds if 'maskrcnn_step_speed.py' in c]
    for n, (tr, te, sp) in zip((1, 2, 4), zip(train, test, speed)):
        assert (f'maskrcnn_vmamba_t_demo-shapes.py {n} --work-dir '
                f'{tmp_path}/out/demo_n{n}/train --replica-digest '
                f'{tmp_path}/out/demo_n{n}/replicas') in tr
        assert f'<last checkpoint> {n} --work-dir' in te
        assert f'--nproc_per_node {n} ' in sp
        assert '--amp --batch 2 --height 800 --width 1344' in sp
    assert len(train) == len(test) == len(speed) == 3
    nodes = [c for c in cmds if 'NNODES=2' in c]
    assert len(nodes) == 2
    for rank, cmd in zip((1, 0), nodes):
        assert (f'CUDA_VISIBLE_DEVICES={rank} NNODES=2 NODE_RANK={rank} '
                'MASTER_ADDR=127.0.0.1 PORT=29670') in cmd
    # ports differ between the runs
    ports = [c.split('PORT=')[1].split()[0] for c in cmds if 'PORT=' in c]
    assert len(set(ports)) == len(ports) - 1  # the two nodes share one

    proc = plan('1', '2', NGPUS='8', PARTS='speed')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count('+ ') == 2
    proc = plan('4', NGPUS='2')
    assert proc.returncode == 2
    assert 'asked for 4 GPUs but 2 are visible' in proc.stderr
    proc = plan(NGPUS='2', PARTS='demo speeed')
    assert proc.returncode == 2 and "unknown part 'speeed'" in proc.stderr


def _speed(out, n, vmamba, swin):
    (out / f'speed_n{n}.json').write_text(
        json.dumps(
            dict(
                args=dict(batch=2, height=800, width=1344, amp=True),
                world_size=n,
                device_name='GPU-X',
                results=dict(
                    vmamba_t=dict(images_per_sec=vmamba),
                    swin_t=dict(images_per_sec=swin)))))


def _demo(out, n, box, digests):
    run = out / f'demo_n{n}'
    ts = run / 'test' / '20260101_000000'
    ts.mkdir(parents=True)
    (ts / '20260101_000000.json').write_text(
        json.dumps({
            'coco/bbox_mAP': box,
            'coco/segm_mAP': box + 0.1
        }))
    (run / 'replicas').mkdir()
    for r, d in enumerate(digests):
        (run / 'replicas' / f'rank{r}.json').write_text(
            json.dumps(dict(rank=r, world_size=len(digests), digest=d)))
    (run / 'train_seconds').write_text('87\n')


def test_multi_gpu_report_table(tmp_path):
    report = [
        sys.executable,
        osp.join(ROOT, 'tools', 'benchmark', 'multi_gpu_report.py'),
        str(tmp_path)
    ]
    _speed(tmp_path, 1, 10., 20.)
    _speed(tmp_path, 2, 19., 40.)
    _speed(tmp_path, 4, 36., 72.)
    _demo(tmp_path, 1, 0.75, ['a' * 64])
    _demo(tmp_path, 2, 0.71, ['b' * 64] * 2)
    _demo(tmp_path, 4, 0.62, ['c' * 64] * 4)
    proc = subprocess.run(
        report, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / 'multi_gpu.md').read_text()
    assert md.strip() == proc.stdout.strip()
    # efficiency = throughput_N / (N * throughput_1)
    assert '| 1 | 10.00 | 100% | 20.00 | 100% | 0.50 |' in md
    assert '| 2 | 19.00 | 95% | 40.00 | 100% | 0.47 |' in md
    assert '| 4 | 36.00 | 90% | 72.00 | 90% | 0.50 |' in md
    assert 'batch 2 per GPU, 800x1344, AMP=True, GPU-X' in md
    # the demo: mAP beside the 1-GPU run, within the demo noise or not
    assert '| 2 | 87 | n/a | 0.710 | 0.810 | -0.040 (within) | yes |' in md
    assert '| 4 | 87 | n/a | 0.620 | 0.720 | -0.130 (outside) | yes |' in md
    res = json.loads((tmp_path / 'multi_gpu.json').read_text())
    assert res['demo']['2']['replicas_identical'] is True

    # a run whose replicas differ fails the report
    _demo(tmp_path, 8, 0.7, ['c' * 64] * 7 + ['d' * 64])
    proc = subprocess.run(
        report, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.returncode == 1
    assert '| 8 |' in proc.stdout and '**no**' in proc.stdout
    assert 'replicas differ in runs [8]' in proc.stderr


def test_ab_stage_base_tree_and_comparison(tmp_path):
    """gpu_speed.sh's ab stage: prepare_base.sh puts a revision's sources in
    .device/base, where ``mmvmamba.kernels`` is that revision's (not the
    installed tree's); bench_kernels.py --compare sets the two trees' times
    side by side (the fastest run of each)."""
    if subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=ROOT,
                      capture_output=True).returncode != 0:
        pytest.skip('not a git checkout')
    repo = tmp_path / 'repo'
    subprocess.run(['git', 'clone', '-q', ROOT, str(repo)], check=True)
    script = osp.join(ROOT, 'tools', 'benchmark', 'prepare_base.sh')
    proc = subprocess.run(['bash', script, 'HEAD'],
                          cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    base = repo / '.device' / 'base'
    sha = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=repo,
                         capture_output=True, text=True).stdout.strip()
    assert (base / 'REV').read_text().strip() == sha
    env = dict(os.environ, TRITON_INTERPRET='1')
    found = subprocess.run(
        [sys.executable, '-c',
         'import mmvmamba.kernels as k; print(k.__file__)'],
        cwd=base, capture_output=True, text=True, env=env)
    assert found.returncode == 0, found.stderr[-2000:]
    assert found.stdout.strip() == str(base / 'kernels' / '__init__.py')
    bad = subprocess.run(['bash', script, 'nope'],
                         cwd=repo, capture_output=True, text=True)
    assert bad.returncode != 0
    # a named candidate for AB_TREES beside the base; 'new' (this tree) and
    # 'wheels' are taken, and a name is one plain word
    named = subprocess.run(['bash', script, 'HEAD', 'cand1'],
                           cwd=repo, capture_output=True, text=True)
    assert named.returncode == 0, named.stderr
    assert (repo / '.device' / 'cand1' / 'REV').read_text().strip() == sha
    assert (repo / '.device' / 'cand1' / 'kernels' / 'ss2d').is_dir()
    for name in ('new', 'wheels', '../x', 'a b'):
        taken = subprocess.run(['bash', script, 'HEAD', name],
                               cwd=repo, capture_output=True, text=True)
        assert taken.returncode == 2 and 'NAME' in taken.stderr, name

    def result(path, fwd, fb):
        row = dict(shape='T-stage1', fwd_ms=fwd, fwd_bwd_ms=fb,
                   floor_fwd_ms=0.06, floor_fwd_bwd_ms=0.15,
                   deterministic=True)
        path.write_text(json.dumps(dict(rows=[row])))
        return str(path)

    base_runs = [result(tmp_path / 'b1.json', 1.5, 5.0),
                 result(tmp_path / 'b2.json', 1.4, 5.2)]
    new_runs = [result(tmp_path / 'n1.json', 0.7, 3.0)]
    out = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools', 'benchmark', 'bench_kernels.py'), '--compare',
        ','.join(base_runs), ','.join(new_runs)
    ], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert ('| T-stage1 | 1.400 / 5.000 | 0.700 / 3.000 | 0.50, 0.60 | 20.0 '
            '| yes |') in out.stdout
