"""CPU-runnable parts of the GPU downstream benchmark scripts."""
import json
import os.path as osp
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_maskrcnn_step_speed_runs_on_cpu(tmp_path):
    out = tmp_path / 'step.json'
    proc = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools', 'benchmark', 'maskrcnn_step_speed.py'),
        '--device', 'cpu', '--batch', '1', '--height', '64', '--width', '96',
        '--iters', '1', '--warmup', '0', '--out',
        str(out)
    ],
                          cwd=tmp_path,
                          stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT,
                          text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    res = json.loads(out.read_text())['results']
    assert res['vmamba_t']['sec_per_iter'] > 0
    assert res['swin_t']['sec_per_iter'] > 0
    assert res['vmamba_over_swin'] == (res['vmamba_t']['sec_per_iter'] /
                                       res['swin_t']['sec_per_iter'])
    assert 'VMamba-T / Swin-T step time' in proc.stdout


def test_gpu_scripts_are_valid_bash():
    for name in ('gpu_report.sh', 'gpu_dist.sh', 'device_env.sh'):
        path = osp.join(ROOT, 'tools', 'benchmark', name)
        assert subprocess.run(['bash', '-n', path]).returncode == 0
