"""Route MMEngine's checkpoint loading through :func:`mmvmamba.checkpoint.safe_load`.

Since torch 2.6 ``torch.load`` defaults to ``weights_only=True``; MMEngine 0.10.7
checkpoints carry its message hub (``HistoryBuffer`` objects, numpy arrays and
scalars, and ``getattr(HistoryBuffer, 'mean')``), so ``resume=True`` fails with
``Unsupported global``, and MMEngine's http(s) loader still unpickles with
``weights_only=False``. Instead of switching ``weights_only`` off (a checkpoint is
untrusted input) or widening torch's process-wide allow-list, MMEngine's
``CheckpointLoader`` gets one loader for local paths and http(s) URLs: ``safe_load``,
which allow-lists checked stand-ins of those objects for each load only.
"""
import os.path as osp
from typing import Any

SCHEMES = ('', 'http://', 'https://')


def load_from_mmvmamba_safe_load(filename: str,
                                 map_location: Any = None) -> Any:
    """MMEngine ``CheckpointLoader`` scheme: local files and http(s) URLs."""
    from mmvmamba.checkpoint import safe_load
    if not filename.startswith(('http://', 'https://')):
        filename = osp.expanduser(filename)
    return safe_load(filename, map_location)


# MMEngine logs "Loads checkpoint by <name[10:]> backend"
load_from_mmvmamba_safe_load.__name__ = 'load_from_mmvmamba safe_load'


def allow_mmengine_checkpoints() -> None:
    """Register :func:`load_from_mmvmamba_safe_load` for local paths and http(s)
    URLs; idempotent, called on ``import mmvmamba``. Other prefixes
    (``open-mmlab://``, ``s3://``, ...) keep MMEngine's loaders."""
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(
        prefixes=SCHEMES, loader=load_from_mmvmamba_safe_load, force=True)
