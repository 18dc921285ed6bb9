"""Sweep the fused SS2D scan kernels' launch configuration on a GPU.

The forward kernel (inference, no stored states) and the backward kernel
(from stored chunk states) are timed separately, each with its own channel
block ``BD`` and warp count, for every chunk length ``T``, at the VMamba-T
stage shapes (batch 128), the stage-1 shapes of the s2l15 S/B presets, the
Mask R-CNN stage-1 shape (batch 2, 800×1344) and batch 1 at 224². Every
configuration is first checked against the PyTorch reference (forward and
all gradients). Prints the best configuration per shape and writes all
timings as JSON. The backward is timed in each ``--dt-grad`` variant
(``MMVMAMBA_DT_GRAD``: dt-rank gradients inside the kernel, or dz stored and
two GEMMs outside it), with its peak memory.

    python tools/benchmark/sweep_scan.py [--json out.json] [--dtype bf16] \
        [--dt-grad kernel gemm]
"""
import argparse
import importlib
import itertools
import json
import os
import sys

import torch
from triton.testing import do_bench

from mmvmamba.kernels import ss2d_core, ss2d_core_ref

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_kernels import STAGES  # noqa: E402

ss = importlib.import_module('mmvmamba.kernels.selective_scan_triton')
ss2d = importlib.import_module('mmvmamba.kernels.ss2d')
ops = torch.ops.mmvmamba

# (name, batch, Di, H, W): bench_kernels.py's stages and three more
SHAPES = STAGES + [
    ('S-stage1', 128, 192, 56, 56),  # s2l15: ssm_ratio 2
    ('B-stage1', 128, 256, 56, 56),
    ('batch1-stage1', 1, 96, 56, 56),
]


def params(C, device='cuda'):
    R = -(-C // 16)
    return [
        torch.randn(4, R + 2, C, device=device) * C**-0.5,
        torch.randn(4, C, R, device=device) * R**-0.5,
        torch.randn(4, C, device=device) * 0.5 - 3.,
        torch.log(torch.rand(4 * C, 1, device=device) + 0.5),
        torch.randn(4 * C, device=device),
    ]


def max_err(tune, dt_grad_gemm=False):
    """Forward and gradient error of one configuration (fp32, small)."""
    ss.TUNE.clear()
    ss.TUNE[1] = tune
    ss2d.DT_GRAD_GEMM = dt_grad_gemm
    torch.manual_seed(0)
    x = torch.randn(
        2, 96, 28, 36,
        device='cuda').to(memory_format=torch.channels_last).requires_grad_()
    ps = [p.requires_grad_() for p in params(96)]
    y = ss2d_core(x, *ps)
    yr = ss2d_core_ref(x, *ps)
    g = torch.randn_like(yr)
    gt = torch.autograd.grad(y, [x] + ps, g)
    gr = torch.autograd.grad(yr, [x] + ps, g)
    return max(((a - b).abs().max() / b.abs().max()).item()
               for a, b in zip([y] + list(gt), [yr] + list(gr)))


def core_inputs(B, C, H, W, dtype):
    x = torch.randn(
        B, C, H, W, device='cuda',
        dtype=dtype).to(memory_format=torch.channels_last)
    xw, dt_w, dt_b, A_logs, Ds = params(C)
    L = H * W
    x_dbl = torch.matmul(
        x.permute(0, 2, 3, 1).reshape(B, L, C),
        xw.reshape(-1, C).t().to(dtype)).contiguous()
    A = -torch.exp(A_logs)
    gy = torch.randn(
        B, C, H, W, device='cuda').to(memory_format=torch.channels_last)
    return x, x_dbl, dt_w.contiguous(), dt_b.reshape(-1), A, Ds, gy


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--json', help='write all timings here')
    parser.add_argument('--dtype', default='bf16', choices=['bf16', 'fp16'])
    parser.add_argument('--chunks', type=int, nargs='*', default=[32, 64, 16])
    parser.add_argument('--fwd-blocks', type=int, nargs='*', default=[32, 64,
                                                                      128])
    parser.add_argument('--bwd-blocks', type=int, nargs='*', default=[16, 32,
                                                                      64])
    parser.add_argument('--warps', type=int, nargs='*', default=[2, 4, 8])
    parser.add_argument(
        '--dt-grad',
        nargs='+',
        default=['kernel', 'gemm'],
        choices=['kernel', 'gemm'],
        help='backward variants to time (MMVMAMBA_DT_GRAD)')
    args = parser.parse_args()
    dtype = torch.bfloat16 if args.dtype == 'bf16' else torch.float16
    print(torch.cuda.get_device_name(), torch.__version__, args.dtype)
    data = {s[0]: core_inputs(*s[1:], dtype) for s in SHAPES}
    results = []
    for T in args.chunks:
        fwd = list(itertools.product(args.fwd_blocks, args.warps))
        bwd = list(itertools.product(args.bwd_blocks, args.warps))
        for i in range(max(len(fwd), len(bwd))):
            bdf, wf = fwd[i % len(fwd)]
            bdb, wb = bwd[i % len(bwd)]
            tune = (bdf, bdb, T, wf, wb)
            err = max(max_err(tune, m == 'gemm') for m in args.dt_grad)
            line = f'T={T:3d} fwd BD={bdf:3d} w={wf} | bwd BD={bdb:3d} ' \
                   f'w={wb}  err {err:.1e}'
            for name, *_ in SHAPES:
                x, x_dbl, dt_w, dt_b, A, Ds, gy = data[name]
                f = do_bench(
                    lambda: ops.ss2d_scan_fwd(x, x_dbl, dt_w, dt_b, A, Ds,
                                              False),
                    warmup=10,
                    rep=40,
                    return_mode='median')
                states = ops.ss2d_scan_fwd(x, x_dbl, dt_w, dt_b, A, Ds,
                                           True)[1]
                rec = dict(
                    shape=name, T=T, fwd=(bdf, wf), bwd=(bdb, wb), fwd_ms=f,
                    err=err)
                line += f' | {name} {f:.3f}'
                for mode in args.dt_grad:
                    ss2d.DT_GRAD_GEMM = mode == 'gemm'

                    def bwd():
                        return ops.ss2d_scan_bwd(x, x_dbl, dt_w, dt_b, A, Ds,
                                                 gy, states)

                    torch.cuda.synchronize()
                    base = torch.cuda.memory_allocated()
                    torch.cuda.reset_peak_memory_stats()
                    bwd()
                    torch.cuda.synchronize()
                    rec[f'bwd_{mode}_mib'] = (
                        torch.cuda.max_memory_allocated() - base) / 2**20
                    rec[f'bwd_{mode}_ms'] = do_bench(
                        bwd, warmup=10, rep=40, return_mode='median')
                    line += f'/{mode} {rec[f"bwd_{mode}_ms"]:.3f}'
                results.append(rec)
            # registers/spills of the 16-bit main-pass kernels just timed
            line += ' | ' + ' '.join(
                f'{name[5:8]} regs {getattr(k, "n_regs", "?")} spills '
                f'{getattr(k, "n_spills", "?")}'
                for name, k in sorted(ss.LAST_LAUNCH.items()))
            print(line, flush=True)
    ss.TUNE.clear()
    ss2d.DT_GRAD_GEMM = ss2d._dt_grad_gemm()
    print('best per shape (forward ms; backward ms and its peak MiB per '
          'dt-grad variant):')
    for name, *_ in SHAPES:
        rows = [r for r in results if r['shape'] == name and r['err'] < 1e-3]
        for T in args.chunks:
            rt = [r for r in rows if r['T'] == T]
            if not rt:
                continue
            bf = min(rt, key=lambda r: r['fwd_ms'])
            line = (f'{name:13s} T={T}: fwd {bf["fwd_ms"]:.3f} ms BD,w='
                    f'{bf["fwd"]}')
            for mode in args.dt_grad:
                bb = min(rt, key=lambda r: r[f'bwd_{mode}_ms'])
                line += (f'  bwd/{mode} {bb[f"bwd_{mode}_ms"]:.3f} ms '
                         f'{bb[f"bwd_{mode}_mib"]:.0f} MiB BD,w={bb["bwd"]}')
            print(line)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(
                dict(device=torch.cuda.get_device_name(), results=results),
                f,
                indent=1)


if __name__ == '__main__':
    main()
