"""Evaluate a checkpoint with an mmdet/mmseg/mmpretrain config (one entry
point for all three).

Examples::

    python tools/test.py configs/demo/maskrcnn_vmamba_t_demo-shapes.py \\
        work_dirs/maskrcnn_vmamba_t_demo-shapes/epoch_12.pth --show-dir vis
    python tools/test.py configs/upernet_vmamba_t_ade20k-512x512-160k.py \\
        upernet.pth --tta
    bash tools/dist_test.sh configs/maskrcnn_vmamba_t_coco.py ckpt.pth 8
"""
import argparse
import os
import os.path as osp
import sys
import mmvmamba  # noqa: F401,E402  isort:skip
import torch
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmvmamba.apis.inference import checked_load_from
from mmvmamba.checkpoint import CheckpointError, missing_file_message
from mmvmamba.engine.hooks import use_main_process_logger
from mmvmamba.cli.entry import hide_third_party_warnings
from mmvmamba.cli.preflight import (PreflightError, check_checkpoints,
                                    check_datasets, downstream_of,
                                    drop_pretrained, ensure_demo_data,
                                    load_config)
from mmvmamba.engine.distributed import (LaunchError, finish_distributed,
                                         setup_cpu_distributed)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Test (and evaluate) a model checkpoint')
    parser.add_argument('config', help='test config file path')
    parser.add_argument(
        'checkpoint',
        nargs='?',
        help='checkpoint file (path or URL); default: the config\'s '
        'load_from. Official VMamba classification files are accepted for '
        'mmpretrain configs')
    parser.add_argument(
        '--work-dir', help='where the evaluation log and metrics go')
    parser.add_argument(
        '--show-dir',
        help='write pictures of the predictions into this folder (relative '
        'paths are inside work_dir/<timestamp>/)')
    parser.add_argument(
        '--tta',
        action='store_true',
        help='test-time augmentation (the config\'s tta_model/tta_pipeline; '
        'for segmentation: multi-scale + flip)')
    parser.add_argument(
        '--amp', action='store_true', help='fp16 inference (needs a GPU)')
    parser.add_argument(
        '--allow-nonfinite',
        action='store_true',
        help='evaluate a checkpoint holding NaN/Inf weights (refused by '
        'default: every score would be meaningless)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value pairs')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def _enable_visualization(cfg: Config, downstream: str, show_dir: str) -> None:
    hook = cfg.get('default_hooks', {}).get('visualization', None)
    if hook is None:
        raise PreflightError(
            '--show-dir needs a visualization hook in default_hooks')
    if downstream == 'mmpretrain':
        hook.enable = True
        hook.out_dir = show_dir
    elif downstream == 'mmseg':
        hook.draw = True
        hook.interval = 1
        cfg.visualizer['save_dir'] = show_dir
    else:
        hook.draw = True
        hook.test_out_dir = show_dir


def build_cfg(args: argparse.Namespace) -> Config:
    """The config with all command-line choices applied and checked."""
    cfg = load_config(args.config, args.launcher, args.cfg_options,
                      args.work_dir)
    ckpt = args.checkpoint or cfg.get('load_from', None)
    if not ckpt:
        raise PreflightError(
            'no checkpoint: pass one after the config (or set load_from)')
    if '://' not in ckpt and not osp.isfile(ckpt):
        raise PreflightError(missing_file_message(ckpt))
    downstream = downstream_of(cfg)
    cfg.load_from = ckpt
    cfg.resume = False
    # the weights come from the checkpoint: skip downloading pretrained ones
    drop_pretrained(cfg.model)
    # one writer for the metrics json of a distributed test
    use_main_process_logger(cfg)

    if args.show_dir:
        _enable_visualization(cfg, downstream, args.show_dir)
    if args.amp:
        if not torch.cuda.is_available():
            raise PreflightError('--amp needs a CUDA GPU; drop it on a CPU')
        cfg.setdefault('test_cfg', ConfigDict())
        cfg.test_cfg.fp16 = True
    __import__(downstream)
    return cfg


def use_tta(cfg: Config) -> None:
    """Wrap the model in the config's test-time augmentation."""
    missing = [k for k in ('tta_model', 'tta_pipeline') if k not in cfg]
    if missing:
        raise PreflightError(
            f'--tta needs {" and ".join(missing)} in the config; this '
            f'{downstream_of(cfg)} config defines no test-time augmentation')
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model


def main(argv=None) -> None:
    hide_third_party_warnings()
    args = parse_args(argv)
    try:
        cfg = build_cfg(args)
        setup_cpu_distributed(cfg, args.launcher)
        ensure_demo_data(cfg)
        check_datasets(cfg, ('test_dataloader', ))
        check_checkpoints(cfg)
        # read once, converted if official, checked against the model:
        # nothing is evaluated with weights that do not fit
        cfg.load_from = checked_load_from(cfg, cfg.load_from, args.config,
                                          args.allow_nonfinite)
        if args.tta:
            use_tta(cfg)
    except (PreflightError, LaunchError, CheckpointError) as e:
        print(f'[mmvmamba] error: {e}', file=sys.stderr)
        sys.exit(2)
    if 'runner_type' in cfg:
        runner = RUNNERS.build(cfg)
    else:
        runner = Runner.from_cfg(cfg)
    runner.test()
    finish_distributed()


if __name__ == '__main__':
    main()
