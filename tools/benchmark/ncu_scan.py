"""One SS2D core forward + backward between cudaProfilerStart/Stop, for
Nsight Compute (``ncu --profile-from-start off``): where the scan kernels'
time goes (occupancy, issue stalls, memory throughput).

    ncu --profile-from-start off --section SpeedOfLight ... \\
        python tools/benchmark/ncu_scan.py --shape T-stage1 [--chunked]

``--chunked``: the chunked kernels (the default above
``ss2d.config.PAIR_MAX_BATCH``); otherwise the pair kernels (deterministic mode).
``--torch-profile N``: no Nsight; N steps under torch.profiler instead, and
the kernels by GPU time per step (the GEMMs, casts and scan kernels apart).
"""
import argparse

import torch

from mmvmamba.analysis.bench import SHAPES, ss2d_params
from mmvmamba.kernels import ss2d_core


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = [s[0] for s in SHAPES]
    parser.add_argument('--shape', default='T-stage1', choices=names)
    parser.add_argument('--chunked', action='store_true')
    parser.add_argument('--torch-profile', type=int, default=0, metavar='N')
    args = parser.parse_args(argv)
    if not args.chunked:
        torch.use_deterministic_algorithms(True, warn_only=True)
    _, B, C, H, W = SHAPES[names.index(args.shape)]
    x = torch.randn(
        B, C, H, W, device='cuda', dtype=torch.bfloat16).to(
            memory_format=torch.channels_last).requires_grad_()
    ps = [p.requires_grad_() for p in ss2d_params(C)]
    gy = torch.randn(
        B, C, H, W, device='cuda').to(memory_format=torch.channels_last)

    def step():
        torch.autograd.grad(ss2d_core(x, *ps), [x] + ps, gy)

    for _ in range(2):  # compile, warm the allocator
        step()
    torch.cuda.synchronize()
    if args.torch_profile:
        _torch_profile(step, args.torch_profile)
        return
    torch.cuda.cudart().cudaProfilerStart()
    step()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStop()


def _torch_profile(step, n: int) -> None:
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(n):
            step()
        torch.cuda.synchronize()
    rows = sorted(((e.device_time_total, e.count, e.key)
                   for e in prof.key_averages() if e.device_time_total > 0),
                  reverse=True)
    total = sum(r[0] for r in rows)
    print(f'GPU ms per step {total / n / 1e3:.3f} (kernel time summed)')
    for t, c, key in rows[:25]:
        print(f'{t / n / 1e3:8.3f} ms  {c // n:3d}x  {key[:90]}')


if __name__ == '__main__':
    main()
