"""Every checkpoint scheme MMEngine knows ends in mmvmamba's safe_load:
open-mmlab://, torchvision://, mmcls://, s3:// and petrel:// as well as local
paths and http(s) (test_resume.py), with no network."""
import os
import sys
import types

import pytest
import torch
from mmengine.runner import checkpoint as mm
from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint

import mmvmamba  # noqa: F401  (routes MMEngine's loaders)
from mmvmamba.checkpoint import files as ours
from mmvmamba.checkpoint import UnsafeCheckpointError
from mmvmamba.checkpoint import schemes as routes


class Evil:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


@pytest.fixture
def files(tmp_path):
    """A clean checkpoint, and one whose unpickling would run a command."""
    clean = tmp_path / 'clean.pth'
    torch.save(dict(state_dict={'backbone.w': torch.arange(3.)}), clean)
    evil = tmp_path / 'evil.pth'
    marker = tmp_path / 'pwned'
    torch.save(dict(state_dict={}, meta=Evil(marker)), evil)
    return dict(clean=clean, evil=evil, marker=marker)


@pytest.fixture
def offline_urls(monkeypatch, files):
    """http(s) URLs resolve to the local files (no download)."""
    urls = {f'https://example.org/{k}.pth': str(v) for k, v in files.items()}
    monkeypatch.setattr(ours, 'cached_download', urls.__getitem__)
    return urls


def test_every_scheme_of_mmengine_is_routed():
    assert CheckpointLoader._schemes, 'MMEngine has no schemes?'
    for prefix, loader in CheckpointLoader._schemes.items():
        assert loader.__module__ == routes.__name__, (prefix, loader)


def check_loads_and_refuses(load, files):
    ckpt = load('clean')
    torch.testing.assert_close(ckpt['state_dict']['backbone.w'],
                               torch.arange(3.))
    with pytest.raises(UnsafeCheckpointError, match='posix.system'):
        load('evil')
    assert not files['marker'].exists()


@pytest.mark.parametrize('prefix', ['open-mmlab://', 'openmmlab://'])
def test_openmmlab_names(prefix, files, offline_urls, tmp_path, monkeypatch):
    home = tmp_path / 'home'
    (home / 'local').mkdir(parents=True)
    (home / 'local' / 'clean.pth').write_bytes(files['clean'].read_bytes())
    table = dict(
        clean='https://example.org/clean.pth',
        evil='https://example.org/evil.pth',
        on_disk='local/clean.pth')
    monkeypatch.setattr(mm, 'get_external_models', lambda: table)
    monkeypatch.setattr(mm, 'get_deprecated_model_names',
                        lambda: dict(old_name='on_disk'))
    monkeypatch.setattr(mm, '_get_mmengine_home', lambda: str(home))
    check_loads_and_refuses(lambda n: _load_checkpoint(prefix + n), files)
    # a file under the MMEngine home, reached through a deprecated name
    ckpt = _load_checkpoint(prefix + 'old_name')
    assert ckpt['state_dict']['backbone.w'][2] == 2
    with pytest.raises(KeyError, match="no model named 'nope'"):
        _load_checkpoint(prefix + 'nope')


@pytest.mark.parametrize('prefix', ['torchvision://', 'modelzoo://'])
def test_torchvision_names(prefix, files, offline_urls, monkeypatch):
    table = {k: f'https://example.org/{k}.pth' for k in ('clean', 'evil')}
    monkeypatch.setattr(mm, 'get_torchvision_models', lambda: table)
    check_loads_and_refuses(lambda n: _load_checkpoint(prefix + n), files)


def test_mmcls_names_keep_the_key_conversion(files, offline_urls,
                                             monkeypatch):
    table = {k: f'https://example.org/{k}.pth' for k in ('clean', 'evil')}
    monkeypatch.setattr(mm, 'get_mmcls_models', lambda: table)
    ckpt = _load_checkpoint('mmcls://clean')
    # MMEngine's mmcls conversion: 'backbone.' prefixes are stripped
    torch.testing.assert_close(ckpt['state_dict']['w'], torch.arange(3.))
    with pytest.raises(UnsafeCheckpointError, match='posix.system'):
        _load_checkpoint('mmcls://evil')
    assert not files['marker'].exists()


@pytest.mark.parametrize('url', ['s3://bucket/{}.pth', 'ceph:s3://b/{}.pth',
                                 'petrel://bucket/{}.pth'])
def test_file_backends_fetch_bytes_then_load_safely(url, files, tmp_path,
                                                    monkeypatch):
    asked, temp_files = [], []

    class Backend:

        def get(self, filepath):
            asked.append(filepath)
            return files[filepath.rsplit('/', 1)[1][:-4]].read_bytes()

    def backend(filename, backend_args):
        assert backend_args == {'backend': 'petrel'}
        return Backend()

    monkeypatch.setattr('mmengine.fileio.get_file_backend', backend)
    safe = routes.safe_load

    def spy(path, *args):
        temp_files.append(path)
        return safe(path, *args)

    monkeypatch.setattr(routes, 'safe_load', spy)
    check_loads_and_refuses(lambda n: _load_checkpoint(url.format(n)), files)
    assert asked == [url.format('clean'), url.format('evil')]
    # the bytes went through a temporary file, which is gone
    assert len(temp_files) == 2
    assert not any(os.path.exists(p) for p in temp_files)


def test_pavi_downloads_then_loads_safely(files, monkeypatch):
    class Model:

        def __init__(self, name):
            self.name = name + '.pth'

        def download(self, path):
            with open(path, 'wb') as f:
                f.write(files[self.name[:-4]].read_bytes())

    pavi = types.ModuleType('pavi')
    pavi.modelcloud = types.SimpleNamespace(get=Model)
    monkeypatch.setitem(sys.modules, 'pavi', pavi)
    check_loads_and_refuses(lambda n: _load_checkpoint('pavi://' + n), files)


def test_pavi_without_its_client_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, 'pavi', None)
    with pytest.raises(ImportError, match='pip install pavi'):
        _load_checkpoint('pavi://some/model')
