"""Package build: metadata lives in setup.cfg.

``mmvmamba.kernels`` is served from the top-level ``kernels/`` folder (see
``package_dir`` in setup.cfg), so it is added to the discovered packages here.
"""
from setuptools import find_packages, setup

packages = find_packages(include=['mmvmamba', 'mmvmamba.*'])
packages += ['mmvmamba.kernels'] + [
    'mmvmamba.kernels.' + p for p in find_packages(where='kernels')
]
setup(packages=packages)
