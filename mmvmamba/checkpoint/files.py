"""Where checkpoint files come from and how they are written: local paths
(a folder is named as one), downloads into the torch hub cache, and writes
that replace their target only when complete."""
import os
import os.path as osp
import tempfile
import time
from typing import Any, BinaryIO, Callable, Optional
from urllib.parse import unquote, urlparse

import torch

from .errors import (CheckpointDownloadError, CheckpointNotFoundError,
                     CheckpointWriteError)

URL_PREFIXES = ('http://', 'https://')


def missing_file_message(path: str, what: str = 'checkpoint') -> str:
    """Why ``path`` is not a file: absent, or a folder (with its .pth
    files)."""
    if osp.isdir(path):
        inside = sorted(f for f in os.listdir(path) if f.endswith('.pth'))
        shown = ', '.join(inside[:4]) + (', ...' if len(inside) > 4 else '')
        return (f'{what} {path!r} is a folder, not a file; pass a '
                'checkpoint file' + (f' in it ({shown})' if inside else
                                     ' (it holds no .pth files)'))
    return f'{what} file not found: {path!r}'


def local_file(filename: str) -> str:
    """A readable local file for a path or an http(s) URL (downloaded
    once); raises :class:`CheckpointNotFoundError`."""
    if filename.startswith(URL_PREFIXES):
        return cached_download(filename)
    if not osp.isfile(filename):
        raise CheckpointNotFoundError(missing_file_message(filename))
    return filename


def wait_for_file(path: str, timeout: float) -> None:
    """Block until rank 0 has written ``path`` (other ranks of a launch)."""
    start = time.time()
    while not osp.exists(path):
        if time.time() - start > timeout:
            raise TimeoutError(f'timed out after {timeout:.0f} s waiting for '
                               f'{path!r} from rank 0')
        time.sleep(1)


def cached_download(url: str, option: Optional[str] = None) -> str:
    """Download ``url`` into the torch hub cache once; returns the file.

    ``torch.hub.download_url_to_file`` writes to a temporary file and renames
    it, so a failed download leaves nothing half-written. ``option``: how
    the caller's user passes a local copy instead (named in the error).
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
            f'at {dst!r}, or pass a local copy'
            + (f' with {option}' if option else ' instead of the URL')) from e
    return dst


def same_file(a: str, b: str) -> bool:
    """Whether two paths name one file (links, ``..``, hard links)."""
    if osp.exists(a) and osp.exists(b):
        return osp.samefile(a, b)
    return osp.realpath(a) == osp.realpath(b)


def save_atomic(obj: Any, dst: str, src: Optional[str] = None) -> None:
    """``torch.save(obj, dst)`` through a temporary file beside ``dst``
    that replaces it only when complete: an interrupted save leaves the old
    ``dst`` (or none), never half a file. Refuses ``dst`` that is ``src``
    (by any path): the input would be lost."""
    if src is not None and not src.startswith(URL_PREFIXES) and same_file(
            src, dst):
        raise CheckpointWriteError(
            f'the output {dst!r} is the input file {src!r}; writing it would '
            'replace the checkpoint being converted. Pass another output '
            'path')
    if osp.isdir(dst):
        raise CheckpointWriteError(
            f'the output {dst!r} is a folder; pass a file path such as '
            f'{osp.join(dst, "converted.pth")!r}')
    write_atomic(dst, lambda f: torch.save(obj, f))


def write_atomic(dst: str, write: Callable[[BinaryIO], Any]) -> None:
    """Call ``write`` on a temporary file beside ``dst`` that replaces
    ``dst`` only when ``write`` returned and the bytes are on disk: an
    interrupted write leaves the old ``dst`` (or none), never half a file."""
    folder = osp.dirname(osp.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f'.{osp.basename(dst)}.', suffix='.part', dir=folder)
    mask = os.umask(0)
    os.umask(mask)
    try:
        os.chmod(tmp, 0o666 & ~mask)  # as open() would make it
        with os.fdopen(fd, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    except BaseException:
        if osp.exists(tmp):
            os.unlink(tmp)
        raise
