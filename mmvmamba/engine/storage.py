"""Files that MMEngine writes appear whole or not at all.

MMEngine writes checkpoints (``CheckpointHook``, ``Runner.save_checkpoint``)
and its other local outputs through the ``local`` file backend, whose
``put`` opens the target and writes into it: a run killed mid-save leaves
a truncated ``epoch_N.pth`` that ``last_checkpoint`` points at.
:class:`AtomicLocalBackend` writes through a temporary file beside the
target that replaces it only when complete
(:func:`mmvmamba.checkpoint.files.write_atomic`); importing mmvmamba
registers it as the ``local`` backend.
"""
from pathlib import Path
from typing import Union

from mmengine.fileio.backends import LocalBackend, register_backend

from ..checkpoint.files import write_atomic

__all__ = ['AtomicLocalBackend', 'atomic_local_writes']


class AtomicLocalBackend(LocalBackend):
    """MMEngine's local backend with all-or-nothing ``put``/``put_text``."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        write_atomic(str(filepath), lambda f: f.write(obj))

    def put_text(self,
                 obj: str,
                 filepath: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
        data = obj.encode(encoding)
        write_atomic(str(filepath), lambda f: f.write(data))


def atomic_local_writes() -> None:
    """Make :class:`AtomicLocalBackend` MMEngine's ``local`` backend."""
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')
