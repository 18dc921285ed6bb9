"""Effective receptive field maps of backbones, as heat-map PNGs.

Examples::

    # VMamba-T (random init) beside Swin-T and ConvNeXt-T, demo images
    python tools/analysis/erf.py vmamba-t swin-t convnext-t --out work_dirs/erf
    # before/after training: the same config with and without a checkpoint
    python tools/analysis/erf.py configs/vmamba_t_in1k.py \\
        configs/vmamba_t_in1k.py@work_dirs/epoch_300.pth \\
        --labels init trained --images data/imagenet/val --size 1024

A model is a spec of ``mmvmamba.analysis.backbones`` (vmamba-t, swin-t,
convnext-t, resnet50, timm:<name>, a config file), optionally ``@CHECKPOINT``.
Images: ``--images DIR`` (any folder); default the demo data (generated on the
first run), or ``--synthetic`` smooth random images.
"""
import argparse
import json
import os
import os.path as osp
import re
from typing import Iterator, List, Optional

import numpy as np
import torch

from mmvmamba.analysis.backbones import build_last_stage, spec_label
from mmvmamba.analysis.bench import add_device_args
from mmvmamba.analysis.erf import (erf_map, erf_summary, load_images,
                                   plot_erfs, synthetic_images)

DEMO_ROOT = 'data/vmamba_demo'


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('models', nargs='+', help='model specs [@checkpoint]')
    p.add_argument('--labels', nargs='+', help='plot labels, one per model')
    p.add_argument('--images', help='image folder (default: demo data)')
    p.add_argument(
        '--synthetic',
        action='store_true',
        help='use smooth random images instead of a folder')
    p.add_argument('--num-images', type=int, default=50)
    p.add_argument(
        '--size',
        type=int,
        default=1024,
        help='input side in pixels (official: 1024)')
    p.add_argument(
        '--masses',
        type=float,
        nargs='+',
        default=[0.5, 0.9],
        help='gradient-mass shares for the area numbers')
    add_device_args(p, backend=True)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', default='work_dirs/erf', help='output folder')
    return p.parse_args(argv)


def _images(args: argparse.Namespace) -> Iterator[torch.Tensor]:
    if args.synthetic:
        return synthetic_images(args.size, args.num_images, args.seed)
    folder = args.images
    if folder is None:
        from mmvmamba.datasets.demo_shapes import generate_demo_shapes
        folder = osp.join(generate_demo_shapes(DEMO_ROOT), 'val')
    return load_images(folder, args.size, args.num_images)


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    if args.labels and len(args.labels) != len(args.models):
        raise SystemExit(f'--labels has {len(args.labels)} entries for '
                         f'{len(args.models)} models; give one per model')
    os.makedirs(args.out, exist_ok=True)
    device = torch.device(args.device)
    maps, stats = {}, {}
    for i, item in enumerate(args.models):
        spec, _, ckpt = item.partition('@')
        label = args.labels[i] if args.labels else spec_label(spec) + (
            ' (trained)' if ckpt else '')
        torch.manual_seed(args.seed)  # same random init on every run
        model = build_last_stage(
            spec,
            ckpt or None,
            img_size=args.size,
            vmamba_kwargs=dict(backend=args.backend))
        model = model.to(device)
        used = [0]

        def counted(images):
            for img in images:
                used[0] += 1
                yield img

        erf = erf_map(model, counted(_images(args)), device)
        del model
        maps[label] = erf
        stats[label] = erf_summary(erf, args.masses)
        name = re.sub(r'[^A-Za-z0-9_.-]+', '_', label)
        np.save(osp.join(args.out, f'erf_{name}.npy'), erf)
        plot_erfs({label: erf}, osp.join(args.out, f'erf_{name}.png'),
                  args.masses)
        nums = ', '.join(f'{k} {v:.2%}' for k, v in stats[label].items())
        print(
            f'{label} ({used[0]} images, {args.size}²): input area holding '
            f'the gradient mass: {nums}',
            flush=True)
    if len(maps) > 1:
        path = plot_erfs(maps, osp.join(args.out, 'erf_compare.png'),
                         args.masses)
        print(f'side-by-side figure: {path}')
    with open(osp.join(args.out, 'erf_stats.json'), 'w') as f:
        json.dump(
            dict(size=args.size, num_images=args.num_images, stats=stats),
            f,
            indent=1)
    return stats


if __name__ == '__main__':
    main()
