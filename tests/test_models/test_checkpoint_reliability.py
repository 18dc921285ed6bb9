"""Issue 17: a loader that a small file cannot hang, hooks found wherever
they sit, NaN/Inf refused, the project's own errors for damaged files, and a
converter that never loses its input. Every file is crafted here."""
import os
import signal
import struct
import importlib.util
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from mmvmamba.checkpoint import (CheckpointContentError, CheckpointError,
                                 CheckpointFormatError,
                                 CheckpointNotFoundError,
                                 NonFiniteWeightsError, UnsafeCheckpointError,
                                 bounded_repr, load_pretrained, safe_load,
                                 save_atomic)
from mmvmamba.models import VMamba

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_hang():
    """Fail (instead of hanging CI) if formatting a message blows up."""

    def alarm(*_):
        raise AssertionError('still formatting after 60 s')

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def tiny_state_dict():
    with torch.device('meta'):
        shapes = VMamba(dims=8, depths=(1, 1, 1, 1)).state_dict()
    g = torch.Generator().manual_seed(0)
    return OrderedDict((k, torch.randn(v.shape, generator=g) if v.
                        is_floating_point() else torch.zeros(v.shape, v.dtype))
                       for k, v in shapes.items())


# --------------------------------------------------------------------------
# 3. nested tuples that reuse the memo: tiny to unpickle, 2**30 to repr

DEPTH = 30


def G(module, name):
    return b'c' + f'{module}\n{name}\n'.encode()


def S(text):
    data = text.encode()
    return b'X' + struct.pack('<I', len(data)) + data


def BOMB(depth=DEPTH):
    """A tuple of (x, x) nested ``depth`` deep through the memo (each level
    kept, the unpickler has no POP): ~10 bytes a level."""
    out = b'()q\x00'  # MARK, EMPTY_TUPLE, BINPUT 0
    for i in range(depth):
        out += b'h' + bytes([i]) + b'h' + bytes([i]) + b'\x86q' + bytes([i + 1])
    return out + b't'  # TUPLE of every level


def swap_data_pkl(path, data_pkl, template=None):
    """A torch.save zip (of ``template``) whose data.pkl is ``data_pkl``."""
    torch.save(template if template is not None else {}, path)
    with zipfile.ZipFile(path) as src:
        records = [(info, src.read(info)) for info in src.infolist()]
    with zipfile.ZipFile(path, 'w') as dst:
        for info, data in records:
            dst.writestr(
                info,
                data_pkl if info.filename.endswith('/data.pkl') else data)
    return str(path)


def PKL(*items):
    """``{key: value, ...}`` as a protocol-2 pickle of raw items."""
    return b'\x80\x02}' + b''.join(k + v + b's' for k, v in items) + b'.'


HB = G('mmengine.logging.history_buffer', 'HistoryBuffer')
BOMBS = {
    'numpy dtype spec': PKL((S('x'), G('numpy', 'dtype') + BOMB() + b'\x85R')),
    'getattr target': PKL(
        (S('x'), G('builtins', 'getattr') + BOMB() + S('mean') + b'\x86R')),
    'HistoryBuffer state': PKL(
        (S('x'), HB + b')\x81}' + S('_log_history') + BOMB() + b'sb')),
    'bytes argument': PKL((S('x'), G('builtins', 'bytes') + BOMB() +
                           b'\x85R')),
    # (a key is hashed by the unpickler, which walks it whole: 2**14)
    'top-level key': PKL((BOMB(14), S('v'))),
    'placeholder content': PKL(
        (S('config'), G('yacs.config', 'CfgNode') + b')\x81' + S('a') +
         BOMB() + b's')),
}


@pytest.mark.parametrize('case', sorted(BOMBS))
def test_messages_from_nested_memo_tuples_are_bounded(case, tmp_path,
                                                      no_hang):
    path = swap_data_pkl(tmp_path / 'bomb.pth', BOMBS[case])
    try:
        ckpt = safe_load(path)
    except UnsafeCheckpointError as e:
        msg = str(e)
    else:  # loaded inertly: what the loader says of it is bounded too
        with pytest.raises(CheckpointError) as err:
            load_pretrained(VMamba(dims=8, depths=(1, 1, 1, 1)), path)
        msg = str(err.value) + repr(ckpt.get('config'))
    assert len(msg) < 4000, len(msg)
    assert path in msg


def test_bounded_repr_stops_while_building(no_hang):
    x = ()
    for _ in range(DEPTH):
        x = (x, x)
    text = bounded_repr(x, 100)
    assert len(text) <= 100 and text.startswith('((((')
    assert bounded_repr({'a': [1, 2.5, None]}) == "{'a': [1, 2.5, None]}"
    assert bounded_repr(2**10000) == '<int of 10001 bits>'


# --------------------------------------------------------------------------
# 5. tensors with hooks or Python state, wherever they sit


class Hooked:
    """A tensor whose backward hooks hold an allow-listed callable."""

    def __reduce__(self):
        storage = torch.ones(2).untyped_storage()
        typed = torch.storage.TypedStorage(
            wrap_storage=storage, dtype=torch.float32, _internal=True)
        return (torch._utils._rebuild_tensor_v2,
                (typed, 0, (2, ), (1, ), True,
                 OrderedDict({0: torch.Tensor})))


class WithState:
    """A tensor rebuilt with Python attributes (``_rebuild_from_type_v2``)
    that hold a hooked tensor."""

    def __reduce__(self):
        storage = torch.ones(2).untyped_storage()
        typed = torch.storage.TypedStorage(
            wrap_storage=storage, dtype=torch.float32, _internal=True)
        return (torch._tensor._rebuild_from_type_v2,
                (torch._utils._rebuild_tensor_v2, torch.Tensor,
                 (typed, 0, (2, ), (1, ), False, OrderedDict()), {
                     'extra': Hooked()
                 }))


def _od_with_attribute():
    od = OrderedDict(w=torch.ones(1))
    od.note = Hooked()  # pickled as BUILD state of the OrderedDict
    return od


HIDDEN = {
    'attribute of an OrderedDict': lambda: dict(state_dict=_od_with_attribute()),
    'dict key': lambda: dict(meta={Hooked(): 1}),
    'set': lambda: dict(meta={'s': {Hooked()}}),
    'Python state of a tensor': lambda: dict(state_dict=dict(w=WithState())),
}


@pytest.mark.parametrize('case', sorted(HIDDEN))
def test_hooked_tensors_are_found_wherever_they_sit(case, tmp_path):
    path = tmp_path / 'hooked.pth'
    torch.save(HIDDEN[case](), path)
    with pytest.raises(UnsafeCheckpointError) as err:
        safe_load(str(path))
    msg = str(err.value)
    assert 'hooks' in msg or 'Python attributes' in msg, msg
    assert str(path) in msg and 'weights_only=False' in msg


def test_plain_files_still_load_with_their_metadata(tmp_path):
    sd = tiny_state_dict()
    model = torch.nn.Linear(2, 3)
    ckpt = dict(
        state_dict=model.state_dict(),  # an OrderedDict with _metadata
        meta=dict(epoch=3, sizes={1, 2}, shape=torch.Size([2, 3])),
        model=sd)
    torch.save(ckpt, tmp_path / 'ok.pth')
    loaded = safe_load(str(tmp_path / 'ok.pth'))
    assert loaded['state_dict']._metadata == ckpt['state_dict']._metadata
    assert loaded['meta'] == ckpt['meta']
    torch.testing.assert_close(loaded['model'], sd)


# --------------------------------------------------------------------------
# 4. NaN / Inf


def test_nonfinite_weights_are_refused_with_their_names(tmp_path):
    sd = tiny_state_dict()
    sd['layers.1.blocks.0.op.A_logs'][0, 0] = float('nan')
    sd['patch_embed.0.weight'][0] = float('inf')
    path = str(tmp_path / 'nan.pth')
    torch.save(dict(state_dict=sd), path)
    model = VMamba(
        dims=8,
        depths=(1, 1, 1, 1),
        init_cfg=dict(type='Pretrained', checkpoint=path))
    before = model.patch_embed[0].weight.clone()
    with pytest.raises(NonFiniteWeightsError) as err:
        model.init_weights()
    msg = str(err.value)
    assert 'layers.1.blocks.0.op.A_logs (1 of' in msg
    assert 'patch_embed.0.weight' in msg and 'allow_nonfinite' in msg
    assert torch.equal(model.patch_embed[0].weight, before)  # nothing loaded
    model = VMamba(
        dims=8,
        depths=(1, 1, 1, 1),
        init_cfg=dict(
            type='Pretrained', checkpoint=path, allow_nonfinite=True))
    model.init_weights()
    assert torch.isnan(model.layers[1].blocks[0].op.A_logs).any()


# --------------------------------------------------------------------------
# 6. the project's errors for damaged and odd files


def test_damaged_files_raise_the_projects_errors(tmp_path):
    path = tmp_path / 'ckpt.pth'
    torch.save(dict(state_dict=tiny_state_dict()), path)
    data = path.read_bytes()
    cut = tmp_path / 'cut.pth'
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointFormatError, match='damaged'):
        safe_load(str(cut))
    # storage references that are not ones (persistent-id tricks)
    for pid in (b'(' + S('storage') + b't', b'(' + S('storage') + S('x') +
                S('0') + S('cpu') + b'K\x06t'):
        crafted = swap_data_pkl(tmp_path / 'pid.pth',
                                PKL((S('w'), pid + b'Q')))
        with pytest.raises(UnsafeCheckpointError, match='BINPERSID'):
            safe_load(crafted)
    with pytest.raises(CheckpointNotFoundError, match='is a folder'):
        safe_load(str(tmp_path))
    # tensors without data
    with torch.device('meta'):
        meta = VMamba(dims=8, depths=(1, 1, 1, 1)).state_dict()
    torch.save(dict(state_dict=meta), tmp_path / 'meta.pth')
    with pytest.raises(CheckpointFormatError, match='without data'):
        load_pretrained(
            VMamba(dims=8, depths=(1, 1, 1, 1)), str(tmp_path / 'meta.pth'))
    torch.save({(1, 2): torch.ones(1)}, tmp_path / 'keys.pth')
    with pytest.raises(CheckpointContentError, match='no weights'):
        load_pretrained(
            VMamba(dims=8, depths=(1, 1, 1, 1)), str(tmp_path / 'keys.pth'))


# --------------------------------------------------------------------------
# 2. the converter never loses its input


@pytest.fixture
def run_convert(capsys):
    """tools/convert_checkpoint.py's main, in this process: (exit status,
    everything it printed)."""
    spec = importlib.util.spec_from_file_location(
        'convert_checkpoint', REPO / 'tools' / 'convert_checkpoint.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)

    def run(*args):
        try:
            tool.main([str(a) for a in args])
            rc = 0
        except SystemExit as e:
            rc = e.code
        out = capsys.readouterr()
        return rc, out.out + out.err

    return run


def test_converter_refuses_its_input_as_output_and_says_why(
        tmp_path, run_convert):
    src = tmp_path / 'official.pth'
    torch.save(
        dict(model=tiny_state_dict(), model_ema=tiny_state_dict()), src)
    before = src.read_bytes()
    (tmp_path / 'link.pth').symlink_to(src)
    (tmp_path / 'sub').mkdir()
    for dst in (src, tmp_path / 'link.pth', tmp_path / 'sub' / '..' /
                'official.pth'):
        rc, out = run_convert(src, dst, '--format', 'backbone')
        assert rc == 2 and 'is the input file' in out, out
        assert 'Traceback' not in out
    assert src.read_bytes() == before
    # every other failure: the project's message, exit 2, nothing written
    sd = tiny_state_dict()
    sd['outnorm3.weight'][0] = float('nan')
    torch.save(dict(model=sd), tmp_path / 'nan.pth')
    (tmp_path / 'notes.txt').write_text('not a checkpoint')
    torch.save(dict(model={'fc.weight': torch.ones(1)}), tmp_path / 'fc.pth')
    cases = {
        tmp_path / 'absent.pth': 'not found',
        tmp_path / 'sub': 'is a folder',
        tmp_path / 'notes.txt': 'not a PyTorch checkpoint',
        tmp_path / 'nan.pth': 'NaN/Inf',
        tmp_path / 'fc.pth': 'holds no VMamba weights',
    }
    for bad, needle in cases.items():
        rc, out = run_convert(bad, tmp_path / 'out.pth')
        assert rc == 2 and needle in out and '[mmvmamba] error' in out, out
        assert 'Traceback' not in out
    assert not (tmp_path / 'out.pth').exists()
    rc, out = run_convert(tmp_path / 'nan.pth', tmp_path / 'out.pth',
                          '--allow-nonfinite', '--format', 'official')
    assert rc == 0, out
    out_sd = safe_load(str(tmp_path / 'out.pth'))['state_dict']
    assert torch.isnan(out_sd['classifier.norm.weight'][0])
    assert sorted(os.listdir(tmp_path)) == sorted(
        ['official.pth', 'link.pth', 'sub', 'nan.pth', 'notes.txt', 'fc.pth',
         'out.pth'])


def test_an_interrupted_save_leaves_the_old_file(tmp_path, monkeypatch):
    dst = tmp_path / 'out.pth'
    torch.save({'w': torch.zeros(2)}, dst)
    real_save = torch.save

    def dies_halfway(obj, f, *args, **kwargs):
        f.write(b'PK\x03\x04 half a file')
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, 'save', dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        save_atomic({'w': torch.ones(2)}, str(dst))
    monkeypatch.setattr(torch, 'save', real_save)
    assert os.listdir(tmp_path) == ['out.pth']  # no temporary file left
    assert torch.equal(safe_load(str(dst))['w'], torch.zeros(2))
    save_atomic({'w': torch.ones(2)}, str(dst))
    assert torch.equal(safe_load(str(dst))['w'], torch.ones(2))
    mask = os.umask(0)
    os.umask(mask)
    assert dst.stat().st_mode & 0o777 == 0o666 & ~mask  # as open() makes it


def test_pickle_of_a_bare_tuple_is_no_checkpoint(tmp_path):
    # a pickle that is a tuple: the message says what it is
    path = tmp_path / 'tuple.pth'
    torch.save((1, 2), path)
    with pytest.raises(CheckpointContentError, match='is a tuple'):
        load_pretrained(VMamba(dims=8, depths=(1, 1, 1, 1)), str(path))
