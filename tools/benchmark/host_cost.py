"""The host's (CPU's) cost of the project's GPU ops and of a training step.

At tiny shapes each kernel takes the GPU a few microseconds, so a loop of
calls is bound by the host: its time per call is the enqueue cost, the
Python, dispatch and launch work the training step pays for every op. Per
row: wall / host / device µs per call (``analysis.bench.step_breakdown``:
host = the host's time inside the calls, device = the profiler's sum of
kernel time). Rows:

* a bare Triton launch of a kernel with 25 arguments;
* the LayerNorm op and the SS2D core (pair kernels at batch 2, chunked
  kernels at batch 4, both at 8×8), forward and forward + backward, and the
  SS2D core on both at VMamba-T stages 3 and 4 (batch 128, 14² and 7²),
  where the GPU has real work;
* one AMP training step of VMamba-T and of Swin-T at batch 1, 224²: the
  host's floor of a step, which a batch-128 step can only hide when its
  GPU time is larger;

then the ops with the most host time (self CPU time) of the pair core's
forward + backward and of the VMamba-T step.

The profiler's callbacks cost more than a launch (H200 machine: a Triton
launch reads 90 µs under it, 17.6 µs by the clock; docs/benchmarks.md): the
rows compare calls with each other, and ``--launches`` times the launch of
a Triton kernel and of one aten op by the clock alone.

    python tools/benchmark/host_cost.py [--json FILE] [--rows 25] [--launches]
"""
import argparse
import time

import torch
import triton
import triton.language as tl
from torch.profiler import ProfilerActivity, profile

from mmvmamba.analysis.bench import (amp_train_step, build_classifier,
                                     core_calls, step_breakdown, write_json)
from mmvmamba.kernels import layer_norm, ss2d_core

_INTS = [f'n{i}' for i in range(22)]


@triton.jit(do_not_specialize=_INTS)
def _store_kernel(a_ptr, b_ptr, c_ptr, n0, n1, n2, n3, n4, n5, n6, n7, n8,
                  n9, n10, n11, n12, n13, n14, n15, n16, n17, n18, n19, n20,
                  n21, BD: tl.constexpr):
    offs = tl.program_id(0) * BD + tl.arange(0, BD)
    tl.store(a_ptr + offs, tl.load(b_ptr + offs) + n0 + n21)


def _launch_us(fn, n: int = 3000) -> float:
    """µs per call of ``fn`` timed by the clock alone (no profiler, whose
    per-launch callbacks cost more than the launch itself)."""
    for _ in range(50):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n * 1e6


def _calls(fn, iters: int) -> dict:
    """wall / host / device µs per call of ``fn`` after a warm-up."""
    for _ in range(5):
        fn()
    res = step_breakdown(fn, iters)
    return {k: v * 1e3 for k, v in res.items()}


class _Rows(dict):
    """The table, each row printed as soon as it is measured."""

    def __setitem__(self, name, r):
        super().__setitem__(name, r)
        print(f'{name:48s} {r["wall"]:9.1f} {r["host"]:9.1f} '
              f'{r["device"]:9.1f}', flush=True)


def _deterministic_core(*args):
    """The SS2D core with deterministic algorithms on: the pair kernels at
    any size (the backward follows the forward's choice)."""
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        return ss2d_core(*args)
    finally:
        torch.use_deterministic_algorithms(prev)


def _top_ops(fn, rows: int, title: str) -> str:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU,
                             ProfilerActivity.CUDA]) as prof:
        for _ in range(10):
            fn()
        torch.cuda.synchronize()
    table = prof.key_averages().table(
        sort_by='self_cpu_time_total', row_limit=rows, max_name_column_width=60)
    return f'== {title}: ops by self CPU time (10 calls)\n{table}'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--json', help='write the rows here')
    parser.add_argument('--rows', type=int, default=25)
    parser.add_argument('--iters', type=int, default=50)
    parser.add_argument(
        '--launches',
        action='store_true',
        help='only the launch rows, timed by the clock without profiler')
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True
    print(f'{torch.cuda.get_device_name()}  torch {torch.__version__}  '
          f'triton {triton.__version__}')
    print(f'{"":48s} {"wall":>9s} {"host":>9s} {"device":>9s}  (µs per call)')
    rows = _Rows()

    a = torch.zeros(1024, device='cuda')
    b = torch.ones(1024, device='cuda')
    ints = list(range(22))
    if args.launches:
        for name, fn in [
            ('kernel[grid]', lambda: _store_kernel[(8, )]
             (a, b, a, *ints, BD=128)),
            ('torch.add (one aten op)', lambda: torch.add(a, b, out=a)),
        ]:
            print(f'launch {name}: {_launch_us(fn):.1f} µs (clock, no '
                  'profiler)', flush=True)
        return
    rows['triton launch (25 args), kernel[grid]'] = _calls(
        lambda: _store_kernel[(8, )](a, b, a, *ints, BD=128), args.iters)

    xn = torch.randn(2 * 64, 96, device='cuda', requires_grad=True)
    wn = torch.ones(96, device='cuda', requires_grad=True)
    bn = torch.zeros(96, device='cuda', requires_grad=True)
    gn = torch.randn(2 * 64, 96, device='cuda')

    def ln_fwd():
        with torch.no_grad():
            layer_norm(xn, wn, bn, 1e-5)

    rows['layer_norm fwd'] = _calls(ln_fwd, args.iters)
    rows['layer_norm fwd+bwd'] = _calls(
        lambda: layer_norm(xn, wn, bn, 1e-5).backward(gn), args.iters)

    pair = core_calls(ss2d_core, 2, 64, 8, 8)
    chunked = core_calls(ss2d_core, 4, 64, 8, 8)
    cases = [('pair 2x64x8x8', pair), ('chunked 4x64x8x8', chunked)]
    for stage, shape in (('T-stage3', (128, 384, 14, 14)),
                         ('T-stage4', (128, 768, 7, 7))):
        cases += [(f'pair {stage}', core_calls(_deterministic_core, *shape)),
                  (f'chunked {stage}', core_calls(ss2d_core, *shape))]
    for name, (fwd, fb) in cases:
        rows[f'ss2d {name} fwd'] = _calls(fwd, args.iters)
        rows[f'ss2d {name} fwd+bwd'] = _calls(fb, args.iters)

    steps = {}
    for name in ('vmamba-t', 'swin-t'):
        torch.manual_seed(0)
        model = build_classifier(name).cuda().train()
        x = torch.randn(1, 3, 224, 224, device='cuda')
        target = torch.zeros(1, dtype=torch.long, device='cuda')
        steps[name] = amp_train_step(model, x, target)
        rows[f'{name} AMP train step, batch 1, 224²'] = _calls(
            steps[name], 20)

    write_json(args.json, rows)
    print(_top_ops(pair[1], args.rows, 'ss2d pair 2x64x8x8 fwd+bwd'))
    print(_top_ops(steps['vmamba-t'], args.rows,
                   'vmamba-t AMP train step, batch 1, 224²'))


if __name__ == '__main__':
    main()
