"""The safe unpickler: :func:`safe_load`, the one loader of the project.

Checkpoints are untrusted input. PyTorch's weights-only unpickler
(``torch.load(weights_only=True)``) refuses every global that is not
allow-listed and restricts BUILD, REDUCE, NEWOBJ, APPEND and SETITEM(S) by
type. The foreign objects that official VMamba and MMEngine files contain
are allow-listed, for the duration of one load only, as *stand-ins*: our own
inert classes and functions registered under the foreign names
(``torch.serialization.safe_globals([(stand_in, 'yacs.config.CfgNode')])``).
No foreign class or function is ever imported or called, and the stand-ins
check every state a pickle hands them, so a file can neither run code nor
change any global state (functions' defaults, class attributes, numpy's
dtypes, HistoryBuffer's statistics methods). After the load, every object
the file produced is walked: tensors with hooks or Python state are refused
wherever they sit.
"""
import contextlib
import math
import os.path as osp
import pickle
import pickletools
import re
import threading
import types
from collections import OrderedDict
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from torch import Tensor

from .errors import (CheckpointFormatError, UnsafeCheckpointError,
                     bounded_repr)
from .files import local_file

__all__ = ['PickledObject', 'safe_load']


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
                f'(not loaded) {bounded_repr(dict(self), 300)}>')


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


def _short(obj: Any, limit: int = 120) -> str:
    return bounded_repr(obj, limit)


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
            raise _refuse(f'numpy.dtype({_short(spec)})',
                          'only numeric and string numpy dtypes are loaded')
        self.dtype = np.dtype(spec)

    def __setstate__(self, state: Any) -> None:
        ok = (
            self.dtype is not None and isinstance(state, tuple)
            and len(state) in (8, 9) and state[1] in ('<', '>', '|', '=')
            and all(s is None for s in state[2:5])
            and (len(state) == 8 or state[8] is None))
        if not ok:
            raise _refuse(f'the numpy dtype state {_short(state)}',
                          'only plain numeric and string dtypes are loaded')
        if state[1] in '<>':
            self.dtype = self.dtype.newbyteorder(state[1])


def _numpy_dtype(obj: Any) -> np.dtype:
    if isinstance(obj, _NumpyDtype) and obj.dtype is not None:
        return obj.dtype
    raise _refuse(f'{_short(obj)} as a numpy dtype', 'it is not a loaded dtype')


class _NumpyArray:
    """Stand-in for ``numpy.ndarray``: ``_reconstruct`` makes one, BUILD
    checks the state and makes the array, :func:`safe_load` swaps it in."""

    array: Optional[np.ndarray] = None

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1
                and self.array is None):
            raise _refuse(f'the numpy array state {_short(state, 200)}',
                          'not the state numpy writes')
        _, shape, dtype, fortran, data = state
        dtype = _numpy_dtype(dtype)
        if not (isinstance(shape, tuple)
                and all(type(n) is int and n >= 0
                        for n in shape) and type(fortran) is bool):
            raise _refuse(f'the numpy array shape {_short(shape)}', 'not a shape')
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
        raise _refuse(f'numpy _reconstruct of {_short(subtype)}',
                      'only plain numpy arrays are loaded')
    return _NumpyArray()  # swapped for its array by safe_load


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    """Stand-in for ``numpy.core.multiarray.scalar``."""
    dtype = _numpy_dtype(dtype)
    if not (isinstance(data, bytes) and len(data) == dtype.itemsize):
        raise _refuse(f'numpy scalar data {_short(data, 80)}',
                      f'not {dtype.itemsize} bytes of {dtype}')
    return np.frombuffer(data, dtype=dtype)[0]


def _as_array(obj: Any, what: str) -> np.ndarray:
    if isinstance(obj, _NumpyArray) and obj.array is not None:
        return obj.array
    raise _refuse(f'{what} = {_short(obj, 80)}', 'not a numpy array')


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
        if not (isinstance(state, dict) and set(state) <= self._KEYS
                and {'_log_history', '_count_history'} <= set(state)):
            raise _refuse(f'the HistoryBuffer state {_short(state, 200)}',
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
                f'the HistoryBuffer max_length {_short(max_length)} or '
                f'statistics_methods {_short(methods, 200)}',
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
        f'builtins.getattr({_short(obj)}, {_short(name, 80)})',
        "a checkpoint may name only MMEngine's HistoryBuffer "
        'statistics methods')


def _empty_bytes(*args: Any) -> bytes:
    """Stand-in for ``builtins.bytes``: protocol 2 pickles ``b''`` (the data
    of an empty numpy array) as ``bytes()``; nothing else is made."""
    if args:
        raise _refuse(f'builtins.bytes{_short(args, 80)}',
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


#: what a loaded object may be besides containers and tensors (leaves)
_LEAVES = (str, bytes, bytearray, int, float, complex, type(None), np.ndarray,
           np.dtype,
           np.generic, torch.dtype, torch.device, torch.layout,
           torch.memory_format, torch.qscheme, torch.storage.TypedStorage,
           torch.UntypedStorage, type, types.FunctionType,
           types.BuiltinFunctionType)
#: objects of other types a load may return (walked through their attributes)
_ALLOWED_OBJECTS = (HistoryBuffer, _NumpyDtype,
                    torch.serialization.StorageType)


def _tensor_problem(t: Tensor) -> Optional[str]:
    """Why a loaded tensor is not plain data, or None. ``torch.save``
    writes plain tensors and parameters without hooks; ``_rebuild_tensor_v2``
    and ``_rebuild_from_type_v2`` attach whatever hooks, type and Python
    state a pickle passes them."""
    if type(t) not in (Tensor, torch.nn.Parameter):
        return f'it is of the tensor subclass {type(t).__qualname__}'
    hooks = getattr(t, '_backward_hooks', None)
    if hooks:
        return f'it carries backward hooks ({_short(hooks, 120)})'
    if getattr(t, '_post_accumulate_grad_hooks', None):
        return 'it carries post-accumulate-grad hooks'
    if vars(t):
        return (f'it carries Python attributes '
                f'({_short(sorted(map(str, vars(t)))[:5])})')
    return None


def _finish_load(root: Any, made: list, path: str) -> Any:
    """Walk every object a load returned, whatever holds it (dict keys and
    values, lists, tuples, sets, attributes of objects such as an
    ``OrderedDict``'s): replace the stand-ins (placeholder ``OrderedDict``s by
    :class:`PickledObject`, :class:`_NumpyArray` by its array) and refuse
    tensors with hooks, a subclass or Python state, and objects of any type
    the unpickler should not have made."""
    placeholders = {id(obj): (obj, cls) for obj, cls in made}
    memo: Dict[int, Any] = {}

    def refuse(what: str) -> UnsafeCheckpointError:
        return UnsafeCheckpointError(
            f'refusing to load the checkpoint {path!r}: {what}, which '
            'torch.save and the official VMamba and OpenMMLab code never '
            f'write; the file is crafted.\n' + _trust_hint(path))

    def same(obj: Any, where: str) -> None:
        if visit(obj) is not obj:  # a stand-in where it cannot be replaced
            raise refuse(f'{where} holds {_short(obj)}')

    def visit(obj: Any) -> Any:
        key = id(obj)
        if key in memo:
            return memo[key]
        if key in placeholders:
            new = memo[key] = placeholders[key][1]()
            for k, v in obj.items():
                same(k, 'a key of a placeholder')
                new[k] = visit(v)
            attrs = {k: visit(v) for k, v in vars(obj).items()}
            new.state = attrs or None
            return new
        if isinstance(obj, _NumpyArray):
            memo[key] = obj.array
            return obj.array
        memo[key] = obj  # containers change in place; cycles end here
        if isinstance(obj, Tensor):
            problem = _tensor_problem(obj)
            if problem:
                raise refuse(f'a tensor {tuple(obj.shape)}: {problem}')
            return obj
        if isinstance(obj, _LEAVES):
            return obj
        if isinstance(obj, dict):
            for k, v in list(obj.items()):
                same(k, 'a dict key')
                new = visit(v)
                if new is not v:
                    obj[k] = new
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                obj[i] = visit(v)
        elif isinstance(obj, tuple):
            items = tuple(visit(v) for v in obj)
            if any(a is not b for a, b in zip(items, obj)):
                if type(obj) is not tuple:
                    raise refuse(f'a {type(obj).__name__} holds objects')
                memo[key] = items
                return items
        elif isinstance(obj, (set, frozenset)):
            for v in obj:
                same(v, 'a set')
        elif not isinstance(obj, _ALLOWED_OBJECTS):
            raise refuse(f'it holds an object of type '
                         f'{type(obj).__module__}.{type(obj).__qualname__}')
        attrs = getattr(obj, '__dict__', None)
        if attrs:  # an OrderedDict's _metadata, a HistoryBuffer's arrays
            for k, v in list(attrs.items()):
                new = visit(v)
                if new is not v:
                    attrs[k] = new
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
        return 'pickle opcode BINPERSID (a storage reference)'
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
    })[:12]


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
    message = message if len(message) < 600 else message[:600] + '...'
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
            "name) entries. -> install a supported torch, 2.11 to 2.14")


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
    local = local_file(filename)
    _check_format(local)
    with _stand_ins_allowed() as made:
        try:
            ckpt = torch.load(
                local, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as e:
            raise UnsafeCheckpointError(_refusal_message(local, e)) from None
        except Exception as e:
            if _in_frames(e, _DEVICE_FRAMES):
                raise  # map_location's own error (a device that is absent)
            if _failed_opcode(e) is None:  # the archive, not the pickle
                raise CheckpointFormatError(_damaged_message(local,
                                                             e)) from None
            # a call the pickle makes (REDUCE of an allow-listed function
            # with arguments it cannot take), a storage reference that is
            # not one (BINPERSID) or a malformed pickle
            raise UnsafeCheckpointError(_refusal_message(local, e)) from None
    return _finish_load(ckpt, made, local)


#: torch functions that place storages (map_location); their errors are the
#: caller's, not the file's
_DEVICE_FRAMES = ('default_restore_location', 'restore_location',
                  'validate_cuda_device', '_deserialize', 'validate_hpu_device')


def _in_frames(error: BaseException, names: Tuple[str, ...]) -> bool:
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name in names:
            return True
        tb = tb.tb_next
    return False


def _damaged_message(path: str, error: BaseException) -> str:
    what = bounded_repr(str(error), 300)[1:-1]
    return (f'{path!r} is a damaged PyTorch checkpoint: torch cannot read '
            f'its zip archive ({type(error).__name__}: {what}). It was cut '
            'short (an interrupted download or save) or altered.\n'
            '  -> download or copy it again, or use another checkpoint '
            '(a training run keeps earlier epoch_*.pth / iter_*.pth files)')
