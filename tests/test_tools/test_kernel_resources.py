"""tools/benchmark/kernel_resources.py compiles the scan kernels for sm_90 on a
CPU-only machine and reads their registers, spills, shared memory and SASS
instruction counts."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import triton

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'benchmark', 'kernel_resources.py')
NVIDIA_BIN = osp.join(
    osp.dirname(triton.__file__), 'backends', 'nvidia', 'bin', 'cuobjdump')

pytestmark = pytest.mark.skipif(
    not osp.isfile(NVIDIA_BIN), reason='Triton without its NVIDIA tools')


def run(*args, tool=TOOL):
    # the kernel tests' conftest sets TRITON_INTERPRET for this process;
    # the tool compiles real kernels
    env = {k: v for k, v in os.environ.items() if k != 'TRITON_INTERPRET'}
    return subprocess.run([sys.executable, *([tool] if tool else []), *args],
                          capture_output=True,
                          text=True,
                          env=env,
                          cwd=ROOT,
                          timeout=600)


def run_python(code):
    proc = run('-c', code, tool=None)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_static_resources_of_the_launch_configs(tmp_path):
    out = tmp_path / 'res.json'
    proc = run('--shapes', 'T-stage4', '--json', str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data['arch'] == 90
    rows = {r['kernel']: r for r in data['rows']}
    # batch 128 at 7²: the eager dispatch runs the chunked kernels there
    assert sorted(rows) == [
        'bwd', 'bwd_summary', 'chain', 'chunked_bwd', 'chunked_fwd', 'fwd',
        'fwd_summary'
    ]
    # the configuration a GPU run picks (not the interpreter's: no
    # TRITON_INTERPRET, as in the tool)
    code = ('from mmvmamba.kernels.ss2d.config import tile_config; '
            'c = tile_config(768, 48, 7, 7); '
            'print(c["BD"], c["T"], c["warps"])')
    bd, t, warps = map(int, run_python(code).split())
    assert rows['fwd']['BD'] == bd and rows['fwd']['warps'] == warps
    assert rows['bwd']['tile'] == f'T={t}'
    for r in rows.values():
        assert r['shape'] == 'T-stage4'
        assert 0 < r['regs'] <= 255 and r['stack'] >= 0 and r['shared'] >= 0
        assert 0 < r['resident_warps'] <= 64
        assert r['resident_warps'] % r['warps'] == 0
        # SASS counts: loads in every kernel, no transcendental in the chain
        # (the chunked backward writes through float32 atomics, no STG)
        assert r['instrs'] > r['ldg'] > 0
        assert r['stg'] > 0 or r['kernel'] == 'chunked_bwd'
    assert rows['chain']['mufu'] == 0 < rows['fwd']['mufu']
    # the backward's per-pixel dB and dC: sums over a warp's channels
    assert rows['bwd']['shfl'] > 0
    # the persistent backward's tile loop: its instructions per chunk
    assert 0 < rows['bwd']['loop'] == rows['bwd']['per_chunk'] < rows['bwd'][
        'instrs']
    assert rows['chain']['per_chunk'] is None
    assert rows['chunked_bwd']['per_chunk'] is None
    assert rows['chunked_fwd']['tile'] == 'T=32'  # its G is the directions
    for name in ('fwd_summary', 'fwd', 'bwd_summary'):  # one chunk each
        assert rows[name]['loop'] == 0
        assert 0 < rows[name]['per_chunk'] == rows[name]['instrs']
    assert 'T-stage4       bwd_summary' in proc.stdout


def test_resident_warps():
    """Warps per SM from the registers (256-register granules per warp) and
    at most 32 programs per SM: one-warp programs of few registers fill half
    an SM."""
    code = ('import sys; sys.path.insert(0, "tools/benchmark"); '
            'import kernel_resources as kr; '
            'print(kr.resident_warps(46, 1), kr.resident_warps(128, 1), '
            'kr.resident_warps(96, 4), kr.resident_warps(32, 4), '
            'kr.resident_warps(255, 1))')
    assert run_python(code).split() == ['32', '16', '20', '64', '8']


def test_unknown_shape_is_named():
    proc = run('--shapes', 'T-stage9')
    assert proc.returncode == 2
    assert 'unknown shape(s) T-stage9' in proc.stderr
    assert 'T-stage1' in proc.stderr  # lists the known ones


def test_backward_lane_exchange_has_one_channel_per_lane():
    """The backward kernel's lane exchange of the per-pixel dB and dC
    (``LANES``, inline PTX shuffles) is right only where element i of every
    (BD,) vector lives in lane i of the one warp: compiled for sm_90 at the
    launcher's configuration, the kernel's TTGIR has that layout and no
    other, and the exchange's nine shuffles replace the 8 × 5 of separate
    sums per direction."""
    code = '''
import re, sys
sys.path.insert(0, 'tools/benchmark')
import kernel_resources as kr
from mmvmamba.kernels.ss2d import config, kernels
cfg = config.tile_config(96, 6, 56, 56)
assert config.lane_sums(cfg)
c = kr.compile_kernel(kernels.bwd_kernel, dict(BD=cfg['BDB'], T=cfg['T'],
                      ACC=True, LANES=True), cfg['warpsB'], 90)
print(sorted(set(re.findall(r'#ttg\\.\\w+<[^>]*>', c.asm['ttgir']))))
print(c.asm['ptx'].count('shfl.sync.bfly'))
'''
    layouts, shuffles = run_python(code).strip().splitlines()
    assert layouts == ("['#ttg.blocked<{sizePerThread = [1], threadsPerWarp "
                       "= [32], warpsPerCTA = [1], order = [0]}>']")
    assert int(shuffles) == 2 * 9


def test_register_caps(tmp_path):
    """``--regs-b`` (as ``config.TUNE['regsB']``, ``sweep_scan.py``)
    compiles the pair backward under that register cap, and only it: more
    warps fit on an SM."""
    rows = {}
    for cap in (0, 112):
        out = tmp_path / f'res{cap}.json'
        proc = run('--shapes', 'T-stage1', '--regs-b', str(cap), '--json',
                   str(out))
        assert proc.returncode == 0, proc.stderr[-3000:]
        rows[cap] = {r['kernel']: r for r in json.loads(out.read_text())
                     ['rows']}
    assert rows[112]['bwd']['regs'] <= 112 < rows[0]['bwd']['regs']
    assert rows[112]['bwd']['resident_warps'] > rows[0]['bwd'][
        'resident_warps']
    for name in ('fwd_summary', 'bwd_summary', 'fwd', 'chain'):
        assert rows[112][name]['regs'] == rows[0][name]['regs']
