"""The errors of the checkpoint pipeline, and bounded formatting of what a
file holds.

Every error is a :class:`CheckpointError` (so the tools catch one class) and
also the built-in type callers caught before (``pickle.UnpicklingError``,
``ValueError``, ``KeyError``, ``FileNotFoundError``, ``RuntimeError``). A
message names the file and the fix.

Everything put into a message from file content goes through
:func:`bounded_repr`, which stops after ``limit`` characters *while* building:
a pickle of a few hundred bytes can hold nested tuples that reuse the memo
(each level holding the previous one twice), whose full ``repr`` is
exponential in the depth.
"""
import pickle
from typing import Any, Iterable

from torch import Tensor


class CheckpointError(Exception):
    """A checkpoint could not be used; the message says why and what to do."""


class UnsafeCheckpointError(CheckpointError, pickle.UnpicklingError):
    """A checkpoint holds more than weights and the known objects of official
    VMamba and OpenMMLab files; the message names what and says what to do."""


class CheckpointFormatError(CheckpointError, ValueError):
    """The file is not a readable PyTorch checkpoint (an image, a config, a
    truncated or corrupt file, tensors without data); the message names it
    and says what to pass."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No checkpoint file at the path (nothing there, or a folder)."""

    def __str__(self) -> str:  # FileNotFoundError would add errno noise
        return str(self.args[0]) if self.args else ''


class CheckpointContentError(CheckpointError, KeyError):
    """The checkpoint holds no weights where they are expected, or keys that
    are not strings."""

    def __str__(self) -> str:  # KeyError quotes its message
        return str(self.args[0]) if self.args else ''


class CheckpointMismatchError(CheckpointError, RuntimeError):
    """A checkpoint does not fit the configured model."""


class NonFiniteWeightsError(CheckpointError, ValueError):
    """Weights hold NaN or Inf; every output of the model would too."""


class CheckpointWriteError(CheckpointError, OSError):
    """An output path that would lose data (the input itself, a folder)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ''


class CheckpointDownloadError(CheckpointError, RuntimeError):
    """A checkpoint URL could not be fetched; the message says what to do."""


_ATOMS = (bool, float, complex, type(None))


def bounded_repr(obj: Any, limit: int = 200, depth: int = 6) -> str:
    """``repr(obj)`` cut at ``limit`` characters, built only that far.

    Containers are entered at most ``depth`` levels; tensors show their
    shape and dtype; other objects their type. The work is bounded by
    ``limit``, whatever ``obj`` is.
    """
    out, budget = [], [limit + 1]

    def emit(text: str) -> None:
        out.append(text[:budget[0]])
        budget[0] -= len(text)

    def walk(o: Any, level: int) -> None:
        if budget[0] <= 0:
            return
        if isinstance(o, (str, bytes, bytearray)):
            emit(repr(o[:budget[0]]))
        elif type(o) is int:
            emit(repr(o) if o.bit_length() <= 64 else
                 f'<int of {o.bit_length()} bits>')
        elif isinstance(o, _ATOMS):
            emit(repr(o))
        elif isinstance(o, Tensor):
            emit(f'<{type(o).__name__} {tuple(o.shape)} {o.dtype}>')
        elif isinstance(o, (dict, list, tuple, set, frozenset)):
            open_, close = ('[]' if isinstance(o, list) else
                            '()' if isinstance(o, tuple) else '{}')
            if type(o) not in (dict, list, tuple, set):
                emit(type(o).__name__)
            emit(open_)
            if level >= depth:
                emit('...' if len(o) else '')
            else:
                items = o.items() if isinstance(o, dict) else o
                for i, item in enumerate(items):
                    if budget[0] <= 0:
                        break
                    if i:
                        emit(', ')
                    if isinstance(o, dict):
                        walk(item[0], level + 1)
                        emit(': ')
                        walk(item[1], level + 1)
                    else:
                        walk(item, level + 1)
                if isinstance(o, tuple) and len(o) == 1:
                    emit(',')
            emit(close)
        elif isinstance(o, type):
            emit(f"<class '{o.__module__}.{o.__qualname__}'>")
        else:
            kind = type(o)
            name = getattr(o, '__qualname__', None)
            emit(f'<{kind.__module__}.{kind.__qualname__}'
                 f'{" " + name if isinstance(name, str) else ""}>')

    walk(obj, 0)
    text = ''.join(out)
    return text if len(text) <= limit else text[:limit - 3] + '...'


def fmt_keys(keys: Iterable[Any], limit: int = 8) -> str:
    """The first ``limit`` keys, then how many more."""
    keys = list(keys)
    shown = ', '.join(
        k[:120] if isinstance(k, str) else bounded_repr(k, 80)
        for k in keys[:limit])
    return shown + (f', ... (+{len(keys) - limit})'
                    if len(keys) > limit else '')
