"""Time the SS2D kernels on a GPU: ms and achieved GB/s per kernel.

Shapes: VMamba-T's four stages at batch 128, 224² (C = 96·2^i, H = W = 56/2^i,
d_state 1, dt_rank = C/16) and the Mask R-CNN stage-1 shape (batch 2,
800×1344 → 200×336). Every kernel is first checked against the PyTorch
reference (at a reduced batch), then timed with ``triton.testing.do_bench``
(median). GB/s counts the bytes each kernel must move at least (inputs read
once, outputs written once) against the ~3.0 TB/s copy rate of an H100.

    python tools/benchmark/bench_kernels.py [--json out.json]
"""
import argparse
import json
import math

import torch
from triton.testing import do_bench

from mmvmamba.kernels import (cross_merge, cross_scan, selective_scan,
                              selective_scan_ref, ss2d_core, ss2d_core_ref)

COPY_GBS = 3000.  # measured device-to-device copy rate of our H100

STAGES = [
    # name, batch, C, H, W
    ('T-stage1', 128, 96, 56, 56),
    ('T-stage2', 128, 192, 28, 28),
    ('T-stage3', 128, 384, 14, 14),
    ('T-stage4', 128, 768, 7, 7),
    ('MaskRCNN-s1', 2, 96, 200, 336),
]


def ss2d_params(C: int, N: int = 1, device='cuda'):
    R = math.ceil(C / 16)
    return [
        torch.randn(4, R + 2 * N, C, device=device) * C**-0.5,
        torch.randn(4, C, R, device=device) * R**-0.5,
        torch.randn(4, C, device=device) * 0.5 - 3.,
        torch.log(torch.arange(1, N + 1,
                               device=device).float()).repeat(4 * C, 1),
        torch.ones(4 * C, device=device),
    ]


def rel(a, b):
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


def bench(fn, grad=None):
    return do_bench(fn, warmup=10, rep=50, return_mode='median')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--json', help='write the results here')
    parser.add_argument('--dtype', default='bf16', choices=['bf16', 'fp32'])
    args = parser.parse_args()
    dev = 'cuda'
    dt = torch.bfloat16 if args.dtype == 'bf16' else torch.float32
    esz = 2 if dt == torch.bfloat16 else 4
    rows = []
    print(f'{torch.cuda.get_device_name()}  torch {torch.__version__}  '
          f'dtype {args.dtype}')
    hdr = f'{"shape":12s} {"kernel":22s} {"ms":>8s} {"GB/s":>8s} {"%copy":>6s} {"err":>8s}'
    print(hdr)

    def report(name, kernel, ms, nbytes, err=float('nan')):
        gbs = nbytes / ms / 1e6
        rows.append(
            dict(
                shape=name,
                kernel=kernel,
                ms=ms,
                gbs=gbs,
                frac=gbs / COPY_GBS,
                err=err))
        print(
            f'{name:12s} {kernel:22s} {ms:8.3f} {gbs:8.0f} '
            f'{100 * gbs / COPY_GBS:5.1f}% {err:8.1e}',
            flush=True)

    for name, B, C, H, W in STAGES:
        L = H * W
        R = math.ceil(C / 16)
        E = B * C * L
        x = torch.randn(B, C, H, W, device=dev, dtype=dt)
        x_cl = x.to(memory_format=torch.channels_last)
        params = ss2d_params(C)
        # correctness at a reduced batch against the float32 reference
        nb = min(B, 2)
        xs = x_cl[:nb].float().requires_grad_()
        ps = [p.clone().requires_grad_() for p in params]
        y = ss2d_core(xs, *ps)
        yr = ss2d_core_ref(xs, *ps)
        g = torch.randn_like(yr)
        gt = torch.autograd.grad(y, [xs] + ps, g)
        gr = torch.autograd.grad(yr, [xs] + ps, g)
        err = max([rel(y, yr)] + [rel(a, b) for a, b in zip(gt, gr)])
        del xs, ps, y, yr, gt, gr

        # cross scan / merge: read E, write 4E (and the reverse)
        ms = bench(lambda: cross_scan(x))
        report(name, 'cross_scan', ms, 5 * E * esz)
        ys = torch.randn(B, 4, C, H, W, device=dev, dtype=torch.float32)
        ms = bench(lambda: cross_merge(ys))
        report(name, 'cross_merge(fp32)', ms, 5 * E * 4)

        # plain selective scan on materialised 4-direction inputs
        u = cross_scan(x).view(B, 4 * C, L)
        delta = torch.randn_like(u)
        A = -torch.ones(4 * C, 1, device=dev)
        Bm = torch.randn(B, 4, 1, L, device=dev, dtype=dt)
        Cm = torch.randn_like(Bm)
        Dv = torch.ones(4 * C, device=dev)
        bias = torch.zeros(4 * C, device=dev)
        if B <= 2:
            yr = selective_scan_ref(u, delta, A, Bm, Cm, Dv, bias, True)
            ye = selective_scan(u, delta, A, Bm, Cm, Dv, bias, True)
            sserr = rel(ye, yr)
            del yr, ye
        else:
            sserr = float('nan')
        ms = bench(lambda: selective_scan(u, delta, A, Bm, Cm, Dv, bias, True))
        # read u, delta (esz each), B, C; write y fp32
        report(name, 'selective_scan fwd', ms, 4 * E * (2 * esz + 4), sserr)

        # fused core, inference (no stored states), both layouts
        J = 4 * (R + 2)
        floor = E * esz + B * L * J * esz + E * 4  # x, x_dbl, y fp32
        with torch.no_grad():
            ms = bench(lambda: ss2d_core(x_cl, *params))
            report(name, 'ss2d_core fwd (NHWC)', ms, floor, err)
            ms = bench(lambda: ss2d_core(x, *params))
            report(name, 'ss2d_core fwd (NCHW)', ms, floor)
        # fused core, forward + backward
        xg = x_cl.detach().requires_grad_()
        pg = [p.clone().requires_grad_() for p in params]
        gy = torch.randn(
            B, C, H, W, device=dev).to(memory_format=torch.channels_last)

        def fwd_bwd():
            out = ss2d_core(xg, *pg)
            torch.autograd.grad(out, [xg] + pg, gy)

        ms = bench(fwd_bwd)
        # fwd floor + bwd: read x, x_dbl, gy fp32; write dx, dx_dbl
        report(name, 'ss2d_core fwd+bwd', ms,
               floor + E * esz * 2 + E * 4 + 2 * B * L * J * esz)
        torch.cuda.empty_cache()

    if args.json:
        with open(args.json, 'w') as f:
            json.dump(
                dict(device=torch.cuda.get_device_name(), rows=rows),
                f,
                indent=1)


if __name__ == '__main__':
    main()
