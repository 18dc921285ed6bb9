"""mmvmamba: VMamba backbones for OpenMMLab (mmdet, mmseg, mmpretrain).

Importing it registers the ``mmvmamba`` model scope and routes MMEngine's
checkpoint loading (``load_from``, ``resume``, ``init_cfg``; every scheme:
local files, http(s), ``open-mmlab://``, ``torchvision://``, ``s3://``, ...)
through :func:`mmvmamba.checkpoint.safe_load`, the weights-only loader that
also reads official VMamba files; it never imports mmdet, mmseg or
mmpretrain. MMEngine's local file writes (checkpoints included) become
all-or-nothing (:mod:`mmvmamba.engine.storage`).
"""
import importlib.abc
import importlib.util
import os.path as osp
import sys


class _SourceKernels(importlib.abc.MetaPathFinder):
    """Serves ``mmvmamba.kernels`` from the source tree's top-level
    ``kernels/`` (what ``package_dir`` in setup.cfg does for an install)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def find_spec(self, name, path=None, target=None):
        if name != 'mmvmamba.kernels':
            return None
        return importlib.util.spec_from_file_location(
            name,
            osp.join(self.folder, '__init__.py'),
            submodule_search_locations=[self.folder])


def _serve_source_kernels() -> None:
    """In a plain clone (nothing installed, no link) ``mmvmamba/kernels``
    does not exist; the repository's ``kernels/`` stands in for it."""
    here = osp.dirname(osp.abspath(__file__))
    folder = osp.join(osp.dirname(here), 'kernels')
    if (not osp.exists(osp.join(here, 'kernels'))
            and osp.isfile(osp.join(folder, '__init__.py'))
            and osp.isfile(osp.join(osp.dirname(here), 'setup.cfg'))
            and not any(isinstance(f, _SourceKernels) for f in sys.meta_path)):
        sys.meta_path.insert(0, _SourceKernels(folder))


_serve_source_kernels()

from .checkpoint import allow_mmengine_checkpoints  # noqa: E402
from .engine.storage import atomic_local_writes  # noqa: E402
from .registry import MODELS  # noqa: E402
from .version import __version__  # noqa: E402

allow_mmengine_checkpoints()
atomic_local_writes()

__all__ = ['__version__', 'MODELS']
