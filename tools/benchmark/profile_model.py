"""Where the time of one model step goes on the GPU (torch.profiler).

Profiles ``--steps`` AMP training steps (or AMP inference with ``--infer``)
of a model of ``mmvmamba.analysis.bench.MODELS`` after warm-up and prints the kernels by total
GPU time, grouped so the SS2D scan kernels, GEMMs, norms and elementwise
glue can be told apart.

    python tools/benchmark/profile_model.py [--model vmamba-t] [--infer]
        [--compile] [--pairs] [--batch 128] [--steps 3] [--rows 30]

``--pairs``: the SS2D core takes the pair kernels at every stage, as in a
step captured in a CUDA graph (``bench_models.py --graph-train``).
"""
import argparse
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from mmvmamba.analysis.bench import (MODELS, amp_train_step, build_classifier,
                                     model_choice)
from mmvmamba.kernels.ss2d import config as ss2d

# kernel-name fragment → group (first match wins)
GROUPS = [
    ('scan_bwd', 'ss2d scan bwd'),
    ('scan_fwd', 'ss2d scan fwd'),
    ('_ln_', 'layernorm'),  # before the pair kernels' *_kernel names
    ('summary_kernel', 'ss2d pair'),
    ('chain_kernel', 'ss2d pair'),
    ('fwd_kernel', 'ss2d pair'),
    ('bwd_kernel', 'ss2d pair'),
    ('gemm', 'gemm'),
    ('cutlass', 'gemm'),
    ('nvjet', 'gemm'),
    ('sm90_xmma', 'gemm'),
    ('conv', 'conv'),
    ('depthwise', 'conv'),
    ('layer_norm', 'layernorm'),
    ('LayerNorm', 'layernorm'),
    ('GammaBeta', 'layernorm'),
    ('triton_', 'inductor fused'),
    ('elementwise', 'elementwise'),
    ('reduce', 'reduce'),
    ('copy', 'copy/cast'),
    ('Memcpy', 'copy/cast'),
    ('Memset', 'memset'),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--model',
        default='vmamba-t',
        type=model_choice,
        help=f'from {list(MODELS)}')
    parser.add_argument('--batch', type=int, default=128)
    parser.add_argument('--steps', type=int, default=3)
    parser.add_argument('--rows', type=int, default=30)
    parser.add_argument(
        '--width', type=int, default=160, help='characters of a kernel name')
    parser.add_argument('--infer', action='store_true')
    parser.add_argument('--compile', action='store_true')
    parser.add_argument('--pairs', action='store_true')
    args = parser.parse_args()
    if args.pairs:
        ss2d.PAIR_MIN_PIXELS = 0
    torch.backends.cudnn.benchmark = True
    model = build_classifier(args.model).cuda()
    if args.compile:
        model = torch.compile(model)
    x = torch.randn(args.batch, 3, 224, 224, device='cuda')
    target = torch.randint(0, 1000, (args.batch, ), device='cuda')

    def infer():
        with torch.no_grad(), torch.autocast('cuda', dtype=torch.float16):
            model(x)

    step = infer if args.infer else amp_train_step(model, x, target)

    model.train(not args.infer)
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(args.steps):
            step()
        torch.cuda.synchronize()
    rows = []  # (device µs, calls, kernel name), the whole profile
    for ev in prof.key_averages():
        us = ev.device_time_total if hasattr(
            ev, 'device_time_total') else ev.cuda_time_total
        if us > 0 and not ev.key.startswith('ProfilerStep'):
            rows.append((us, ev.count, ev.key))
    total = sum(us for us, _, _ in rows)
    groups = defaultdict(float)
    for us, _, key in rows:
        groups[next((g for frag, g in GROUPS if frag in key), 'other')] += us
    per = args.steps * 1e3
    print(f'{args.model} {"infer" if args.infer else "train"} amp '
          f'compile={args.compile} batch {args.batch}: '
          f'{total / per:.1f} ms GPU per step')
    for g, us in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f'  {g:16s} {us / per:7.2f} ms  {100 * us / total:5.1f}%')
    # kernel names long enough to tell the elementwise functors apart (the
    # profiler's own table cuts them at 55 characters)
    print(f'{"ms/step":>8s} {"calls/step":>10s}  kernel')
    for us, count, key in sorted(rows, reverse=True)[:args.rows]:
        name = key.replace('at::native::', '').replace(
            '(anonymous namespace)::', '')
        print(f'{us / per:8.3f} {count / args.steps:10.1f}  '
              f'{name[:args.width]}')


if __name__ == '__main__':
    main()
