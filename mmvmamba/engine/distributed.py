"""MMEngine's distributed runtime on CPUs and its tear-down (``tools/``,
benchmarks)."""
import os

import torch
from mmengine.config import Config, ConfigDict


class LaunchError(RuntimeError):
    """A launcher that cannot work on this machine; the message says which
    one does."""


def setup_cpu_distributed(cfg: Config, launcher: str) -> None:
    """Make ``--launcher pytorch`` work without CUDA (gloo, no set_device).

    MMEngine's ``init_dist`` calls ``torch.cuda.set_device`` and its default
    DDP wrapper passes ``device_ids=[LOCAL_RANK]``; both fail on CPUs. We
    start the gloo process group ourselves (the Runner then skips its own)
    and wrap the model with ``device_ids=None``.
    """
    if launcher == 'none' or torch.cuda.is_available():
        return
    if launcher != 'pytorch':
        raise LaunchError(
            f'--launcher {launcher} without CUDA is not supported; use '
            '--launcher pytorch (torchrun, tools/dist_train.sh) on CPUs')
    import torch.distributed as dist
    cfg.setdefault('env_cfg', ConfigDict())
    cfg.env_cfg.setdefault('dist_cfg', ConfigDict())
    cfg.env_cfg.dist_cfg.backend = 'gloo'
    if not dist.is_initialized():
        dist.init_process_group(
            backend='gloo',
            rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']))
    wrapper = dict(cfg.get('model_wrapper_cfg', None) or {})
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    wrapper.setdefault('broadcast_buffers', False)
    wrapper.setdefault('find_unused_parameters',
                       cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def finish_distributed() -> None:
    """Tear the process group down before the interpreter exits.

    Left to interpreter shutdown, gloo's background threads can be destroyed
    while still joinable, and a rank then dies with SIGABRT ("terminate called
    without an active exception") after a successful run.
    """
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
