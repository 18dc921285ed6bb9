"""Throughput and peak memory versus input size, as a table and a plot.

Examples::

    # H100: VMamba-T against Swin-T and ConvNeXt-T, 224² → 1024², AMP fp16
    python tools/analysis/scaling.py vmamba-t swin-t convnext-t \\
        --dtype fp16 --out work_dirs/scaling
    # a CPU smoke run
    python tools/analysis/scaling.py vmamba-t resnet50 --sizes 64 96 \\
        --batch-224 2 --iters 2 --warmup 1

Models are specs of ``mmvmamba.analysis.backbones`` (random init). The batch
keeps pixels per batch constant (``--batch-224`` images at 224²). Writes
``scaling.csv``, ``scaling.md`` and ``scaling.png`` (images/s, Mpixels/s and
peak memory versus size) under ``--out``.
"""
import argparse
import os.path as osp
from functools import partial
from typing import List, Optional

import torch

from mmvmamba.analysis.backbones import build_last_stage
from mmvmamba.analysis.bench import PEERS, add_device_args, model_key
from mmvmamba.analysis.scaling import (DEFAULT_SIZES, plot_scaling,
                                       run_scaling, write_table)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('models', nargs='+', help='model specs')
    p.add_argument('--sizes', type=int, nargs='+', default=DEFAULT_SIZES)
    p.add_argument(
        '--batch-224',
        type=int,
        default=64,
        help='batch at 224²; scaled by (224/size)² elsewhere')
    p.add_argument('--dtype', default='fp32', choices=['fp32', 'fp16', 'bf16'])
    p.add_argument('--mode', default='infer', choices=['infer', 'train'])
    p.add_argument('--warmup', type=int, default=5)
    p.add_argument('--iters', type=int, default=20)
    add_device_args(p, backend=True)
    p.add_argument('--out', default='work_dirs/scaling')
    return p.parse_args(argv)


def _builder(spec: str, backend: Optional[str]):
    build = partial(
        lambda s, size: build_last_stage(
            s, img_size=size, vmamba_kwargs=dict(backend=backend)), spec)
    # timm models (the peers are timm's) fix their input size at construction
    build.per_size = spec.startswith('timm:') or model_key(spec) in PEERS
    return build


def main(argv: Optional[List[str]] = None) -> list:
    args = parse_args(argv)
    if args.device.startswith('cuda'):
        torch.backends.cudnn.benchmark = True
    builders = {m: _builder(m, args.backend) for m in args.models}
    rows = run_scaling(
        builders,
        sizes=args.sizes,
        batch_224=args.batch_224,
        device=torch.device(args.device),
        dtype=args.dtype,
        mode=args.mode,
        warmup=args.warmup,
        iters=args.iters)
    write_table(rows, osp.join(args.out, 'scaling.csv'),
                osp.join(args.out, 'scaling.md'))
    path = plot_scaling(rows, osp.join(args.out, 'scaling.png'))
    with open(osp.join(args.out, 'scaling.md')) as f:
        print(f.read())
    print(f'plot: {path}')
    return rows


if __name__ == '__main__':
    main()
