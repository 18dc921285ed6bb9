"""FLOPs and parameters with the official VMamba counting rules.

Examples::

    # all 9 ImageNet presets at 224² (head included) against the spec
    python tools/analysis/flops.py
    python tools/analysis/flops.py tiny small base
    # any mm config: detectors at 1280×800, segmentors at 512×2048,
    # classifiers at 224² unless --shape is given
    python tools/analysis/flops.py configs/maskrcnn_vmamba_t_coco.py
    python tools/analysis/flops.py configs/upernet_vmamba_t_ade20k-512x512-160k.py

The counts depend on shapes only, so the SS2D core is replaced by a shape-only
stand-in while tracing (``--real-core`` runs the real one; same numbers).
"""
import argparse
import os
import os.path as osp
import sys
from typing import List, Optional

import torch

from mmvmamba.analysis.backbones import LastStage, build_from_config
from mmvmamba.analysis.flops import (SPEC_DOWNSTREAM_GFLOPS, SPEC_GFLOPS,
                                     ImageClassifierForFlops,
                                     count_model_flops, model_kind)

DEFAULT_SHAPES = dict(
    detector=(1280, 800), segmentor=(512, 2048), plain=(224, 224))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument(
        'models',
        nargs='*',
        default=list(SPEC_GFLOPS),
        help='VMamba presets (%s) or config files; default: all '
        'presets' % ', '.join(SPEC_GFLOPS))
    p.add_argument(
        '--shape',
        type=int,
        nargs='+',
        help='input H [W] (default per model kind)')
    p.add_argument('--checkpoint', help='weights for a config (optional)')
    p.add_argument(
        '--real-core',
        action='store_true',
        help='run the real SS2D core while tracing (slower)')
    p.add_argument('--device', default='cpu')
    p.add_argument('--out', help='also write the Markdown table here')
    return p.parse_args(argv)


def _spec_key(kind: str, name: str) -> Optional[str]:
    """The official number this model should reproduce, if any."""
    if not osp.isfile(name):
        return name
    from mmengine.config import Config
    backbone = Config.fromfile(name).model.get('backbone', {})
    if backbone.get('type') != 'mmvmamba.VMamba' or \
            not isinstance(backbone.get('arch'), str):
        return None
    prefix = dict(detector='mask-rcnn_', segmentor='upernet_').get(kind, '')
    return prefix + backbone['arch']


def main(argv: Optional[List[str]] = None) -> List[dict]:
    args = parse_args(argv)
    from mmvmamba.models.vmamba import ARCH_ALIASES, VMamba
    rows = []
    for name in args.models:
        if osp.isfile(name):
            model = build_from_config(name, args.checkpoint)
            kind = model_kind(model)
        else:
            arch = ARCH_ALIASES.get(name, name)
            if arch not in SPEC_GFLOPS:
                sys.exit(f'unknown model {name!r}: expected a config file or '
                         f'one of {list(SPEC_GFLOPS)}')
            bb = VMamba(arch=arch, out_indices=(3, ))
            model = ImageClassifierForFlops(LastStage(bb), bb.num_features)
            kind, name = 'plain', arch
        shape = tuple(args.shape) if args.shape else DEFAULT_SHAPES[kind]
        shape = shape * 2 if len(shape) == 1 else shape
        model = model.to(args.device)
        out = count_model_flops(model, shape, cheap_core=not args.real_core)
        key = _spec_key(kind, name)
        spec = None
        if key in SPEC_GFLOPS and shape == (224, 224):
            spec = SPEC_GFLOPS[key]
        elif key in SPEC_DOWNSTREAM_GFLOPS and \
                SPEC_DOWNSTREAM_GFLOPS[key][2:] == shape:
            spec = SPEC_DOWNSTREAM_GFLOPS[key][0]
        rows.append(
            dict(
                model=osp.basename(name),
                shape=shape,
                gflops=out['flops'] / 1e9,
                mparams=out['params'] / 1e6,
                spec=spec))
        r = rows[-1]
        diff = f'{100 * (r["gflops"] / spec - 1):+.2f}%' if spec else '-'
        print(
            f'{r["model"]}: {r["gflops"]:.3f} GFLOPs, {r["mparams"]:.3f} '
            f'M params at {shape[0]}x{shape[1]} (official: '
            f'{spec or "-"} G, {diff})',
            flush=True)
    table = [
        '| model | input | GFLOPs | params (M) | official GFLOPs | diff |',
        '| --- | --- | --- | --- | --- | --- |'
    ]
    for r in rows:
        diff = (f'{100 * (r["gflops"] / r["spec"] - 1):+.2f}%'
                if r['spec'] else '-')
        table.append(f'| {r["model"]} | {r["shape"][0]}×{r["shape"][1]} | '
                     f'{r["gflops"]:.3f} | {r["mparams"]:.2f} | '
                     f'{r["spec"] or "-"} | {diff} |')
    print('\n'.join(table))
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            f.write('\n'.join(table) + '\n')
    return rows


if __name__ == '__main__':
    torch.set_grad_enabled(False)
    main()
