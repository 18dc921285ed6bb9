"""A plain source tree imports ``mmvmamba.kernels`` from its ``kernels/``."""
import os.path as osp
import shutil
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_plain_clone_imports_its_kernels(tmp_path):
    # a copy of the tree, nothing installed from it, no link: the editable
    # install of the repository would serve ROOT/kernels, the copy must
    # serve its own
    for name in ('mmvmamba', 'kernels'):
        shutil.copytree(
            osp.join(ROOT, name),
            str(tmp_path / name),
            ignore=shutil.ignore_patterns('__pycache__', 'kernels'))
    shutil.copy(osp.join(ROOT, 'setup.cfg'), str(tmp_path))
    assert not (tmp_path / 'mmvmamba' / 'kernels').exists()
    out = subprocess.run(
        [
            sys.executable, '-c',
            'import mmvmamba.kernels as k, mmvmamba.kernels.ss2d.reference as r;'
            'print(k.__file__); print(r.__file__)'
        ],
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        check=True).stdout.split()
    assert out == [
        str(tmp_path / 'kernels' / '__init__.py'),
        str(tmp_path / 'kernels' / 'ss2d' / 'reference.py')
    ]
