"""The mmvmamba child registry resolves from mmdet, mmseg and mmpretrain."""
import subprocess
import sys

import pytest
import torch.nn as nn
from mmengine.registry import DefaultScope

from mmvmamba.registry import MODELS


@MODELS.register_module(force=True)
class _RegistryProbe(nn.Module):

    def __init__(self, width=3):
        super().__init__()
        self.width = width


def test_import_pulls_no_downstream_package():
    code = ('import sys, mmvmamba, mmvmamba.kernels; '
            'bad = [m for m in ("mmdet", "mmseg", "mmpretrain") '
            'if m in sys.modules]; print(bad)')
    out = subprocess.run([sys.executable, '-c', code],
                         capture_output=True,
                         text=True,
                         check=True)
    assert out.stdout.strip() == '[]'


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'mmpretrain'])
def test_cross_scope_build(scope):
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    with DefaultScope.overwrite_default_scope(scope):
        m = registry.build(dict(type='mmvmamba._RegistryProbe', width=7))
    assert isinstance(m, _RegistryProbe) and m.width == 7
    with pytest.raises(KeyError):
        registry.build(dict(type='mmvmamba._NoSuchModule'))


def test_scope_name():
    assert MODELS.scope == 'mmvmamba'
