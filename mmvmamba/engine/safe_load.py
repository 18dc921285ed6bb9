"""Let ``torch.load(weights_only=True)`` read the checkpoints MMEngine writes.

Since torch 2.6 ``torch.load`` defaults to ``weights_only=True``; MMEngine 0.10.7
checkpoints carry its message hub (``HistoryBuffer`` objects, numpy arrays and
scalars, and bound ``HistoryBuffer`` statistics methods pickled as
``getattr(HistoryBuffer, 'mean')``), so ``resume=True`` fails with
``Unsupported global``. Instead of switching ``weights_only`` off (a checkpoint is
untrusted input), we allow-list exactly those classes. ``getattr`` is replaced by a
guarded version that only resolves HistoryBuffer's statistics methods.
"""
from typing import Any, List

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

_REGISTERED = False
# HistoryBuffer's built-in statistics; custom ones are registered at runtime
_HISTORY_STATISTICS = frozenset({'min', 'max', 'current', 'mean'})


def _guarded_getattr(obj: Any, name: str) -> Any:
    """``getattr`` for the unpickler: only HistoryBuffer statistics methods."""
    allowed = _HISTORY_STATISTICS | set(HistoryBuffer._statistics_methods)
    if obj is HistoryBuffer and name in allowed:
        return getattr(obj, name)
    raise pickle_error(f'getattr({obj!r}, {name!r})')


def pickle_error(what: str) -> Exception:
    import pickle
    return pickle.UnpicklingError(
        f'refusing to unpickle {what}: not something MMEngine writes into a '
        'checkpoint. Only load checkpoints from sources you trust.')


def _numpy_globals() -> List[Any]:
    try:  # numpy >= 2 moved it; 1.x pickles still name numpy.core
        from numpy._core import multiarray
    except ImportError:
        from numpy.core import multiarray
    entries: List[Any] = [np.ndarray, np.dtype]
    for mod in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        entries.append((multiarray._reconstruct, f'{mod}._reconstruct'))
        entries.append((multiarray.scalar, f'{mod}.scalar'))
    dtypes = getattr(np, 'dtypes', None)  # numpy >= 1.25: one class per dtype
    if dtypes is not None:
        entries += [
            getattr(dtypes, n) for n in dir(dtypes)
            if n.endswith('DType') and isinstance(getattr(dtypes, n), type)
        ]
    return entries


def allow_mmengine_checkpoints() -> None:
    """Allow-list what MMEngine writes; idempotent, called on ``import mmvmamba``."""
    global _REGISTERED
    if _REGISTERED or not hasattr(torch.serialization, 'add_safe_globals'):
        return
    torch.serialization.add_safe_globals(
        [HistoryBuffer, (_guarded_getattr, 'builtins.getattr')] +
        _numpy_globals())
    _REGISTERED = True
