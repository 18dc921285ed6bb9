"""Package build: metadata lives in setup.cfg.

``mmvmamba.kernels`` is served from the top-level ``kernels/`` folder (see
``package_dir`` in setup.cfg), so it is added to the discovered packages here.

A built package (``pip install .``, a wheel) also carries ``mmvmamba/.mim``:
copies of ``configs/``, ``tools/`` and ``model-index.yml``, where OpenMMLab's
``mim`` looks for them (``mim search|train|test mmvmamba``).
"""
import os.path as osp
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = osp.dirname(osp.abspath(__file__))
#: what mim reads from <package>/.mim
MIM_FILES = ('configs', 'tools', 'model-index.yml')


class BuildWithMim(build_py):
    """build_py, then the mim files into the built package."""

    def run(self) -> None:
        super().run()
        mim = osp.join(self.build_lib, 'mmvmamba', '.mim')
        for name in MIM_FILES:
            src, dst = osp.join(ROOT, name), osp.join(mim, name)
            if osp.isdir(src):
                shutil.copytree(
                    src,
                    dst,
                    dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
            else:
                self.copy_file(src, dst)


packages = find_packages(include=['mmvmamba', 'mmvmamba.*'])
packages += ['mmvmamba.kernels'] + [
    'mmvmamba.kernels.' + p for p in find_packages(where='kernels')
]
setup(packages=packages, cmdclass={'build_py': BuildWithMim})
