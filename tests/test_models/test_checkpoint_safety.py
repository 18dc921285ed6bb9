"""Crafted checkpoints (issue 11): through ``safe_load`` nothing runs, no file
is written, no global state changes, and clean files load exactly afterwards.

Every crafted file is built here (raw pickle opcodes, ``__reduce__`` objects,
a torch.save zip whose ``data.pkl`` is swapped, legacy non-zip files). Each
case either raises :class:`UnsafeCheckpointError` naming the offending global
or opcode, or loads inertly; after each, :func:`assert_nothing_changed`
checks the file system, the allow-listed globals (``__defaults__``,
``__kwdefaults__``, ``__code__``, ``__dict__``), MMEngine's statistics methods
and numpy's dtypes, and that a clean checkpoint loads with its exact values.
"""
import argparse
import copy
import os
import pickle
import struct
import sys
import types
import warnings
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch._utils
from mmengine.logging import HistoryBuffer

from mmvmamba.checkpoint import (PickledObject, UnsafeCheckpointError,
                                 load_pretrained, safe_load)
from mmvmamba.checkpoint.unpickle import _STAND_INS
from mmvmamba.models import VMamba

from .test_checkpoint_reliability import Hooked, swap_data_pkl

REBUILD_DEFAULTS = torch._utils._rebuild_tensor_v2.__defaults__
HB = 'mmengine.logging.history_buffer'

# --------------------------------------------------------------------------
# pickle opcodes (protocol 2), to write what pickle.dumps never would


def G(module, name):  # GLOBAL
    return b'c' + f'{module}\n{name}\n'.encode()


def S(text):  # BINUNICODE
    data = text.encode()
    return b'X' + struct.pack('<I', len(data)) + data


def I(n):  # noqa: E743  BININT
    return b'J' + struct.pack('<i', n)


N, TRUE, FALSE = b'N', b'\x88', b'\x89'


def T(*items):  # MARK ... TUPLE
    return b'(' + b''.join(items) + b't'


def D(**items):  # EMPTY_DICT, SETITEM per pair
    return b'}' + b''.join(S(k) + v + b's' for k, v in items.items())


def BUILD(target, state):
    return target + state + b'b'


def CALL(func, *args):  # REDUCE
    return func + T(*args) + b'R'


def PKL(body):
    """``{'payload': <body>}`` as a protocol-2 pickle."""
    return b'\x80\x02' + b'}' + S('payload') + body + b's' + b'.'


F8_STATE = T(I(3), S('<'), N, N, N, I(-1), I(-1), I(0))

# --------------------------------------------------------------------------
# files


def legacy_file(path, main_pkl, magic_pkl=None):
    """A legacy (non-zip) torch.save file whose object pickle is
    ``main_pkl`` (and magic-number pickle ``magic_pkl``)."""

    def p(obj):
        return pickle.dumps(obj, protocol=2)

    sys_info = dict(
        protocol_version=torch.serialization.PROTOCOL_VERSION,
        little_endian=sys.byteorder == 'little',
        type_sizes=dict(short=2, int=4, long=4))
    with open(path, 'wb') as f:
        f.write((magic_pkl or p(torch.serialization.MAGIC_NUMBER)) +
                p(torch.serialization.PROTOCOL_VERSION) + p(sys_info) +
                main_pkl + p([]))


def write(path, payload, fmt):
    """``payload``: raw pickle bytes or an object for torch.save."""
    if isinstance(payload, bytes):
        if fmt == 'zip':
            swap_data_pkl(path, payload)
        else:
            legacy_file(path, payload)
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=fmt == 'zip')
    return str(path)


# --------------------------------------------------------------------------
# what must not change


def _copy(value):
    return copy.copy(value) if isinstance(value, (dict, list, set)) else value


def global_state():
    """Mutable state of every allow-listed global and of what a crafted file
    would want to corrupt."""
    from torch._weights_only_unpickler import _get_allowed_globals
    objs = list(_get_allowed_globals().values())
    objs += [obj for obj, _ in _STAND_INS]
    objs += [
        g[0] if isinstance(g, tuple) else g
        for g in torch.serialization.get_safe_globals()
    ]
    objs += [HistoryBuffer, np.dtype, np.ndarray, PickledObject]
    state = {}
    for obj in objs:
        entry = {
            attr: _copy(getattr(obj, attr))
            for attr in ('__defaults__', '__kwdefaults__', '__code__')
            if attr in dir(obj)
        }
        attrs = getattr(obj, '__dict__', None)
        if attrs is not None:
            entry['__dict__'] = {k: _copy(v) for k, v in attrs.items()}
        state[repr(obj)] = entry
    state['statistics'] = dict(HistoryBuffer._statistics_methods)
    state['numpy'] = [(np.dtype(c).str, np.dtype(c).itemsize,
                       np.dtype(c).descr, np.dtype(c).metadata)
                      for c in ('f8', 'f4', 'f2', 'i8', 'i4', 'u1', 'b1',
                                'c16', 'U5', 'S3', 'O', 'M8[s]')]
    state['safe_globals'] = sorted(
        map(repr, torch.serialization.get_safe_globals()))
    return state


@pytest.fixture(scope='module')
def clean(tmp_path_factory):
    """A clean checkpoint and its exact values."""
    g = torch.Generator().manual_seed(11)
    model = OrderedDict(
        w=torch.randn(4, 3, generator=g),
        b=torch.tensor([1, -2, 3], dtype=torch.int64),
        h=torch.randn(5, generator=g).half())
    path = tmp_path_factory.mktemp('clean') / 'clean.pth'
    torch.save(dict(model=model, epoch=3), path)
    return str(path), model


@pytest.fixture
def guard(tmp_path, clean):
    """Runs a case; then asserts that nothing changed."""
    HistoryBuffer()  # the class registers its statistics methods
    before_state = global_state()
    marker = tmp_path / 'pwned'

    def check(cases_dir):
        assert not marker.exists()
        made = sorted(p.name for p in cases_dir.rglob('*'))
        assert all(name.endswith('.pth') for name in made), made
        assert global_state() == before_state
        assert torch._utils._rebuild_tensor_v2.__defaults__ == REBUILD_DEFAULTS
        path, model = clean
        for loaded in (safe_load(path), torch.load(path, weights_only=True)):
            assert loaded['epoch'] == 3
            for k, v in model.items():
                assert loaded['model'][k].dtype == v.dtype
                assert torch.equal(loaded['model'][k], v), k

    return marker, check


def refused(path, *names):
    with pytest.raises(UnsafeCheckpointError) as err:
        safe_load(path)
    msg = str(err.value)
    assert repr(str(path)) in msg, msg
    for name in names:
        assert name in msg, msg
    assert 'weights_only=False' in msg  # says the way out for trusted files
    return msg


def crafted_case_is_refused(case, fmt, tmp_path, guard, *names):
    """``case``: (pickle body, name the message must hold)."""
    marker, check = guard
    body, name = case
    path = write(tmp_path / 'crafted.pth', PKL(body), fmt)
    refused(path, name, *names)
    check(tmp_path)


# --------------------------------------------------------------------------
# BUILD: only new objects of allow-listed types, never globals

REBUILD = G('torch._utils', '_rebuild_tensor_v2')

BUILD_CASES = {
    'function __defaults__ (slot state)':
    (BUILD(REBUILD, T(N, D(__defaults__=T(I(7))))),
     'BUILD on torch._utils._rebuild_tensor_v2'),
    'function __dict__ entry': (BUILD(REBUILD, D(evil=I(1))),
                                'BUILD on torch._utils._rebuild_tensor_v2'),
    'function __code__':
    (BUILD(REBUILD, T(N, D(__code__=G('torch._utils', '_rebuild_parameter')))),
     'BUILD on torch._utils._rebuild_tensor_v2'),
    'function __kwdefaults__': (BUILD(
        G('torch._utils', '_rebuild_parameter'),
        T(N, D(__kwdefaults__=D(x=I(1))))),
                                'BUILD on torch._utils._rebuild_parameter'),
    'class attribute of OrderedDict':
    (BUILD(G('collections', 'OrderedDict'),
           T(N, D(__init__=REBUILD))), 'BUILD on collections.OrderedDict'),
    'class attribute of torch.Tensor':
    (BUILD(G('torch', 'Tensor'), T(N,
                                   D(add=REBUILD))), 'BUILD on torch.Tensor'),
    'torch dtype singleton': (BUILD(G('torch', 'float32'),
                                    D(x=I(1))), 'BUILD'),
    'storage type singleton':
    (BUILD(G('torch', 'FloatStorage'), D(_dtype=G('torch', 'int8'))), 'BUILD'),
    'exception class torch allow-lists':
    (BUILD(G('builtins', 'ValueError'),
           T(N, D(__str__=REBUILD))), 'BUILD on builtins.ValueError'),
    'stand-in class yacs CfgNode': (BUILD(
        G('yacs.config', 'CfgNode'), T(N,
                                       D(placeholder=G('torch', 'Tensor')))),
                                    'BUILD on yacs.config.CfgNode'),
    'stand-in class numpy dtype':
    (BUILD(G('numpy', 'dtype'),
           T(N, D(__init__=REBUILD))), 'BUILD on numpy.dtype'),
    'stand-in function getattr':
    (BUILD(G('builtins', 'getattr'),
           T(N, D(__defaults__=T(I(1))))), 'BUILD on builtins.getattr'),
    'stand-in function numpy scalar':
    (BUILD(G('numpy._core.multiarray', 'scalar'),
           T(N, D(__defaults__=T(N)))), 'multiarray.scalar'),
    'HistoryBuffer class statistics methods': (BUILD(
        G(HB, 'HistoryBuffer'),
        T(N, D(_statistics_methods=b'}'))), f'BUILD on {HB}.HistoryBuffer'),
}


@pytest.mark.parametrize('fmt', ['zip', 'legacy'])
@pytest.mark.parametrize('case', sorted(BUILD_CASES))
def test_build_on_globals_is_refused(case, fmt, tmp_path, guard):
    """Refused, nothing changed, the offending global named: at the BUILD,
    or already at the GLOBAL where a torch version no longer allow-lists it
    (torch 2.11 refuses ``builtins.ValueError`` there, 2.14 at the BUILD)."""
    marker, check = guard
    body, needle = BUILD_CASES[case]
    path = write(tmp_path / 'crafted.pth', PKL(body), fmt)
    msg = refused(path, 'pickle opcode')
    if needle not in msg:
        assert 'pickle opcode GLOBAL' in msg, msg
        target = needle.partition('BUILD on ')[2]
        module, _, name = target.rpartition('.')
        assert (name if module == 'builtins' else target) in msg, msg
    check(tmp_path)


# --------------------------------------------------------------------------
# REDUCE: allow-listed callables with arguments that are not what they take

EMPTY_OD = G('collections', 'OrderedDict') + b')R'
F8 = CALL(G('numpy', 'dtype'), S('f8'), FALSE, TRUE)

REDUCE_CASES = {
    '_rebuild_tensor_v2 of a string':
    (CALL(REBUILD, S('storage'), I(0), T(I(2)), T(I(1)), FALSE,
          EMPTY_OD), 'REDUCE on torch._utils._rebuild_tensor_v2'),
    '_rebuild_parameter of a string':
    (CALL(G('torch._utils', '_rebuild_parameter'), S('x'), TRUE,
          b'}'), 'REDUCE on torch._utils._rebuild_parameter'),
    '_rebuild_from_type_v2 calling getattr': (CALL(
        G('torch._tensor', '_rebuild_from_type_v2'), G('builtins', 'getattr'),
        G('torch',
          'Tensor'), T(G('collections', 'OrderedDict'), S('__init__')),
        b'}'), "builtins.getattr(<class 'collections.OrderedDict'>"),
    'OrderedDict of a string': (CALL(G('collections', 'OrderedDict'), S('ab')),
                                'REDUCE on collections.OrderedDict'),
    '_codecs.encode with an unknown codec':
    (CALL(G('_codecs', 'encode'), S('x'),
          S('no-such-codec')), 'REDUCE on _codecs.encode'),
    'getattr of a private HistoryBuffer attribute': (CALL(
        G('builtins', 'getattr'), G(HB, 'HistoryBuffer'),
        S('_statistics_methods')), 'builtins.getattr'),
    'getattr of a class torch allow-lists': (CALL(
        G('builtins', 'getattr'), G('collections', 'OrderedDict'),
        S('fromkeys')), 'builtins.getattr'),
    'numpy object dtype': (CALL(G('numpy', 'dtype'), S('O8'), FALSE,
                                TRUE), "numpy.dtype('O8')"),
    # numpy's own dtype __setstate__ crashes the interpreter on this one
    'numpy datetime dtype with a state': (BUILD(
        CALL(G('numpy', 'dtype'), S('M8[s]'), FALSE, TRUE),
        T(I(3), S('>'), N, N, N, I(-1), I(-1), I(0))), "numpy.dtype('M8[s]')"),
    'numpy dtype with fields in its state':
    (BUILD(F8,
           T(I(3), S('|'), N, T(S('a')), D(a=T(F8, I(0))), I(8), I(1),
             I(0))), 'numpy dtype state'),
    'numpy _reconstruct of a tensor': (CALL(
        G('numpy._core.multiarray', '_reconstruct'), G('torch', 'Tensor'),
        T(I(0)), S('b')), '_reconstruct'),
    'numpy array with too little data': (BUILD(
        CALL(
            G('numpy.core.multiarray', '_reconstruct'), G('numpy', 'ndarray'),
            T(I(0)), S('b')), T(I(1), T(I(1000)), F8, FALSE,
                                S('abc'))), 'numpy array data'),
    'numpy scalar of the wrong size':
    (CALL(G('numpy._core.multiarray', 'scalar'), F8, S('x')), 'numpy scalar'),
    'bytes of a size': (CALL(G('builtins', 'bytes'),
                             I(10**9)), 'builtins.bytes(1000000000,)'),
    'HistoryBuffer called with arguments':
    (CALL(G(HB, 'HistoryBuffer'), b']', b']',
          I(5)), f'REDUCE on {HB}.HistoryBuffer'),
    'HistoryBuffer with an unknown attribute':
    (BUILD(G(HB, 'HistoryBuffer') + b')\x81',
           D(_statistics_methods=b'}')), 'HistoryBuffer state'),
}


@pytest.mark.parametrize('fmt', ['zip', 'legacy'])
@pytest.mark.parametrize('case', sorted(REDUCE_CASES))
def test_reduce_with_hostile_arguments_is_refused(case, fmt, tmp_path, guard):
    crafted_case_is_refused(REDUCE_CASES[case], fmt, tmp_path, guard)


def test_tensor_past_its_storage_is_refused(tmp_path, guard):
    """A zip whose data.pkl is swapped to view 1000 floats of a 6-float
    storage of the original file."""
    marker, check = guard
    storage = T(
        S('storage'), G('torch', 'FloatStorage'), S('0'), S('cpu'),
        I(6)) + b'Q'  # BINPERSID
    path = tmp_path / 'crafted.pth'
    swap_data_pkl(
        path,
        PKL(
            CALL(REBUILD, storage, I(0), T(I(1000)), T(I(1)), FALSE,
                 EMPTY_OD)),
        template={'w': torch.zeros(6)})
    refused(str(path), 'REDUCE on torch._utils._rebuild_tensor_v2')
    check(tmp_path)


def test_tensor_with_backward_hooks_is_refused(tmp_path, guard):
    marker, check = guard
    for fmt in ('zip', 'legacy'):
        path = write(tmp_path / f'{fmt}.pth', {'w': Hooked()}, fmt)
        refused(path, 'backward hooks')
    check(tmp_path)


# --------------------------------------------------------------------------
# GLOBAL: names outside the allow-list are never looked up

GLOBALS = [('os', 'system'), ('posix', 'system'), ('nt', 'system'),
           ('subprocess', 'Popen'), ('subprocess', 'check_output'),
           ('builtins', 'eval'), ('builtins', 'exec'),
           ('builtins', '__import__'), ('builtins', 'open'),
           ('builtins', 'setattr'), ('__builtin__', 'eval'),
           ('sys', 'modules'), ('importlib', 'import_module'),
           ('pickle', 'loads'), ('torch', 'load'), ('numpy', 'load'),
           ('shutil', 'rmtree'), ('yacs.config', 'load_cfg'),
           (HB, 'HistoryBuffer.register_statistics')]


@pytest.mark.parametrize('fmt', ['zip', 'legacy'])
@pytest.mark.parametrize('module,name', GLOBALS)
def test_foreign_globals_are_refused_by_name(module, name, fmt, tmp_path,
                                             guard):
    marker, check = guard
    body = CALL(G(module, name), S(f'touch {marker}'))
    path = write(tmp_path / 'crafted.pth', PKL(body), fmt)
    msg = refused(path, 'GLOBAL')
    shown = name if module in ('builtins', '__builtin__') else \
        f'{module}.{name}'
    assert f'needs the Python globals {shown}' in msg
    check(tmp_path)


def test_payload_in_the_magic_number_of_a_legacy_file(tmp_path, guard):
    marker, check = guard
    path = tmp_path / 'crafted.pth'
    legacy_file(
        path,
        pickle.dumps({}, protocol=2),
        magic_pkl=PKL(CALL(G('os', 'system'), S(f'touch {marker}'))))
    refused(str(path), 'os.system')
    check(tmp_path)


class Evil:
    """Pickles to ``os.system('touch <path>')``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f'touch {self.path}', ))


@pytest.mark.parametrize('fmt', ['zip', 'legacy'])
@pytest.mark.parametrize('protocol', range(6))
def test_every_pickle_protocol(protocol, fmt, tmp_path, guard):
    """Protocols 0-5: the payload never runs; the error names the global or
    the first opcode the weights-only unpickler does not read."""
    marker, check = guard
    path = tmp_path / 'crafted.pth'
    torch.save({
        'w': torch.ones(2),
        'x': Evil(marker)
    },
               path,
               pickle_protocol=protocol,
               _use_new_zipfile_serialization=fmt == 'zip')
    msg = refused(str(path), 'pickle opcode')
    assert 'posix.system' in msg or 'Unsupported operand' in msg
    # the same data without the payload loads exactly, or is refused the
    # same way (torch's weights-only unpickler reads protocols 2 and 3)
    torch.save({'w': torch.arange(3.)},
               path,
               pickle_protocol=protocol,
               _use_new_zipfile_serialization=fmt == 'zip')
    if protocol in (2, 3):
        assert torch.equal(safe_load(str(path))['w'], torch.arange(3.))
    else:
        refused(str(path), 'Unsupported operand', 'pickle protocol 2')
    check(tmp_path)


def test_nested_payloads(tmp_path, guard):
    marker, check = guard
    evil = Evil(marker)
    sd = {'w': torch.ones(2)}
    path = write(tmp_path / 'deep.pth',
                 dict(state_dict=sd, meta=[{
                     'a': (1, [OrderedDict(x=evil)])
                 }]), 'zip')
    refused(path, 'posix.system')
    # a pickle inside the pickle (bytes) and a checkpoint inside the
    # checkpoint stay bytes: never unpickled
    inner = tmp_path / 'inner.pth'
    torch.save({'x': evil}, inner)
    blobs = dict(pkl=pickle.dumps(evil), zip=inner.read_bytes())
    path = write(tmp_path / 'blobs.pth', dict(state_dict=sd, **blobs), 'zip')
    loaded = safe_load(path)
    assert loaded['pkl'] == blobs['pkl'] and loaded['zip'] == blobs['zip']
    inner.unlink()
    # nesting deeper than Python's recursion limit
    deep = b'\x80\x02' + b']' * 3000 + b'a' * 2999 + b'.'
    swap_data_pkl(tmp_path / 'nest.pth', deep)
    with pytest.raises(UnsafeCheckpointError, match='nests|RecursionError'):
        safe_load(str(tmp_path / 'nest.pth'))
    check(tmp_path)


def test_malformed_pickles(tmp_path, guard):
    marker, check = guard
    cases = {
        b'\x80\x02}': 'truncated',  # no STOP
        b'\x80\x02h\x05.': 'BINGET',  # memo entry that does not exist
        b'\x80\x02b.': 'BUILD',  # empty stack
        b'\x80\x02' + G('os', 'system') + b'.': 'os.system',
        b'\x80\x02' + b'i__builtin__\neval\n.': 'INST',
        b'\x80\x02' + S('posix') + S('system') + b'\x93.': 'STACK_GLOBAL',
        b'\x80\x02' + b'\x82\x01.': 'EXT1',
    }
    for i, (data, name) in enumerate(cases.items()):
        path = tmp_path / f'{i}.pth'
        swap_data_pkl(path, data)
        refused(str(path), name)
    check(tmp_path)


# --------------------------------------------------------------------------
# inert loads: the foreign objects official and MMEngine files hold


def test_history_buffer_cannot_rewrite_statistics_methods(
        tmp_path, guard, monkeypatch):
    """A HistoryBuffer pickled with statistics methods that MMEngine's
    HistoryBuffer.__setstate__ would write into the class: ``mean`` would
    log the minimum from then on, in the whole process."""
    marker, check = guard
    state = dict(
        _log_history=np.array([1.0, 2.0, 6.0]),
        _count_history=np.array([1, 1, 1]),
        max_length=10,
        statistics_methods=dict(
            mean=HistoryBuffer.min, evil=HistoryBuffer.max))
    with monkeypatch.context() as m:
        m.setattr(HistoryBuffer, '__getstate__', lambda self: state)
        paths = [
            write(tmp_path / f'{fmt}.pth', {'hb': HistoryBuffer()}, fmt)
            for fmt in ('zip', 'legacy')
        ]
    for path in paths:
        hb = safe_load(path)['hb']
        assert type(hb) is HistoryBuffer
        np.testing.assert_array_equal(hb._log_history, [1.0, 2.0, 6.0])
        assert hb.max_length == 10
        assert hb.statistics('mean') == 3.0  # still the mean
        assert 'evil' not in HistoryBuffer._statistics_methods
    check(tmp_path)
    # the payload is live: an unrestricted load rewrites the class
    methods = dict(HistoryBuffer._statistics_methods)
    try:
        torch.load(paths[0], weights_only=False)
        assert HistoryBuffer._statistics_methods['mean'] is HistoryBuffer.min
    finally:
        HistoryBuffer._statistics_methods.clear()
        HistoryBuffer._statistics_methods.update(methods)


class _NumpyDtypeOnSingleton:
    """``numpy.dtype('f8', copy=False)`` is numpy's shared float64 dtype;
    BUILD on it would run numpy's __setstate__ on that global object."""

    def __reduce__(self):
        return (np.dtype, ('f8', False, False), (3, '>', None, None, None, -1,
                                                 -1, 0))


def test_numpy_objects_load_as_data(tmp_path, guard):
    marker, check = guard
    shared = np.arange(6, dtype=np.int16).reshape(2, 3)
    arrays = dict(
        b=np.array([True, False]),
        u8=np.arange(4, dtype=np.uint8),
        f16=np.linspace(0, 1, 5).astype(np.float16),
        c64=np.array([1 + 2j], dtype=np.complex64),
        big=np.arange(3, dtype='>f4'),
        fortran=np.asfortranarray(np.arange(6.).reshape(2, 3)),
        scalar0d=np.array(4.5),
        empty=np.zeros((0, 3)),
        text=np.array(['ab', 'cde']),
        raw=np.array([b'xy', b'z']))
    scalars = dict(f=np.float32(1.5), i=np.int64(-3), s=np.str_('hi'))
    obj = dict(
        arrays=arrays,
        scalars=scalars,
        nothing=b'',
        shared=(shared, [shared]),
        singleton=_NumpyDtypeOnSingleton())
    for fmt in ('zip', 'legacy'):
        loaded = safe_load(write(tmp_path / f'{fmt}.pth', obj, fmt))
        for k, v in arrays.items():
            assert type(loaded['arrays'][k]) is np.ndarray
            assert loaded['arrays'][k].dtype == v.dtype, k
            np.testing.assert_array_equal(loaded['arrays'][k], v)
        assert loaded['arrays']['fortran'].flags.f_contiguous
        for k, v in scalars.items():
            assert type(loaded['scalars'][k]) is type(v) and \
                loaded['scalars'][k] == v
        assert loaded['nothing'] == b''
        a, (b, ) = loaded['shared']
        assert a is b and a.dtype == np.int16
        # the file's dtype is its own; numpy's float64 is untouched
        assert loaded['singleton'].dtype.str == '>f8'
    check(tmp_path)


def test_foreign_objects_become_inert_placeholders(tmp_path, guard,
                                                   monkeypatch):
    marker, check = guard

    class CfgNode(dict):
        """Pickled as ``yacs.config.CfgNode``; its state names dunders and
        holds globals."""

        def __getstate__(self):
            return self.__dict__.get('hostile')

    class CalledCfg:
        """REDUCE of the foreign class with arguments: they are dropped."""

        def __reduce__(self):
            return (CfgNode, (f'touch {marker}', ))

    CfgNode.__module__, CfgNode.__qualname__ = 'yacs.config', 'CfgNode'
    cfg = CfgNode(SEED=1, MODEL=CfgNode(NAME='vssm'))
    cfg.hostile = {
        '__class__': torch.Tensor,
        '__reduce__': torch._utils._rebuild_tensor_v2,
        '__setitem__': None,
        'placeholder': torch.Size,
    }
    obj = dict(
        hostile=cfg,
        called=CalledCfg(),
        args=argparse.Namespace(lr=0.1, model='vssm'))
    with monkeypatch.context() as m:
        module = types.ModuleType('yacs.config')
        module.CfgNode = CfgNode
        m.setitem(sys.modules, 'yacs', types.ModuleType('yacs'))
        m.setitem(sys.modules, 'yacs.config', module)
        paths = [
            write(tmp_path / f'{fmt}.pth', obj, fmt)
            for fmt in ('zip', 'legacy')
        ]
    assert 'yacs.config' not in sys.modules  # nothing to import
    for path in paths:
        loaded = safe_load(path)
        cfg = loaded['hostile']
        assert isinstance(cfg, PickledObject)
        assert type(cfg).__mro__[1] is PickledObject
        assert (cfg.pickled_module, cfg.pickled_name) == ('yacs.config',
                                                          'CfgNode')
        assert cfg['SEED'] == 1 and cfg['MODEL'] == {'NAME': 'vssm'}
        # the state is data on this object; the classes are untouched
        assert cfg.state['__class__'] is torch.Tensor
        assert cfg.state['placeholder'] is torch.Size
        assert loaded['called'] == {} and loaded['called'].state is None
        ns = loaded['args']
        assert ns.pickled_name == 'Namespace'
        assert ns.state == {'lr': 0.1, 'model': 'vssm'}
    check(tmp_path)


def test_clean_vmamba_weights_after_every_attack(tmp_path, guard):
    """The reported attack: after the crafted files, a clean VMamba state
    dict loads through init_cfg=Pretrained with its exact values."""
    marker, check = guard
    for i, (body, _) in enumerate(
            list(BUILD_CASES.values()) + list(REDUCE_CASES.values())):
        path = write(tmp_path / f'{i}.pth', PKL(body), 'zip')
        with pytest.raises(UnsafeCheckpointError):
            safe_load(path)
    kwargs = dict(dims=16, depths=(1, 1, 1, 1), out_indices=(3, ))
    src = VMamba(**kwargs)
    torch.nn.init.normal_(src.outnorm3.weight)
    path = tmp_path / 'vmamba.pth'
    torch.save(dict(state_dict=src.state_dict()), path)
    dst = VMamba(
        **kwargs, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    dst.init_weights()
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k
    other = VMamba(**kwargs)
    load_pretrained(other, str(path))
    for k, v in src.state_dict().items():
        assert torch.equal(other.state_dict()[k], v), k
    check(tmp_path)


def test_scoped_allow_list_is_removed_after_errors(tmp_path):
    before = sorted(map(repr, torch.serialization.get_safe_globals()))
    path = write(tmp_path / 'x.pth', PKL(CALL(G('os', 'system'), S('x'))),
                 'zip')
    with pytest.raises(UnsafeCheckpointError):
        safe_load(path)
    assert sorted(map(repr, torch.serialization.get_safe_globals())) == before
    # a plain torch.load does not see the stand-ins
    path = write(tmp_path / 'np.pth', {'a': np.zeros(2)}, 'zip')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with pytest.raises(pickle.UnpicklingError, match='numpy'):
            torch.load(path, weights_only=True)


def test_converter_refuses_with_the_message(tmp_path, guard, capsys):
    import importlib.util
    from pathlib import Path
    marker, check = guard
    tool_path = Path(__file__).resolve().parents[2] / 'tools' / \
        'convert_checkpoint.py'
    spec = importlib.util.spec_from_file_location('convert_checkpoint',
                                                  tool_path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    src = write(tmp_path / 'evil.pth',
                dict(model={'w': torch.ones(1)}, config=Evil(marker)), 'zip')
    dst = tmp_path / 'out.pth'
    with pytest.raises(SystemExit) as exit_:
        tool.main([src, str(dst)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert 'posix.system' in err and 'evil.pth' in err
    assert not dst.exists()
    check(tmp_path)


def test_concurrent_loads_keep_their_allow_list(tmp_path):
    """The allow-list of one load is not removed under another's feet."""
    import threading
    path = write(tmp_path / 'np.pth', {'a': np.arange(3), 'b': np.float32(2)},
                 'zip')
    errors = []

    def work():
        try:
            for _ in range(10):
                loaded = safe_load(path)
                assert loaded['a'].tolist() == [0, 1, 2]
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
