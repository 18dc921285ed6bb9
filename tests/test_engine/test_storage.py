"""MMEngine's local writes (checkpoints included) are all-or-nothing once
mmvmamba is imported."""
import os

import pytest
import torch
from mmengine.fileio import get_file_backend
from mmengine.runner.checkpoint import save_checkpoint

import mmvmamba  # noqa: F401  (registers the backend)
from mmvmamba.checkpoint import safe_load
from mmvmamba.engine.storage import AtomicLocalBackend


def test_local_paths_use_the_atomic_backend(tmp_path):
    backend = get_file_backend(str(tmp_path / 'x.pth'))
    assert isinstance(backend, AtomicLocalBackend)
    backend.put(b'abc', tmp_path / 'sub' / 'x.bin')
    assert (tmp_path / 'sub' / 'x.bin').read_bytes() == b'abc'
    backend.put_text('héllo', tmp_path / 'x.txt')
    assert (tmp_path / 'x.txt').read_text(encoding='utf-8') == 'héllo'


def test_an_interrupted_checkpoint_save_keeps_the_old_file(
        tmp_path, monkeypatch):
    path = str(tmp_path / 'epoch_1.pth')
    save_checkpoint({'state_dict': {'w': torch.ones(3)}}, path)
    before = open(path, 'rb').read()

    def killed(fd):  # the process dies after half the bytes
        raise KeyboardInterrupt

    monkeypatch.setattr(os, 'fsync', killed)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({'state_dict': {'w': torch.zeros(1000)}}, path)
    monkeypatch.undo()
    assert open(path, 'rb').read() == before
    assert sorted(os.listdir(tmp_path)) == ['epoch_1.pth']  # no .part left
    assert torch.equal(safe_load(path)['state_dict']['w'], torch.ones(3))
