"""Safe loading and key conversion of VMamba checkpoints.

Checkpoints are untrusted input. :func:`safe_load`, the one loader of the
project, reads them with PyTorch's weights-only unpickler
(``torch.load(weights_only=True)``). The foreign objects that official VMamba
files (a yacs ``CfgNode``) and MMEngine files (a message hub with
``HistoryBuffer`` and numpy objects) hold are allow-listed for each load only,
as checked stand-ins registered under the foreign names: nothing of a foreign
class is imported, called or executed, and a file cannot change any global
state. Anything else raises :class:`UnsafeCheckpointError`, which names it.

Key conversions are pure functions (state dict in, state dict out), used by
``VMamba.init_weights`` and by ``tools/convert_checkpoint.py``.

Names: *official* = the official classification model (``layers.*``,
``classifier.norm.*``, ``classifier.head.*``); *backbone* = :class:`VMamba`
(``layers.*``, ``outnorm{i}.*``); *mmpretrain* = an ``ImageClassifier`` with a
VMamba backbone, ``GlobalAveragePooling`` neck and ``LinearClsHead``
(``backbone.*``, ``head.fc.*``). The official classifier is
``classifier.norm → avgpool → head``, which is exactly ``outnorm3 → GAP → fc``.
"""
import contextlib
import math
import os
import os.path as osp
import pickle
import pickletools
import re
import threading
import time
from collections import Counter, OrderedDict
from typing import Any, Dict, Iterator, List, Optional, Tuple
from urllib.parse import unquote, urlparse

import numpy as np
import torch
from mmengine.logging import print_log
from torch import Tensor

__all__ = [
    'PickledObject', 'UnsafeCheckpointError', 'safe_load',
    'extract_state_dict', 'convert_legacy_keys', 'strip_prefix',
    'official_to_backbone', 'official_to_mmpretrain', 'to_backbone_state_dict',
    'infer_arch', 'load_state_dict_checked', 'load_pretrained',
    'CheckpointMismatchError', 'CheckpointDownloadError',
    'CheckpointFormatError', 'cached_download', 'wait_for_file'
]

StateDict = Dict[str, Tensor]

# --------------------------------------------------------------------------
# Safe loading
# --------------------------------------------------------------------------
#
# One loader for the whole project: PyTorch's weights-only unpickler
# (``torch.load(weights_only=True)``), which refuses every global that is not
# allow-listed and restricts BUILD, REDUCE, NEWOBJ, APPEND and SETITEM(S) by
# type. The foreign objects that official VMamba and MMEngine files contain
# are allow-listed, for the duration of one load only, as *stand-ins*: our own
# inert classes and functions registered under the foreign names
# (``torch.serialization.safe_globals([(stand_in, 'yacs.config.CfgNode')])``).
# No foreign class or function is ever imported or called, and the stand-ins
# check every state a pickle hands them, so a file can neither run code nor
# change any global state (functions' defaults, class attributes, numpy's
# dtypes, HistoryBuffer's statistics methods).


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds more than weights and the known objects of official
    VMamba and OpenMMLab files; the message names what and says what to do."""


class PickledObject(dict):
    """Inert stand-in for an object of a foreign class (yacs ``CfgNode``,
    ``argparse.Namespace``) of a checkpoint.

    Holds the dict items the pickle stored and, in :attr:`state`, the
    attributes it set; nothing of the original class is imported or run.
    """

    pickled_module = ''
    pickled_name = ''
    state: Optional[dict] = None

    def __reduce__(self):
        # re-saved, it is a plain OrderedDict, which weights_only reads
        return (OrderedDict, (), None, None, iter(self.items()))

    def __repr__(self) -> str:
        return (f'<PickledObject {self.pickled_module}.{self.pickled_name} '
                f'(not loaded) {dict.__repr__(self)}>')


_PLACEHOLDERS: Dict[Tuple[str, str], type] = {}


def _placeholder(module: str, name: str) -> type:
    key = (module, name)
    if key not in _PLACEHOLDERS:
        _PLACEHOLDERS[key] = type(
            re.sub(r'\W', '_', name) or 'Object', (PickledObject, ),
            dict(pickled_module=module, pickled_name=name))
    return _PLACEHOLDERS[key]


_LOAD = threading.local()  # what the stand-ins of the running load made


def _made_placeholders() -> list:
    """(object, PickledObject class) the running load made."""
    made = getattr(_LOAD, 'placeholders', None)
    return [] if made is None else made


def _refuse(what: str, why: str) -> pickle.UnpicklingError:
    return pickle.UnpicklingError(f'{what}: {why}')


class _ForeignClass:
    """Registered under a foreign class's name. NEWOBJ and REDUCE on it give
    an ``OrderedDict`` (the one container type the weights-only unpickler lets
    a pickle fill with SETITEMS and BUILD: items, and attributes of this new
    object only); :func:`safe_load` then turns it into a
    :class:`PickledObject`. Constructor arguments are dropped unseen."""

    placeholder: type = PickledObject

    def __new__(cls, *args, **kwargs):
        obj: OrderedDict = OrderedDict()
        _made_placeholders().append((obj, cls.placeholder))
        return obj


def _foreign_class(path: str) -> type:
    module, _, name = path.rpartition('.')
    return type(f'ForeignClass_{name}', (_ForeignClass, ),
                dict(placeholder=_placeholder(module, name)))


# numpy: numbers and strings only; a dtype's or array's pickled state goes
# through these checks, never to numpy's own __setstate__ (which a crafted
# state can make crash, or turn into an object dtype read from raw bytes).
_NUMPY_DTYPE_SPEC = re.compile(r'b1|[iu][1248]|f[248]|c(8|16)|[SU][0-9]+')


class _NumpyDtype:
    """Stand-in for ``numpy.dtype``: numeric and string dtypes only."""

    dtype: Optional[np.dtype] = None

    def __init__(self,
                 spec: Any = None,
                 align: Any = False,
                 copy: Any = False) -> None:
        if not (isinstance(spec, str) and _NUMPY_DTYPE_SPEC.fullmatch(spec)):
            raise _refuse(f'numpy.dtype({spec!r})',
                          'only numeric and string numpy dtypes are loaded')
        self.dtype = np.dtype(spec)

    def __setstate__(self, state: Any) -> None:
        ok = (
            self.dtype is not None and isinstance(state, tuple)
            and len(state) in (8, 9) and state[1] in ('<', '>', '|', '=')
            and all(s is None for s in state[2:5])
            and (len(state) == 8 or state[8] is None))
        if not ok:
            raise _refuse(f'the numpy dtype state {state!r}',
                          'only plain numeric and string dtypes are loaded')
        if state[1] in '<>':
            self.dtype = self.dtype.newbyteorder(state[1])


def _numpy_dtype(obj: Any) -> np.dtype:
    if isinstance(obj, _NumpyDtype) and obj.dtype is not None:
        return obj.dtype
    raise _refuse(f'{obj!r} as a numpy dtype', 'it is not a loaded dtype')


class _NumpyArray:
    """Stand-in for ``numpy.ndarray``: ``_reconstruct`` makes one, BUILD
    checks the state and makes the array, :func:`safe_load` swaps it in."""

    array: Optional[np.ndarray] = None

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1
                and self.array is None):
            raise _refuse(f'the numpy array state {state!r:.200}',
                          'not the state numpy writes')
        _, shape, dtype, fortran, data = state
        dtype = _numpy_dtype(dtype)
        if not (isinstance(shape, tuple)
                and all(type(n) is int and n >= 0
                        for n in shape) and type(fortran) is bool):
            raise _refuse(f'the numpy array shape {shape!r}', 'not a shape')
        if not isinstance(data, (bytes, bytearray)):
            raise _refuse(f'numpy array data of type {type(data).__name__}',
                          'object arrays are not loaded')
        if math.prod(shape) * dtype.itemsize != len(data):
            raise _refuse(f'{len(data)} bytes of numpy array data',
                          f'they do not fit shape {shape} of {dtype}')
        self.array = np.frombuffer(
            bytes(data), dtype=dtype).reshape(
                shape, order='F' if fortran else 'C').copy(order='K')


def _numpy_reconstruct(subtype: Any,
                       shape: Any = None,
                       typecode: Any = None) -> _NumpyArray:
    """Stand-in for ``numpy.core.multiarray._reconstruct``."""
    if subtype is not _NumpyArray:
        raise _refuse(f'numpy _reconstruct of {subtype!r}',
                      'only plain numpy arrays are loaded')
    return _NumpyArray()  # swapped for its array by safe_load


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    """Stand-in for ``numpy.core.multiarray.scalar``."""
    dtype = _numpy_dtype(dtype)
    if not (isinstance(data, bytes) and len(data) == dtype.itemsize):
        raise _refuse(f'numpy scalar data {data!r:.80}',
                      f'not {dtype.itemsize} bytes of {dtype}')
    return np.frombuffer(data, dtype=dtype)[0]


def _as_array(obj: Any, what: str) -> np.ndarray:
    if isinstance(obj, _NumpyArray) and obj.array is not None:
        return obj.array
    raise _refuse(f'{what} = {obj!r:.80}', 'not a numpy array')


class _StatisticsMethod(str):
    """What ``getattr(HistoryBuffer, name)`` gives in a checkpoint: the name,
    never resolved to a function."""


class _HistoryBuffer:
    """Stand-in for MMEngine's ``HistoryBuffer``. BUILD checks the state and
    turns the object into a real ``HistoryBuffer``; its own ``__setstate__``
    is not used, since it adds the pickled statistics methods to the class
    (global state, called later by the logger)."""

    _KEYS = frozenset(
        ('_log_history', '_count_history', 'max_length', 'statistics_methods'))

    def __setstate__(self, state: Any) -> None:
        from mmengine.logging import HistoryBuffer
        if not (isinstance(state, dict) and set(state) <= self._KEYS
                and {'_log_history', '_count_history'} <= set(state)):
            raise _refuse(f'the HistoryBuffer state {state!r:.200}',
                          f'expected the keys {sorted(self._KEYS)}')
        arrays = {
            k: _as_array(state[k], k)
            for k in ('_log_history', '_count_history')
        }
        for key, array in arrays.items():
            if array.ndim != 1 or array.dtype.kind not in 'biuf':
                raise _refuse(
                    f'HistoryBuffer.{key} of {array.dtype} and '
                    f'shape {array.shape}', 'expected a 1-d array of numbers')
        max_length = state.get('max_length', 1000000)
        methods = state.get('statistics_methods', {})
        if not (type(max_length) is int and max_length > 0
                and isinstance(methods, dict) and all(
                    isinstance(v, _StatisticsMethod)
                    for v in methods.values())):
            raise _refuse(
                f'the HistoryBuffer max_length {max_length!r} or '
                f'statistics_methods {methods!r:.200}',
                'not what MMEngine writes')
        # the statistics methods are HistoryBuffer's own, registered on
        # import; the pickled names are dropped
        self.__class__ = HistoryBuffer
        self.__dict__.update(max_length=max_length, **arrays)
        self._set_default_statistics()  # as HistoryBuffer.__setstate__


def _history_buffer_getattr(obj: Any, name: Any) -> _StatisticsMethod:
    """Stand-in for ``builtins.getattr``: a HistoryBuffer method name only."""
    if (obj is _HistoryBuffer and isinstance(name, str)
            and name.isidentifier() and not name.startswith('_')):
        return _StatisticsMethod(name)
    raise _refuse(
        f'builtins.getattr({obj!r}, {name!r:.80})',
        "a checkpoint may name only MMEngine's HistoryBuffer "
        'statistics methods')


def _empty_bytes(*args: Any) -> bytes:
    """Stand-in for ``builtins.bytes``: protocol 2 pickles ``b''`` (the data
    of an empty numpy array) as ``bytes()``; nothing else is made."""
    if args:
        raise _refuse(f'builtins.bytes{args!r:.80}',
                      "only bytes() (that is b'') is loaded")
    return b''


#: (stand-in, foreign name) for :func:`torch.serialization.safe_globals`
_STAND_INS: Tuple[Tuple[Any, str], ...] = (
    *((_foreign_class(path), path)
      for path in ('yacs.config.CfgNode', 'argparse.Namespace')),
    (_empty_bytes, 'builtins.bytes'),
    (_NumpyDtype, 'numpy.dtype'),
    (_NumpyArray, 'numpy.ndarray'),
    *((stand_in, f'{module}.{name}')
      for module in ('numpy.core.multiarray', 'numpy._core.multiarray')
      for stand_in, name in ((_numpy_reconstruct, '_reconstruct'),
                             (_numpy_scalar, 'scalar'))),
    (_HistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer'),
    (_history_buffer_getattr, 'builtins.getattr'),
)


#: what the error message says is accepted
_ACCEPTED = ('tensors, plain Python containers, numbers and strings, and the '
             'known objects of official VMamba and OpenMMLab files (yacs '
             'CfgNode and argparse Namespace as inert placeholders, '
             "MMEngine's HistoryBuffer, numeric numpy arrays)")

# torch's allow-list is one set for the process: loads take turns, so that
# one load's exit does not remove the stand-ins another is using
_LOAD_LOCK = threading.Lock()


@contextlib.contextmanager
def _stand_ins_allowed() -> Iterator[list]:
    """Allow-list the stand-ins for one load; collect its placeholders."""
    with _LOAD_LOCK:
        present = set(torch.serialization.get_safe_globals())
        missing = [e for e in _STAND_INS if e not in present]
        _LOAD.placeholders = made = []
        try:
            with torch.serialization.safe_globals(missing):
                yield made
        finally:
            _LOAD.placeholders = None


def _finish_load(root: Any, made: list, path: str) -> Any:
    """Replace the stand-ins a load made (placeholder ``OrderedDict``s by
    :class:`PickledObject`, :class:`_NumpyArray` by its array) and refuse
    tensors with backward hooks (``torch.save`` never writes hooks, but
    ``_rebuild_tensor_v2`` attaches what a pickle passes it)."""
    placeholders = {id(obj): (obj, cls) for obj, cls in made}
    memo: Dict[int, Any] = {}

    def visit(obj: Any) -> Any:
        key = id(obj)
        if key in memo:
            return memo[key]
        if key in placeholders:
            new = memo[key] = placeholders[key][1]()
            for k, v in obj.items():
                new[k] = visit(v)
            attrs = {k: visit(v) for k, v in vars(obj).items()}
            new.state = attrs or None
            return new
        if isinstance(obj, _NumpyArray):
            memo[key] = obj.array
            return obj.array
        kind = type(obj)
        memo[key] = obj  # containers change in place; cycles end here
        if isinstance(obj, Tensor):
            if getattr(obj, '_backward_hooks', None):
                raise UnsafeCheckpointError(
                    f'refusing to load the checkpoint {path!r}: a tensor '
                    f'carries backward hooks ({obj._backward_hooks!r:.200}), '
                    'which torch.save never writes; the file is crafted.\n' +
                    _trust_hint(path))
        elif kind in (dict, OrderedDict, Counter):
            for k, v in list(obj.items()):
                new = visit(v)
                if new is not v:
                    obj[k] = new
        elif kind is list:
            for i, v in enumerate(obj):
                obj[i] = visit(v)
        elif kind is tuple:
            items = tuple(visit(v) for v in obj)
            if any(a is not b for a, b in zip(items, obj)):
                memo[key] = items
                return items
        return obj

    try:
        return visit(root)
    except RecursionError:
        raise UnsafeCheckpointError(
            f'refusing to load the checkpoint {path!r}: it nests containers '
            'too deeply to be a checkpoint of weights.\n' +
            _trust_hint(path)) from None


_OPCODE_NAMES = {ord(op.code): op.name for op in pickletools.opcodes}


def _global_name(obj: Any) -> str:
    for stand_in, name in _STAND_INS:
        if stand_in is obj:
            return name
    module = getattr(obj, '__module__', None)
    qualname = getattr(obj, '__qualname__', None)
    if module and qualname:
        return f'{module}.{qualname}'
    return f'a {type(obj).__qualname__} object'


def _failed_opcode(error: BaseException) -> Optional[str]:
    """The pickle opcode (and what it acted on) during which the weights-only
    unpickler raised ``error``; None if it was not raised while unpickling
    or while restoring storages (``map_location``, devices)."""
    found, tb = None, error.__traceback__
    while tb is not None:  # the innermost frame of the unpickler's loop
        frame = tb.tb_frame
        if (frame.f_code.co_name == 'load' and frame.f_globals.get('__name__')
                == 'torch._weights_only_unpickler'
                and 'key' in frame.f_locals):
            found = frame.f_locals
        tb = tb.tb_next
    if found is None:
        return None
    key = found.get('key')
    if not key:
        return 'the end of the data (a truncated pickle)'
    name = _OPCODE_NAMES.get(key[0], f'0x{key[0]:02x}')
    target = dict(
        REDUCE=found.get('func'),
        NEWOBJ=found.get('cls'),
        BUILD=found.get('inst')).get(name)
    if name == 'BINPERSID':
        return None
    if name in ('REDUCE', 'NEWOBJ', 'BUILD') and target is not None:
        return f'pickle opcode {name} on {_global_name(target)}'
    return f'pickle opcode {name}'


def _unsafe_globals(path: str, message: str) -> List[str]:
    """The globals a file needs beyond torch's and our allow-list."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # a legacy (non-zip) file: the global torch named
        names = []
    names += re.findall(r'GLOBAL (\S+) (?:was not|whose module)', message)
    return sorted({
        n[len('builtins.'):] if n.startswith('builtins.') else n
        for n in names
    })


def _trust_hint(path: str) -> str:
    weights = osp.splitext(path)[0] + '.weights.pth'
    return (
        '  -> If you do not know where the file comes from, do not use it. '
        'If you trust the file and its source, extract its weights once, '
        'where running its code is acceptable:\n'
        f'    python -c "import torch; c = torch.load({path!r}, '
        "weights_only=False); torch.save(c.get('state_dict', "
        f"c.get('model', c)), {weights!r})\"\n"
        f'  and load {weights} instead.')


def _refusal_message(path: str, error: BaseException) -> str:
    """Our message for an error of the weights-only load of ``path``."""
    raw = error
    if (isinstance(error, pickle.UnpicklingError)
            and isinstance(error.__context__, pickle.UnpicklingError)):
        raw = error.__context__  # torch.load's rewrap drops the details
    message = str(raw).strip() if isinstance(
        raw, pickle.UnpicklingError) else f'{type(raw).__name__}: {raw}'
    where = _failed_opcode(raw) or 'unpickling'
    head = f'refusing to load the checkpoint {path!r}: '
    if where.startswith('pickle opcode GLOBAL'):
        names = ', '.join(_unsafe_globals(path, message))
        return (head + f'it needs the Python globals {names} (pickle opcode '
                'GLOBAL). Unpickling them could run code, and a checkpoint '
                f'of weights does not need them; mmvmamba loads {_ACCEPTED}.'
                '\n' + _trust_hint(path))
    kind = 'crafted, corrupt or of an unsupported kind'
    if 'Unsupported operand' in message:
        kind += (' (torch.save writes pickle protocol 2 unless told '
                 'otherwise; only that one is read)')
    return (head + f'{where}: {message}\n  This is not what torch.save and '
            'the official VMamba and OpenMMLab code write (mmvmamba loads '
            f'{_ACCEPTED}); the file is {kind}.\n' + _trust_hint(path))


def _check_torch() -> None:
    serialization = torch.serialization
    if not (hasattr(serialization, 'safe_globals')
            and hasattr(serialization, 'get_unsafe_globals_in_checkpoint')):
        raise RuntimeError(
            f'torch {torch.__version__} cannot load checkpoints safely: '
            'mmvmamba needs torch.serialization.safe_globals with (class, '
            "name) entries. -> install torch >= 2.6 ('pip install -U torch')")


class CheckpointDownloadError(RuntimeError):
    """A checkpoint URL could not be fetched; the message says what to do."""


class CheckpointFormatError(ValueError):
    """The file is not a PyTorch checkpoint at all (an image, a config, a
    truncated download); the message names it and says what to pass."""


def _check_format(path: str) -> None:
    # torch.save writes a zip archive; before torch 1.6 a pickle whose first
    # object is the magic number 0x1950a86a20f9469cfc6c, as a protocol >= 2
    # pickle (b'\x80...') or a protocol 0/1 one (b'L119547...')
    with open(path, 'rb') as f:
        magic = f.read(4)
    if not (magic.startswith(b'PK\x03\x04') or magic[:1] == b'\x80'
            or magic == b'L119'):
        raise CheckpointFormatError(
            f'{path!r} is not a PyTorch checkpoint: it is neither a zip '
            f'archive nor a pickle (it starts with {magic!r}'
            f'{", it is empty" if not magic else ""}).\n'
            '  -> pass a .pth file written by torch.save / tools/train.py or '
            'an official VMamba release file; re-download it if the '
            'download was cut short')


def wait_for_file(path: str, timeout: float) -> None:
    """Block until rank 0 has written ``path`` (other ranks of a launch)."""
    start = time.time()
    while not osp.exists(path):
        if time.time() - start > timeout:
            raise TimeoutError(f'timed out after {timeout:.0f} s waiting for '
                               f'{path!r} from rank 0')
        time.sleep(1)


def cached_download(url: str) -> str:
    """Download ``url`` into the torch hub cache once; returns the file.

    ``torch.hub.download_url_to_file`` writes to a temporary file and renames
    it, so a failed download leaves nothing half-written.
    """
    cache_dir = osp.join(torch.hub.get_dir(), 'checkpoints')
    name = osp.basename(unquote(urlparse(url).path))
    dst = osp.join(cache_dir, name)
    if osp.isfile(dst):
        return dst
    if int(os.environ.get('LOCAL_RANK', 0)) != 0:
        wait_for_file(dst, 3600)
        return dst
    os.makedirs(cache_dir, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, dst, progress=True)
    except Exception as e:  # network errors come in many types
        raise CheckpointDownloadError(
            f'could not download the checkpoint {name!r} from {url} '
            f'({type(e).__name__}: {e}).\n'
            f'  -> download it on a machine with internet access and put it '
            f'at {dst!r}, or pass a local copy with --cfg-options '
            '<path.to.init_cfg>.checkpoint=/path/to/file.pth') from e
    return dst


def _local_file(filename: str) -> str:
    if filename.startswith(('http://', 'https://')):
        return cached_download(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file not found: {filename!r}')
    return filename


def safe_load(filename: str, map_location: Any = 'cpu') -> Any:
    """Load a checkpoint file (path or http(s) URL) without executing it.

    The one loader of mmvmamba (``init_cfg=dict(type='Pretrained')``,
    MMEngine's ``load_from`` and ``resume``, the tools):
    ``torch.load(weights_only=True)`` with the stand-ins of the foreign
    objects of official VMamba and MMEngine files allow-listed for this load
    only. yacs ``CfgNode`` and ``argparse.Namespace`` objects come back as
    :class:`PickledObject`; a file that needs anything else raises
    :class:`UnsafeCheckpointError`, which names it.
    """
    _check_torch()
    local = _local_file(filename)
    _check_format(local)
    with _stand_ins_allowed() as made:
        try:
            ckpt = torch.load(
                local, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as e:
            raise UnsafeCheckpointError(_refusal_message(local, e)) from None
        except Exception as e:
            # a call the pickle makes (REDUCE of an allow-listed function
            # with arguments it cannot take) or a malformed pickle; errors
            # of the file format or of map_location pass unchanged
            if _failed_opcode(e) is None:
                raise
            raise UnsafeCheckpointError(_refusal_message(local, e)) from e
    return _finish_load(ckpt, made, local)


# --------------------------------------------------------------------------
# Pure key conversions
# --------------------------------------------------------------------------


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())


def extract_state_dict(ckpt: Any, use_ema: bool = False) -> StateDict:
    """The weights of a checkpoint: ``model_ema`` (if ``use_ema``),
    ``model`` (official), ``state_dict`` (OpenMMLab) or a bare state dict."""
    if not isinstance(ckpt, dict):
        raise TypeError(f'checkpoint is a {type(ckpt).__name__}, expected a '
                        'dict')
    order = (['model_ema'] if use_ema else []) + ['model', 'state_dict']
    if use_ema and 'model_ema' not in ckpt:
        raise KeyError(f'use_ema=True but the checkpoint has no '
                       f"'model_ema' (top-level keys: {sorted(ckpt)})")
    for key in order:
        if key in ckpt and isinstance(ckpt[key], dict):
            return OrderedDict(
                (k, v) for k, v in ckpt[key].items() if isinstance(v, Tensor))
    if _is_state_dict(ckpt):
        return OrderedDict(ckpt)
    raise KeyError("no weights found in the checkpoint: expected 'model', "
                   f"'model_ema' or 'state_dict' (top-level keys: "
                   f'{sorted(map(str, ckpt))}) or a bare state dict')


def strip_prefix(state_dict: StateDict, prefix: str) -> StateDict:
    """Keep only keys starting with ``prefix`` and remove it."""
    return OrderedDict((k[len(prefix):], v) for k, v in state_dict.items()
                       if k.startswith(prefix))


# legacy (Jan 2024) official names → current names (spec §2.2)
_LEGACY_RULES = [
    (re.compile(r'^patch_embed\.proj\.'), 'patch_embed.0.'),
    (re.compile(r'^patch_embed\.norm\.'), 'patch_embed.2.'),
    (re.compile(r'(^layers\.\d+\.blocks\.\d+\.)ln_1\.'), r'\1norm.'),
    (re.compile(r'(^layers\.\d+\.blocks\.\d+\.)self_attention\.'), r'\1op.'),
    (re.compile(r'^norm\.'), 'classifier.norm.'),
    (re.compile(r'^head\.'), 'classifier.head.'),
]


def convert_legacy_keys(state_dict: StateDict) -> StateDict:
    """Rename legacy v0 keys to the current official names (idempotent)."""
    out = OrderedDict()
    for k, v in state_dict.items():
        for pattern, repl in _LEGACY_RULES:
            k = pattern.sub(repl, k)
        out[k] = v
    return out


def official_to_backbone(state_dict: StateDict) -> StateDict:
    """Official classification names → :class:`VMamba` names.

    ``classifier.norm`` becomes ``outnorm3`` (the same LayerNorm on the last
    stage); ``classifier.head`` is dropped.
    """
    out = OrderedDict()
    for k, v in state_dict.items():
        if k.startswith('classifier.norm.'):
            out['outnorm3.' + k[len('classifier.norm.'):]] = v
        elif not k.startswith('classifier.'):
            out[k] = v
    return out


def official_to_mmpretrain(state_dict: StateDict) -> StateDict:
    """Official classification names → mmpretrain ``ImageClassifier`` names
    (``backbone.*`` with ``outnorm3``, ``head.fc.*``)."""
    out = OrderedDict(('backbone.' + k, v)
                      for k, v in official_to_backbone(state_dict).items())
    for k, v in state_dict.items():
        if k.startswith('classifier.head.'):
            out['head.fc.' + k[len('classifier.head.'):]] = v
    return out


def to_backbone_state_dict(ckpt: Any,
                           use_ema: bool = False,
                           prefix: Optional[str] = None) -> StateDict:
    """Any supported checkpoint → :class:`VMamba` state dict.

    Handles official classification files (``model``/``model_ema``), legacy
    v0 names, OpenMMLab files (``state_dict`` with a ``backbone.`` prefix;
    necks and heads are dropped), DDP ``module.`` prefixes and bare dicts.
    """
    sd = ckpt if _is_state_dict(ckpt) else extract_state_dict(ckpt, use_ema)
    if all(k.startswith('module.') for k in sd):
        sd = strip_prefix(sd, 'module.')
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        sd = strip_prefix(sd, prefix)
        if not sd:
            raise KeyError(f'no checkpoint key starts with prefix {prefix!r}')
    elif any(k.startswith('backbone.') for k in sd):
        sd = strip_prefix(sd, 'backbone.')
    return official_to_backbone(convert_legacy_keys(sd))


# --------------------------------------------------------------------------
# Checked loading
# --------------------------------------------------------------------------


def infer_arch(state_dict: StateDict) -> Dict[str, Any]:
    """The VMamba arguments a (backbone or official) state dict implies."""
    sd = state_dict
    info: Dict[str, Any] = {}
    blocks: Dict[int, set] = {}
    for k in sd:
        m = re.match(r'layers\.(\d+)\.blocks\.(\d+)\.', k)
        if m:
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    if blocks:
        info['depths'] = tuple(
            len(blocks.get(i, ())) for i in range(max(blocks) + 1))
    dims = []
    for i in sorted(blocks):
        w = sd.get(f'layers.{i}.blocks.0.norm.weight',
                   sd.get(f'layers.{i}.blocks.0.norm2.weight'))
        if w is not None:
            dims.append(int(w.shape[0]))
    if dims:
        info['dims'] = (
            dims[0] if dims == [dims[0] * 2**i
                                for i in range(len(dims))] else tuple(dims))
    p = 'layers.0.blocks.0.'
    if p + 'op.A_logs' in sd and dims:
        Di = sd[p + 'op.A_logs'].shape[0] // 4
        info['ssm_d_state'] = int(sd[p + 'op.A_logs'].shape[1])
        info['ssm_ratio'] = Di / dims[0]
        R = int(sd[p + 'op.dt_projs_weight'].shape[-1])
        info['ssm_dt_rank'] = 'auto' if R == math.ceil(dims[0] / 16) else R
        gated = sd[p + 'op.in_proj.weight'].shape[0] == 2 * Di
        info['forward_type'] = 'v0' if gated else 'v05_noz'
        info['ssm_conv_bias'] = p + 'op.conv2d.bias' in sd
    if dims:
        fc1 = sd.get(p + 'mlp.fc1.weight')
        info['mlp_ratio'] = 0.0 if fc1 is None else fc1.shape[0] / dims[0]
    if 'layers.0.downsample.reduction.weight' in sd:
        info['downsample_version'] = 'v1'
    elif 'layers.0.downsample.1.weight' in sd:
        k = sd['layers.0.downsample.1.weight'].shape[-1]
        info['downsample_version'] = {2: 'v2', 3: 'v3'}.get(k, f'k{k}')
    if 'patch_embed.0.weight' in sd:
        info['patchembed_version'] = ('v2' if 'patch_embed.5.weight' in sd else
                                      'v1')
    return info


def _model_arch(model) -> Dict[str, Any]:
    cfg = dict(getattr(model, 'arch_settings', {}))
    if not cfg:
        return cfg
    cfg['depths'] = tuple(cfg['depths'])
    if not isinstance(cfg['dims'], int):
        cfg['dims'] = tuple(cfg['dims'])
    from mmvmamba.models.vmamba import FORWARD_TYPES
    cfg['forward_type'] = ('v0' if FORWARD_TYPES.get(cfg['forward_type']) else
                           'v05_noz')
    cfg['ssm_ratio'] = float(cfg['ssm_ratio'])
    cfg['mlp_ratio'] = float(cfg['mlp_ratio'])
    return cfg


def _mismatch_hint(model, state_dict: StateDict) -> str:
    implied = infer_arch(state_dict)
    if not implied:
        return ('the checkpoint has no VMamba keys (layers.*.blocks.*); is '
                'it a VMamba checkpoint, or does it need prefix=...?')
    own = _model_arch(model)
    diffs = [
        f'{k}={v!r} (model: {own[k]!r})' for k, v in implied.items()
        if k in own and own[k] != v
    ]
    from mmvmamba.models.vmamba import ARCH_SETTINGS
    presets = []
    for name, preset in ARCH_SETTINGS.items():
        preset = dict(preset, depths=tuple(preset['depths']))
        if all(preset.get(k) == v for k, v in implied.items() if k in preset):
            presets.append(name)
    msg = 'the checkpoint implies ' + (', '.join(diffs) if diffs else
                                       'the same arguments as the model')
    if presets:
        msg += f"; it matches arch='{presets[0]}'"
    return msg


class CheckpointMismatchError(RuntimeError):
    """A checkpoint does not fit the configured model."""


def _fmt(keys: List[str], limit: int = 8) -> str:
    shown = ', '.join(keys[:limit])
    return shown + (f', ... (+{len(keys) - limit})'
                    if len(keys) > limit else '')


def _core_shape(t: Tensor) -> tuple:
    # (out, in, 1, 1) conv-shaped Linear2d weights equal (out, in) ones
    shape = tuple(t.shape)
    while len(shape) > 2 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def load_state_dict_checked(model: torch.nn.Module,
                            state_dict: StateDict,
                            source: str = 'checkpoint',
                            logger: Any = 'current') -> Dict[str, list]:
    """Load a backbone state dict into ``model``; raise on any mismatch.

    Allowed: missing ``outnorm{i}`` when the checkpoint has none besides the
    one derived from the classifier norm (classification checkpoints; they
    keep their fresh LayerNorm init as in the official code) and extra
    ``outnorm{i}`` for indices the model does not output.
    """
    own = model.state_dict()
    sd_outnorms = {k for k in state_dict if k.startswith('outnorm')}
    from_classifier = sd_outnorms <= {'outnorm3.weight', 'outnorm3.bias'}
    missing, unexpected, mis_shaped, fresh, ignored = [], [], [], [], []
    for k in own:
        if k in state_dict:
            if _core_shape(state_dict[k]) != _core_shape(own[k]):
                mis_shaped.append(f'{k} {tuple(state_dict[k].shape)} vs '
                                  f'{tuple(own[k].shape)}')
        elif k.endswith('num_batches_tracked') or (k.startswith('outnorm')
                                                   and from_classifier):
            fresh.append(k)
        else:
            missing.append(k)
    for k in state_dict:
        if k not in own:
            (ignored if k.startswith('outnorm') else unexpected).append(k)
    if missing or unexpected or mis_shaped:
        parts = [f'{source} does not fit {type(model).__name__}:']
        if missing:
            parts.append(f'{len(missing)} missing keys: {_fmt(missing)}')
        if unexpected:
            parts.append(f'{len(unexpected)} unexpected keys: '
                         f'{_fmt(unexpected)}')
        if mis_shaped:
            parts.append(f'{len(mis_shaped)} mis-shaped keys (checkpoint vs '
                         f'model): {_fmt(mis_shaped, 4)}')
        parts.append('Hint: ' + _mismatch_hint(model, state_dict) + '.')
        raise CheckpointMismatchError('\n  '.join(parts))
    sd = OrderedDict((k, v.reshape(own[k].shape) if k in own else v)
                     for k, v in state_dict.items() if k in own)
    model.load_state_dict(sd, strict=False)
    print_log(
        f'loaded {len(sd)} tensors from {source}' +
        (f'; kept fresh init for {_fmt(fresh)}' if fresh else '') +
        (f'; ignored {_fmt(ignored)}' if ignored else ''),
        logger=logger)
    return dict(loaded=list(sd), fresh=fresh, ignored=ignored)


def load_pretrained(model: torch.nn.Module,
                    checkpoint: str,
                    prefix: Optional[str] = None,
                    use_ema: bool = False,
                    map_location: Any = 'cpu',
                    logger: Any = 'current') -> Dict[str, list]:
    """Safely load ``checkpoint`` (path/URL) into a :class:`VMamba`.

    Raises :class:`CheckpointMismatchError` with a summary when it does not
    fit; never leaves the model silently at random init.
    """
    ckpt = safe_load(checkpoint, map_location)
    raw = ckpt if _is_state_dict(ckpt) else extract_state_dict(ckpt, use_ema)
    dropped = [
        k for k in convert_legacy_keys(raw)
        if k.startswith(('classifier.head.', 'head.'))
    ]
    if dropped:
        print_log(
            f'{checkpoint}: not loading the classification head '
            f'({_fmt(dropped, 2)})',
            logger=logger)
    sd = to_backbone_state_dict(raw, prefix=prefix)
    return load_state_dict_checked(model, sd, source=checkpoint, logger=logger)
