"""A/B timing of the fused SS2D backward scan: old (general N) vs new (d_state
= 1) kernel, at VMamba-T's four stage shapes (batch 128, 224², bf16, NHWC).

    python tools/benchmark/bench_scan_bwd.py [--batch 128] [--variants]

Times only the backward custom op (``mmvmamba::ss2d_scan_bwd``) on the states
a forward stored, and checks new against old on the same inputs.
"""
import argparse
import importlib
import math
import os

import torch
from triton.testing import do_bench

# by module path: the package exports functions of the same names
ssm = importlib.import_module('mmvmamba.kernels.selective_scan')
ssd = importlib.import_module('mmvmamba.kernels.ss2d')

STAGES = [(96, 56), (192, 28), (384, 14), (768, 7)]


def inputs(B: int, C: int, H: int):
    R = math.ceil(C / 16)
    x = torch.randn(
        B, C, H, H, device='cuda',
        dtype=torch.bfloat16).to(memory_format=torch.channels_last)
    wx = torch.randn(4 * (R + 2), C, device='cuda') * C**-0.5
    x_dbl = torch.matmul(
        x.permute(0, 2, 3, 1).reshape(B, H * H, C),
        wx.t().to(x.dtype)).contiguous()
    dt_w = (torch.randn(4, C, R, device='cuda') * R**-0.5).contiguous()
    dt_b = (torch.randn(4 * C, device='cuda') * 0.5 - 3.).contiguous()
    A = -torch.ones(4 * C, 1, device='cuda')
    Ds = torch.randn(4 * C, device='cuda')
    gy = torch.randn(
        B, C, H, H, device='cuda').to(memory_format=torch.channels_last)
    _, hs = ssd._ss2d_fwd(x, x_dbl, dt_w, dt_b, A, Ds, True)
    return x, x_dbl, dt_w, dt_b, A, Ds, gy, hs


def run(args_, mode: str):
    os.environ['MMVMAMBA_SCAN_BWD'] = mode
    out = ssd._ss2d_bwd(*args_)
    ms = do_bench(
        lambda: ssd._ss2d_bwd(*args_), warmup=5, rep=40, return_mode='median')
    return ms, out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch', type=int, default=128)
    parser.add_argument(
        '--variants',
        action='store_true',
        help='also time the new kernel at other (BD, warps)')
    args = parser.parse_args()
    print(torch.cuda.get_device_name(), 'batch', args.batch)
    tot = {'old': 0., 'new': 0.}
    for C, H in STAGES:
        torch.manual_seed(0)
        a = inputs(args.batch, C, H)
        ms_old, o_old = run(a, 'old')
        ms_new, o_new = run(a, 'new')
        err = max(((p.float() - q.float()).norm() /
                   (q.float().norm() + 1e-12)).item()
                  for p, q in zip(o_new, o_old))
        tot['old'] += ms_old
        tot['new'] += ms_new
        print(
            f'C={C:3d} H={H:2d}  bwd old {ms_old:7.3f} ms  new '
            f'{ms_new:7.3f} ms  x{ms_old / ms_new:5.2f}  '
            f'max rel diff {err:.1e}',
            flush=True)
        del a, o_old, o_new
        torch.cuda.empty_cache()
    print(
        f'sum of 4 stage calls: old {tot["old"]:.3f} ms  new '
        f'{tot["new"]:.3f} ms  x{tot["old"] / tot["new"]:.2f}',
        flush=True)
    if not args.variants:
        return
    # (BD, warps) of the new kernel; T and the forward stay as they are
    for C, H in STAGES:
        torch.manual_seed(0)
        a = inputs(args.batch, C, H)
        line = f'C={C:3d} H={H:2d}  new'
        for bd, wb in ((32, 4), (64, 4), (32, 8), (64, 8), (16, 4)):
            ssm.TUNE[1] = (32, bd, 32, 4, wb)
            ms, _ = run(a, 'new')
            line += f'  BD{bd} w{wb}: {ms:.3f}'
        ssm.TUNE.clear()
        print(line, flush=True)
        del a
        torch.cuda.empty_cache()


if __name__ == '__main__':
    main()
