"""Seconds per Mask R-CNN training step: VMamba-T beside mmdet's Swin-T.

Both models are built from their COCO 1x configs (no pretrained weights),
fed the same random batch (boxes + masks from ``mmdet.testing``), and
trained with AdamW through ``model.train_step`` (AMP on a GPU), so the
numbers are directly comparable. Example (H100)::

    python tools/benchmark/maskrcnn_step_speed.py --batch 2 --height 800 \\
        --width 1344 --amp --iters 30
"""
import argparse
import json
import os.path as osp
import tempfile
import time
from typing import Dict

import mmvmamba  # noqa: F401  isort:skip
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MODELS = {
    'vmamba_t': osp.join(ROOT, 'configs', 'maskrcnn_vmamba_t_coco.py'),
    'swin_t': 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py',
}


def load_cfg(path: str) -> Config:
    if '::' not in path:
        return Config.fromfile(path)
    # 'mmdet::' only works inside _base_
    with tempfile.NamedTemporaryFile('w', suffix='.py', delete=False) as f:
        f.write(f'_base_ = [{path!r}]\n')
    return Config.fromfile(f.name)


def time_model(name: str, args: argparse.Namespace) -> Dict[str, float]:
    from mmdet.registry import MODELS as DET_MODELS
    from mmdet.testing import demo_mm_inputs
    cfg = load_cfg(MODELS[name])
    init_default_scope('mmdet')
    cfg.model.backbone.init_cfg = None
    model = DET_MODELS.build(cfg.model).to(args.device)
    model.init_weights()
    model.train()
    optim_cfg = cfg.optim_wrapper.copy()
    if args.amp:
        optim_cfg.type = 'AmpOptimWrapper'
        optim_cfg.loss_scale = 'dynamic'
    optim = build_optim_wrapper(model, optim_cfg)
    torch.manual_seed(0)
    data = demo_mm_inputs(
        args.batch, [[3, args.height, args.width]] * args.batch,
        num_items=[10] * args.batch,
        num_classes=80,
        with_mask=True)
    sync = torch.cuda.synchronize if args.device == 'cuda' else (lambda: None)
    for _ in range(args.warmup):
        model.train_step(data, optim)
    sync()
    if args.device == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.iters):
        model.train_step(data, optim)
    sync()
    sec = (time.perf_counter() - start) / args.iters
    mem = (torch.cuda.max_memory_allocated() / 2**30
           if args.device == 'cuda' else float('nan'))
    del model, optim
    if args.device == 'cuda':
        torch.cuda.empty_cache()
    return dict(sec_per_iter=sec, peak_mem_gib=mem)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--models', nargs='+', default=list(MODELS))
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--height', type=int, default=800)
    parser.add_argument('--width', type=int, default=1344)
    parser.add_argument('--amp', action='store_true')
    parser.add_argument('--iters', type=int, default=30)
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument(
        '--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--out', help='write the results as JSON here')
    args = parser.parse_args()
    if args.amp and args.device != 'cuda':
        parser.error('--amp needs --device cuda')
    results = {}
    for name in args.models:
        results[name] = time_model(name, args)
        print(f'{name}: {results[name]["sec_per_iter"]:.4f} s/iter, '
              f'peak {results[name]["peak_mem_gib"]:.2f} GiB', flush=True)
    if {'vmamba_t', 'swin_t'} <= set(results):
        ratio = (results['vmamba_t']['sec_per_iter'] /
                 results['swin_t']['sec_per_iter'])
        results['vmamba_over_swin'] = ratio
        print(f'VMamba-T / Swin-T step time: {ratio:.3f} '
              f'(batch {args.batch}, {args.height}x{args.width}, '
              f'amp={args.amp}, {args.device}: '
              f'{torch.cuda.get_device_name() if args.device == "cuda" else "cpu"})')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(args=vars(args), results=results), f, indent=1)


if __name__ == '__main__':
    main()
