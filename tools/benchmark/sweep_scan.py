"""Sweep the scan kernels' launch configuration on a GPU (tuning aid).

For each (BD_fwd, BD_bwd, T, warps_fwd, warps_bwd) with d_state 1, times the
fused SS2D core (bf16, channels_last) forward and forward+backward at
VMamba-T stage 1 and 3 (batch 128) and the Mask R-CNN shape, after checking it
against the reference. ``--profile`` prints the CUDA kernel table of one
default forward+backward at stage 1.

    python tools/benchmark/sweep_scan.py [--profile]
"""
import argparse
import importlib

import torch
from triton.testing import do_bench

from mmvmamba.kernels import ss2d_core, ss2d_core_ref

ss = importlib.import_module('mmvmamba.kernels.selective_scan_triton')

CONFIGS = [
    None,  # defaults
    (32, 32, 32, 4, 4),
    (64, 64, 32, 4, 8),
    (32, 32, 32, 2, 2),
    (32, 16, 64, 4, 4),
]
SHAPES = [(128, 96, 56, 56), (128, 384, 14, 14), (2, 96, 200, 336)]


def params(C):
    R = -(-C // 16)
    return [
        torch.randn(4, R + 2, C, device='cuda') * C**-0.5,
        torch.randn(4, C, R, device='cuda') * R**-0.5,
        torch.randn(4, C, device='cuda') * 0.5 - 3.,
        torch.zeros(4 * C, 1, device='cuda'),
        torch.ones(4 * C, device='cuda'),
    ]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--profile', action='store_true')
    args = parser.parse_args()
    print(torch.cuda.get_device_name())
    data = {}
    for B, C, H, W in SHAPES:
        x = torch.randn(
            B, C, H, W, device='cuda',
            dtype=torch.bfloat16).to(memory_format=torch.channels_last)
        data[(B,
              C, H, W)] = (x, params(C), torch.randn(
                  B, C, H, W,
                  device='cuda').to(memory_format=torch.channels_last))
    for cfg in CONFIGS:
        ss.TUNE.clear()
        if cfg is not None:
            ss.TUNE[1] = cfg
        x, ps, _ = data[SHAPES[0]]
        xs = x[:2].float().requires_grad_()
        pg = [p.clone().requires_grad_() for p in ps]
        y = ss2d_core(xs, *pg)
        yr = ss2d_core_ref(xs, *pg)
        g = torch.randn_like(yr)
        gt = torch.autograd.grad(y, [xs] + pg, g)
        gr = torch.autograd.grad(yr, [xs] + pg, g)
        err = max(((a - b).abs().max() / b.abs().max()).item()
                  for a, b in zip([y] + list(gt), [yr] + list(gr)))
        line = f'{str(cfg):22s} err {err:.1e}'
        for shape in SHAPES:
            x, ps, gy = data[shape]
            with torch.no_grad():
                f = do_bench(lambda: ss2d_core(x, *ps), return_mode='median')
            xg = x.detach().requires_grad_()
            pg = [p.clone().requires_grad_() for p in ps]

            def fb():
                torch.autograd.grad(ss2d_core(xg, *pg), [xg] + pg, gy)

            fbt = do_bench(fb, return_mode='median')
            line += f' | {shape[0]}x{shape[1]}x{shape[2]}: f {f:.3f} fb {fbt:.3f}'
        print(line, flush=True)
    if args.profile:
        ss.TUNE.clear()
        x, ps, gy = data[SHAPES[0]]
        xg = x.detach().requires_grad_()
        pg = [p.clone().requires_grad_() for p in ps]
        for _ in range(3):
            torch.autograd.grad(ss2d_core(xg, *pg), [xg] + pg, gy)
        with torch.profiler.profile(
                activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                torch.autograd.grad(ss2d_core(xg, *pg), [xg] + pg, gy)
            torch.cuda.synchronize()
        print(prof.key_averages().table(
            sort_by='cuda_time_total', row_limit=15))


if __name__ == '__main__':
    main()
