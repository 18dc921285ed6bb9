"""Train a detector, segmentor or classifier from an mmdet/mmseg/mmpretrain
config with a VMamba backbone (one entry point for all three).

Examples::

    python tools/train.py configs/demo/maskrcnn_vmamba_t_demo-shapes.py
    python tools/train.py configs/maskrcnn_vmamba_t_coco.py --amp
    bash tools/dist_train.sh configs/maskrcnn_vmamba_t_coco.py 8
"""
import argparse
import glob
import os
import os.path as osp
import sys
from typing import Optional

# ``import mmvmamba`` first: it registers the model scope and lets resume
# read MMEngine checkpoints under torch's weights_only default.
import mmvmamba  # noqa: F401,E402  isort:skip
import torch
from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner
from mmengine.runner.checkpoint import find_latest_checkpoint

from mmvmamba.apis.inference import checked_load_from
from mmvmamba.checkpoint import (CheckpointError, missing_file_message,
                                 safe_load)
from mmvmamba.cli.entry import hide_third_party_warnings
from mmvmamba.cli.preflight import (PreflightError, check_checkpoints,
                                    check_datasets, check_pretrained_fit,
                                    downstream_of, ensure_demo_data,
                                    load_config)
from mmvmamba.engine.distributed import (LaunchError, finish_distributed,
                                         setup_cpu_distributed)
from mmvmamba.engine.replicas import check_replicas, describe


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Train a model (mmdet / mmseg / mmpretrain config)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--work-dir',
        help='where logs and checkpoints go (default ./work_dirs/<config>)')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='automatic mixed precision (needs a CUDA GPU)')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or, without a value, from '
        'the latest checkpoint in the work_dir')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the lr by the actual total batch size')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value pairs, e.g. '
        'model.backbone.init_cfg.checkpoint=/path/to/vmamba_t.pth')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher (pytorch = torchrun, see tools/dist_train.sh)')
    parser.add_argument(
        '--replica-digest',
        metavar='DIR',
        help='after training, every rank writes DIR/rank<R>.json with a '
        'SHA-256 of its model state; the digests of all ranks are gathered '
        'and the run fails if the replicas differ (python -m '
        'mmvmamba.engine.replicas DIR compares the files later)')
    parser.add_argument(
        '--allow-nonfinite',
        action='store_true',
        help='start from (load_from, --resume) weights holding NaN/Inf '
        '(refused by default)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_cfg(args: argparse.Namespace) -> Config:
    """The config with all command-line choices applied and checked."""
    cfg = load_config(args.config, args.launcher, args.cfg_options,
                      args.work_dir)
    downstream = downstream_of(cfg)

    if args.amp:
        if not torch.cuda.is_available():
            raise PreflightError(
                '--amp needs a CUDA GPU (mixed precision is not supported on '
                'CPUs by AmpOptimWrapper); drop --amp to train in fp32')
        if cfg.optim_wrapper.get('type',
                                 'OptimWrapper') not in ('OptimWrapper',
                                                         'AmpOptimWrapper'):
            raise PreflightError(
                '--amp works with optim_wrapper.type=OptimWrapper, got '
                f'{cfg.optim_wrapper.type!r}')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    elif (cfg.get('optim_wrapper', {}).get('type') == 'AmpOptimWrapper'
          and not torch.cuda.is_available()):
        raise PreflightError(
            'this config trains with AmpOptimWrapper, which needs a CUDA GPU; '
            'on a CPU use --cfg-options optim_wrapper.type=OptimWrapper')

    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or not cfg.auto_scale_lr.get(
                'base_batch_size'):
            raise PreflightError(
                '--auto-scale-lr needs auto_scale_lr=dict(base_batch_size=N) '
                'in the config')
        cfg.auto_scale_lr.enable = True

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        if '://' not in args.resume and not osp.isfile(args.resume):
            raise PreflightError(
                '--resume: ' + missing_file_message(args.resume))
        cfg.resume = True
        cfg.load_from = args.resume

    # the mmdet/mmseg/mmpretrain registries are found via default_scope;
    # importing the package here gives a clear error if it is missing
    __import__(downstream)
    return cfg


def _previous_good(bad: str) -> Optional[str]:
    """The newest other checkpoint beside ``bad`` that reads."""
    folder = osp.dirname(osp.abspath(bad))
    others = sorted(
        (f for f in glob.glob(osp.join(folder, '*.pth'))
         if not osp.samefile(f, bad)),
        key=osp.getmtime,
        reverse=True)
    for path in others[:5]:
        try:
            safe_load(path)
        except Exception:  # damaged too: try the one before
            continue
        return path
    return None


def check_start(cfg: Config, args: argparse.Namespace) -> None:
    """The one checked load of the weights a run starts from (``load_from``
    or the checkpoint ``--resume`` picks): read safely, refused if it does
    not fit the model or holds NaN/Inf, before the work_dir exists. A
    damaged resume checkpoint names the previous good one of the run."""
    path = cfg.get('load_from', None)
    if cfg.get('resume', False) and path is None:
        path = find_latest_checkpoint(cfg.work_dir)  # --resume: the last one
    if not path:
        return
    try:
        cfg.load_from = checked_load_from(cfg, path, args.config,
                                          args.allow_nonfinite)
    except PreflightError as e:
        if not (cfg.get('resume', False) and osp.isfile(path)):
            raise
        prev = _previous_good(path)
        raise PreflightError(
            f'cannot resume from {path!r}: {e}\n  -> ' +
            (f'resume from the previous checkpoint of this run, which reads '
             f'fine: --resume {prev}' if prev else
             'no other checkpoint beside it reads; train from the start '
             '(without --resume)')) from e


def main(argv=None) -> None:
    hide_third_party_warnings()
    args = parse_args(argv)
    try:
        cfg = build_cfg(args)
        setup_cpu_distributed(cfg, args.launcher)
        ensure_demo_data(cfg)
        check_datasets(cfg, ('train_dataloader', 'val_dataloader'))
        check_checkpoints(cfg)
        check_pretrained_fit(cfg)
        check_start(cfg, args)
    except (PreflightError, LaunchError, CheckpointError) as e:
        print(f'[mmvmamba] error: {e}', file=sys.stderr)
        sys.exit(2)
    # the work_dir is created only now, after every check has passed
    if 'runner_type' in cfg:
        runner = RUNNERS.build(cfg)
    else:
        runner = Runner.from_cfg(cfg)
    runner.train()
    same = True
    if args.replica_digest:
        same, msg = describe(check_replicas(runner.model, args.replica_digest))
        if runner.rank == 0:
            print(f'[mmvmamba] {msg}' if same else
                  f'[mmvmamba] error: {msg}; data-parallel training should '
                  'keep them bit-identical (a rank-dependent random op, or '
                  'a parameter updated outside the optimizer?)',
                  file=sys.stdout if same else sys.stderr, flush=True)
    finish_distributed()
    if not same:
        sys.exit(1)


if __name__ == '__main__':
    main()
