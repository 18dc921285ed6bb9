"""Which SS2D kernels a batch-128 call should take on the small maps of
VMamba-T/S/B: the pair kernels against the chunked kernels, GPU time and
wall time per forward + backward, in one process on one GPU.

``ss2d.config.use_pairs`` sends batch > 2 below ``PAIR_MIN_PIXELS`` pixels
per image to the chunked kernels, a rule decided on VMamba-T's stage 3 when
its eager step waited for the host. Where a step is GPU-bound (VMamba-S and
-B at batch 128: wall ≈ GPU time) the kernel time decides instead. For each
stage of each model at 28², 14² and 7²: the GPU time of every kernel of one
forward + backward and the wall time per call, both paths
(:func:`mmvmamba.analysis.bench.step_breakdown`, the method of
``bench_models.py --breakdown``: the GPU time leaves the host's speed out,
the wall time has it).

    python tools/benchmark/dispatch_gpu.py [--archs tiny small base] \\
        [--batch 128] [--json out.json]
"""
import argparse

import torch

from mmvmamba.analysis.bench import core_calls, step_breakdown, write_json
from mmvmamba.kernels import ss2d_core
from mmvmamba.kernels.ss2d import config
from mmvmamba.models.vmamba import ARCH_SETTINGS


def stage_shapes(arch: str, sizes=(28, 14, 7)) -> list:
    """(label, Di, side) of the SS2D calls of ``arch`` on maps of ``sizes``
    (224² input: stage i at 56 / 2**i, Di = ssm_ratio · dims · 2**i)."""
    cfg = ARCH_SETTINGS[arch]
    out = []
    for i, side in enumerate((56, 28, 14, 7)):
        if side in sizes:
            Di = int(cfg['ssm_ratio'] * cfg['dims'] * 2**i)
            out.append((f'{arch}-stage{i + 1}', Di, side))
    return out


def measure(batch: int, Di: int, side: int, pairs: bool) -> dict:
    """GPU and wall ms per forward + backward (and forward) of one path:
    the pair kernels under deterministic algorithms, the chunked ones with
    ``PAIR_MIN_PIXELS`` out of reach."""
    saved = config.PAIR_MIN_PIXELS
    torch.use_deterministic_algorithms(pairs, warn_only=True)
    if not pairs:
        config.PAIR_MIN_PIXELS = 1 << 30
    try:
        assert config.use_pairs(1, batch, side * side) == pairs
        out = {}
        for kind, fn in zip(('f', 'fb'),
                            core_calls(ss2d_core, batch, Di, side, side)):
            for _ in range(3):  # compile, warm the allocator
                fn()
            ms = step_breakdown(fn, 20)
            out.update({f'gpu_{kind}': ms['device'],
                        f'wall_{kind}': ms['wall']})
        return out
    finally:
        config.PAIR_MIN_PIXELS = saved
        torch.use_deterministic_algorithms(False)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--archs', nargs='+', default=['tiny', 'small',
                                                       'base'],
                        choices=sorted(ARCH_SETTINGS))
    parser.add_argument('--batch', type=int, default=128)
    parser.add_argument('--json', help='write the rows here')
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error('needs a CUDA GPU')
    print(f'{torch.cuda.get_device_name()}  torch {torch.__version__}  '
          f'batch {args.batch}, bf16 input; ms per call, pair / chunked')
    print(f'{"shape":18s} {"Di":>5s} {"side":>4s}  {"GPU f+b":>15s}  '
          f'{"wall f+b":>15s}  {"GPU fwd":>15s}  {"wall fwd":>15s}  '
          'less GPU time')
    rows = []
    for arch in args.archs:
        for label, Di, side in stage_shapes(arch):
            p = measure(args.batch, Di, side, True)
            c = measure(args.batch, Di, side, False)
            row = dict(shape=label, batch=args.batch, Di=Di, side=side,
                       pair=p, chunked=c,
                       faster='pair' if p['gpu_fb'] < c['gpu_fb'] else
                       'chunked')
            rows.append(row)
            cols = '  '.join(f'{p[k]:7.3f}/{c[k]:7.3f}'
                             for k in ('gpu_fb', 'wall_fb', 'gpu_f',
                                       'wall_f'))
            print(f'{label:18s} {Di:5d} {side:4d}  {cols}  {row["faster"]}',
                  flush=True)
            torch.cuda.empty_cache()
    write_json(args.json, dict(device=torch.cuda.get_device_name(),
                               rows=rows))


if __name__ == '__main__':
    main()
