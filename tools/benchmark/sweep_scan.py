"""Sweep the configuration of the SS2D d_state-1 kernels on a GPU.

For every configuration (channel block/warps of the forward kernels and of
the backward kernel, chunk length ``T``) the core is first checked against
the PyTorch reference (forward and every gradient, fp32, a small shape),
then the forward (inference) and the forward
+ backward are timed (bf16, ``do_bench`` median) at the shapes of
bench_kernels.py (``mmvmamba.analysis.bench.SHAPES``). Prints the best
configuration per shape and writes all timings as JSON.

    python tools/benchmark/sweep_scan.py [--json out.json] \\
        [--shapes T-stage1 MaskRCNN-s1] [--fwd 64/1 32/1] [--bwd 32/1] \\
        [--chunks 4 8] [--per-sm 16 32] \\
        [--regs-b 0 112]
"""
import argparse
import importlib
import itertools

import torch

from mmvmamba.analysis.bench import (SHAPES, rel, ss2d_params, time_core,
                                     write_json)
from mmvmamba.kernels import ss2d_core, ss2d_core_ref

ss2d = importlib.import_module('mmvmamba.kernels.ss2d.config')


def max_err() -> float:
    torch.manual_seed(0)
    x = torch.randn(
        2, 96, 28, 36,
        device='cuda').to(memory_format=torch.channels_last).requires_grad_()
    ps = [p.requires_grad_() for p in ss2d_params(96)]
    y = ss2d_core(x, *ps)
    yr = ss2d_core_ref(x, *ps)
    g = torch.randn_like(yr)
    gt = torch.autograd.grad(y, [x] + ps, g)
    gr = torch.autograd.grad(yr, [x] + ps, g)
    return max(rel(a, b) for a, b in zip([y] + list(gt), [yr] + list(gr)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--json', help='write all timings here')
    parser.add_argument('--shapes', nargs='+', help='default: all')
    parser.add_argument(
        '--fwd',
        nargs='+',
        default=['64/1', '32/1', '64/2'],
        help='channel block/warps of the summary and forward kernels')
    parser.add_argument(
        '--bwd',
        nargs='+',
        default=['32/1', '64/2'],
        help='channel block/warps of the backward kernel')
    parser.add_argument('--chunks', nargs='+', type=int, default=[4, 8])
    parser.add_argument(
        '--per-sm',
        nargs='+',
        type=int,
        default=None,
        help='persistent backward programs per SM (default: the '
        'launcher\'s)')
    parser.add_argument(
        '--regs-b',
        nargs='+',
        type=int,
        default=None,
        help='register cap of the backward kernel (maxnreg; 0: none; '
        'default: the launcher\'s)')
    args = parser.parse_args(argv)

    def split(s):
        bd, w = s.split('/')
        return int(bd), int(w)

    configs = [
        dict(BD=f[0], warps=f[1], BDB=b[0], warpsB=b[1], T=t,
             **(dict(per_sm=n) if n is not None else {}),
             **(dict(regsB=r) if r is not None else {}))
        for f, b, t, n, r in itertools.product(
            map(split, args.fwd), map(split, args.bwd), args.chunks,
            args.per_sm or [None], args.regs_b or [None])
    ]
    shapes = [s for s in SHAPES if not args.shapes or s[0] in args.shapes]
    # the pair kernels at every batch (the default path takes the chunked
    # kernels at batch > config.PAIR_MAX_BATCH below PAIR_MIN_PIXELS pixels)
    torch.use_deterministic_algorithms(True, warn_only=True)
    results = []
    for cfg in configs:
        ss2d.TUNE.clear()
        ss2d.TUNE.update(cfg)
        try:
            err = max_err()
        except Exception as e:  # a configuration that does not compile
            print(f'{cfg}: {type(e).__name__}: {str(e)[:200]}', flush=True)
            continue
        if err > 1e-3:
            print(f'{cfg}: error {err:.1e}, skipped', flush=True)
            continue
        for name, B, C, H, W in shapes:
            fwd, fb = time_core(ss2d_core, B, C, H, W)
            results.append(dict(shape=name, fwd_ms=fwd, fwd_bwd_ms=fb,
                                err=err, **cfg))
            print(f'{name:14s} {cfg}  fwd {fwd:7.3f}  fwd+bwd {fb:7.3f} ms',
                  flush=True)
            torch.cuda.empty_cache()
    ss2d.TUNE.clear()
    print('best per shape (forward+backward):')
    for name, *_ in shapes:
        rows = [r for r in results if r['shape'] == name]
        if rows:
            best = min(rows, key=lambda r: r['fwd_bwd_ms'])
            bestf = min(rows, key=lambda r: r['fwd_ms'])
            print(f'  {name:14s} f+b {best["fwd_bwd_ms"]:.3f} ms '
                  f'BD={best["BD"]} T={best["T"]} '
                  f'per_sm={best.get("per_sm", "default")} '
                  f'regsB={best.get("regsB", "default")} | fwd '
                  f'{bestf["fwd_ms"]:.3f} ms BD={bestf["BD"]} '
                  f'T={bestf["T"]}')
    write_json(args.json,
               dict(device=torch.cuda.get_device_name(), rows=results))


if __name__ == '__main__':
    main()
