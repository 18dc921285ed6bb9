"""MMEngine's ``CheckpointLoader`` schemes, every one ending in :func:`safe_load`.

Since torch 2.6 ``torch.load`` defaults to ``weights_only=True``; MMEngine 0.10.7
checkpoints carry its message hub (``HistoryBuffer`` objects, numpy arrays and
scalars, and ``getattr(HistoryBuffer, 'mean')``), so ``resume=True`` fails with
``Unsupported global``, and MMEngine's loaders call ``torch.load`` without
``weights_only``, so they unpickle anything as soon as
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` is set. Instead of switching
``weights_only`` off (a checkpoint is untrusted input) or widening torch's
process-wide allow-list, every scheme of MMEngine's ``CheckpointLoader`` gets a
loader that ends in ``safe_load``, which allow-lists checked stand-ins of those
objects for each load only:

* local paths and http(s) URLs: ``safe_load`` itself;
* ``open-mmlab://``/``openmmlab://``, ``torchvision://``/``modelzoo://`` and
  ``mmcls://`` names: resolved with MMEngine's own model tables to a URL (or a
  file under the MMEngine home), then ``safe_load``;
* ``s3://``/``petrel://`` (MMEngine's file backends) and ``pavi://``: the bytes
  are fetched into a temporary file, then ``safe_load``;
* ``mmvmamba-checked://<file>``: a checkpoint read and checked already
  (:func:`prepare`), handed to a Runner or an inferencer without a second
  read.
"""
import itertools
import os.path as osp
import tempfile
from typing import Any, Callable, Dict

from .unpickle import safe_load

HTTP = ('http://', 'https://')
OPENMMLAB = ('open-mmlab://', 'openmmlab://')
TORCHVISION = ('modelzoo://', 'torchvision://')
BACKENDS = (r'(\S+\:)?s3://', r'(\S+\:)?petrel://')


def load_from_mmvmamba_safe_load(filename: str,
                                 map_location: Any = None) -> Any:
    """MMEngine ``CheckpointLoader`` scheme: local files and http(s) URLs."""
    if not filename.startswith(HTTP):
        filename = osp.expanduser(filename)
    return safe_load(filename, map_location)


def _model_name(filename: str) -> str:
    """'open-mmlab://resnet50_v1c' -> 'resnet50_v1c'."""
    return filename.split('://', 1)[1]


def _from_table(table: dict, name: str, filename: str) -> str:
    if name not in table:
        raise KeyError(
            f'{filename!r}: MMEngine knows no model named {name!r} '
            f'(known: {", ".join(sorted(table)[:8])}, ...)')
    return table[name]


def load_from_openmmlab_safe(filename: str, map_location: Any = None) -> Any:
    """``open-mmlab://NAME`` / ``openmmlab://NAME`` (MMEngine's model table)."""
    from mmengine.runner import checkpoint as mm
    name = _model_name(filename)
    name = mm.get_deprecated_model_names().get(name, name)
    where = _from_table(mm.get_external_models(), name, filename)
    if not where.startswith(HTTP):
        where = osp.join(mm._get_mmengine_home(), where)
    return load_from_mmvmamba_safe_load(where, map_location)


def load_from_torchvision_safe(filename: str, map_location: Any = None) -> Any:
    """``torchvision://NAME`` / ``modelzoo://NAME`` (torchvision's URLs)."""
    from mmengine.runner import checkpoint as mm
    name = _model_name(filename)
    url = _from_table(mm.get_torchvision_models(), name, filename)
    return load_from_mmvmamba_safe_load(url, map_location)


def load_from_mmcls_safe(filename: str, map_location: Any = None) -> Any:
    """``mmcls://NAME``: the file, with MMEngine's mmcls key conversion."""
    from mmengine.runner import checkpoint as mm
    name = _model_name(filename)
    url = _from_table(mm.get_mmcls_models(), name, filename)
    return mm._process_mmcls_checkpoint(
        load_from_mmvmamba_safe_load(url, map_location))


def _load_fetched(fetch: Callable[[str], None], filename: str,
                  map_location: Any) -> Any:
    """``fetch(path)`` writes the file; it is read with ``safe_load`` and
    removed."""
    with tempfile.TemporaryDirectory(prefix='mmvmamba_ckpt_') as tmp:
        path = osp.join(tmp, osp.basename(filename.rstrip('/')) or 'ckpt')
        fetch(path)
        return load_from_mmvmamba_safe_load(path, map_location)


def load_from_backend_safe(filename: str,
                           map_location: Any = None,
                           backend: str = 'petrel') -> Any:
    """``s3://`` / ``petrel://``: bytes from MMEngine's file backend."""
    from mmengine.fileio import get_file_backend
    file_backend = get_file_backend(
        filename, backend_args={'backend': backend})

    def fetch(path: str) -> None:
        with open(path, 'wb') as f:
            f.write(file_backend.get(filename))

    return _load_fetched(fetch, filename, map_location)


def load_from_pavi_safe(filename: str, map_location: Any = None) -> Any:
    """``pavi://MODEL``: downloaded with the ``pavi`` client."""
    try:
        from pavi import modelcloud
    except ImportError as e:
        raise ImportError(
            f'{filename!r} needs the pavi client: pip install pavi') from e
    model = modelcloud.get(_model_name(filename))
    return _load_fetched(model.download, model.name, map_location)


#: checkpoints loaded and checked already, by their ``checked://`` name
CHECKED = 'mmvmamba-checked://'
_PREPARED: Dict[str, Any] = {}
_COUNT = itertools.count()


def load_from_checked(filename: str, map_location: Any = None) -> Any:
    """``mmvmamba-checked://<path>``: a checkpoint :func:`prepare` holds
    (read once: the entry is dropped as it is handed out)."""
    if filename not in _PREPARED:
        raise KeyError(f'{filename!r} was handed out already or never '
                       'prepared (mmvmamba.checkpoint.prepare)')
    return _PREPARED.pop(filename)


def prepare(ckpt: Any, source: str) -> str:
    """A name under which MMEngine's ``CheckpointLoader`` (the Runner's
    ``load_from`` and ``resume``, the inferencers) returns ``ckpt``, which
    was loaded and checked already; ``source`` (the file) shows in the
    name, which MMEngine logs."""
    name = f'{CHECKED}{source}'
    while name in _PREPARED:  # the same file prepared twice at once
        name = f'{CHECKED}{source}#{next(_COUNT)}'
    _PREPARED[name] = ckpt
    return name


def release(name: str) -> None:
    """Drop a prepared checkpoint that was not read."""
    _PREPARED.pop(name, None)


# MMEngine logs "Loads checkpoint by <name[10:]> backend"
for _fn, _what in ((load_from_mmvmamba_safe_load, 'safe_load'),
                   (load_from_openmmlab_safe, 'openmmlab + safe_load'),
                   (load_from_torchvision_safe, 'torchvision + safe_load'),
                   (load_from_mmcls_safe, 'mmcls + safe_load'),
                   (load_from_backend_safe, 'file backend + safe_load'),
                   (load_from_pavi_safe, 'pavi + safe_load'),
                   (load_from_checked, 'checked checkpoint')):
    _fn.__name__ = f'load_from_mmvmamba {_what}'

SCHEMES = (
    (('', ) + HTTP, load_from_mmvmamba_safe_load),
    (OPENMMLAB, load_from_openmmlab_safe),
    (TORCHVISION, load_from_torchvision_safe),
    (('mmcls://', ), load_from_mmcls_safe),
    (BACKENDS, load_from_backend_safe),
    (('pavi://', ), load_from_pavi_safe),
    ((CHECKED, ), load_from_checked),
)


def allow_mmengine_checkpoints() -> None:
    """Register the loaders above for every scheme MMEngine has; idempotent,
    called on ``import mmvmamba``."""
    from mmengine.runner.checkpoint import CheckpointLoader
    for prefixes, loader in SCHEMES:
        CheckpointLoader.register_scheme(
            prefixes=list(prefixes), loader=loader, force=True)
