"""tools/benchmark/cpu_speed.py: the demo Mask R-CNN step with the compiled
CPU core and with the reference core, interleaved, written as JSON."""
import json
import os
import os.path as osp
import sys

from mmvmamba.kernels.ss2d.cpu import has_avx512

from .._tools import run_script

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_maskrcnn_step_rows(tmp_path):
    out = tmp_path / 'cpu.json'
    # against a revision: HEAD's tree, extracted, in a second worker
    against = ['--baseline-rev', 'HEAD'] if osp.isdir(
        osp.join(ROOT, '.git')) else []
    proc = run_script([
        sys.executable, 'tools/benchmark/cpu_speed.py', '--maskrcnn',
        '--no-inference', '--threads', '1', '--repeats', '1', '--json',
        str(out)
    ] + against, ROOT, dict(os.environ))
    assert proc.returncode == 0, proc.stdout[-3000:]
    res = json.loads(out.read_text())['maskrcnn']['threads1']
    # the step with either core, and the core calls alone
    assert {'after', 'before', 'core', 'core_ref'} <= set(res)
    for row in res.values():
        assert row['ms'] > 0
    assert 'demo Mask R-CNN train step' in proc.stdout
    if against:
        res = json.loads(out.read_text())['maskrcnn_against']
        assert res['rev'] == 'HEAD'
        assert set(res['threads1']) == {'this tree', 'HEAD'}
        assert all(row['ms'] > 0 for row in res['threads1'].values())
        assert 'this tree against HEAD' in proc.stdout


def test_avx2_caps(tmp_path):
    # refused with a worker it cannot cap
    proc = run_script([
        sys.executable, 'tools/benchmark/cpu_speed.py', '--avx2', '--maskrcnn',
        '--baseline-rev', 'HEAD'
    ], ROOT, dict(os.environ))
    assert proc.returncode == 2 and 'run them apart' in proc.stdout
    if not has_avx512():
        return
    out = tmp_path / 'cpu.json'
    proc = run_script([
        sys.executable, 'tools/benchmark/cpu_speed.py', '--avx2', '--threads',
        '1', '--batch', '1', '--repeats', '1', '--json',
        str(out)
    ], ROOT, dict(os.environ))
    assert proc.returncode == 0, proc.stdout[-3000:]
    res = json.loads(out.read_text())
    assert res['avx2_caps'] is True
    rows = res['inference']['threads1_batch1']
    assert {'vmamba_t', 'swin_t', 'core'} <= set(rows)
