"""One SS2D core forward + backward between cudaProfilerStart/Stop, for
Nsight Compute (``ncu --profile-from-start off``): where the scan kernels'
time goes (occupancy, issue stalls, memory throughput).

    ncu --profile-from-start off --section SpeedOfLight ... \\
        python tools/benchmark/ncu_scan.py --shape T-stage1 [--chunked]

``--chunked``: the chunked kernels (the default above
``ss2d.config.PAIR_MAX_BATCH``); otherwise the pair kernels (deterministic mode).
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
    torch.cuda.cudart().cudaProfilerStart()
    step()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStop()


if __name__ == '__main__':
    main()
