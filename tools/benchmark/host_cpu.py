"""The host work of VMamba's Triton path, measured on any machine (no GPU).

Runs the backbone on CPU tensors through the Triton ops with
``TRITON_INTERPRET=1`` and every Triton launch replaced by a no-op, so what
is left is what the host does around the kernels on a GPU: Python, the
dispatcher, allocations, the small aten ops, the autograd engine (and the
CPU's GEMMs and convolutions of a small map, timed the same way in both
columns of a comparison). Prints, per mode (inference under bf16 autocast;
training forward + backward under bf16 autocast): the top-level aten ops of
one call (``TorchDispatchMode``), the autograd nodes of the training graph,
the Triton launches, and the milliseconds per call (median of repeats, one
thread; and the fastest repeat). Compare two commits on the same machine
in one sitting, in turn: the machine's speed drifts. ``--profile`` adds cProfile's top functions.

    python tools/benchmark/host_cpu.py [--arch tiny] [--size 64] [--profile]
"""
import argparse
import cProfile
import os
import pstats
import statistics
import sys
import time
from collections import Counter

os.environ['TRITON_INTERPRET'] = '1'  # before triton is imported

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from mmvmamba.kernels.common import launch as _launch  # noqa: E402
from mmvmamba.models import VMamba  # noqa: E402

LAUNCHES = Counter()


def _no_launch(self, grid, args, kwargs):
    """Launcher.launch without the launch (the interpreter would run it)."""
    LAUNCHES[self.fn.fn.__name__ if hasattr(self.fn, 'fn') else
             getattr(self.fn, '__name__', '?')] += 1


class _Launchless:
    """``jit_fn[grid](...)`` of the kernels launched without a Launcher."""

    def __getitem__(self, grid):
        return lambda *a, **k: LAUNCHES.update(['kernel[grid]'])


class _CountOps(TorchDispatchMode):

    def __init__(self):
        super().__init__()
        self.ops = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def _stub_launches() -> None:
    _launch.Launcher.launch = _no_launch
    from mmvmamba.kernels.cross import op as cross_op
    cross_op.cross_kernel = _Launchless()


def _nodes(t: torch.Tensor) -> int:
    seen, todo = set(), [t.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        todo.extend(f for f, _ in fn.next_functions)
    return len(seen)


def _clock(fn, repeats: int, inner: int) -> tuple:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) / inner)
    return statistics.median(times) * 1e3, min(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--arch', default='tiny')
    parser.add_argument('--size', type=int, default=64, help='image side')
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--inner', type=int, default=5)
    parser.add_argument(
        '--dims',
        type=int,
        default=None,
        help='stem width (the preset\'s by default); a small one (e.g. 8) '
        'leaves the CPU almost no arithmetic, so the times are the host work')
    parser.add_argument(
        '--batch',
        type=int,
        default=1,
        help='images per step (the SS2D dispatch depends on it)')
    parser.add_argument('--profile', action='store_true')
    args = parser.parse_args()
    torch.set_num_threads(1)
    _stub_launches()
    torch.manual_seed(0)
    kw = dict(dims=args.dims) if args.dims else {}
    model = VMamba(
        arch=args.arch, backend='triton', drop_path_rate=0.1, **kw)
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(args.batch, 3, args.size, args.size).to(
        memory_format=torch.channels_last)

    def infer():
        with torch.no_grad(), torch.autocast('cpu', torch.bfloat16):
            return model.eval()(x)

    def train():
        model.train()
        model.zero_grad(set_to_none=True)  # as an optimizer step leaves it
        with torch.autocast('cpu', torch.bfloat16):
            out = model(x)
        loss = sum(o.float().mean() for o in out)
        loss.backward()
        return loss

    print(f'host work of VMamba-{args.arch} on the Triton path, launches '
          f'stubbed: CPU, torch {torch.__version__}, one thread, batch {args.batch}, '
          f'{args.size}², dims {args.dims or "of the preset"}')
    for name, fn in (('inference', infer), ('training fwd+bwd', train)):
        fn()
        LAUNCHES.clear()
        with _CountOps() as counter:
            fn()
        launches = sum(LAUNCHES.values())
        extra = ''
        if name.startswith('training'):
            model.train()
            with torch.autocast('cpu', torch.bfloat16):
                out = model(x)
            extra = f', {_nodes(sum(o.float().mean() for o in out))} ' \
                'autograd nodes'
        ms, fastest = _clock(fn, args.repeats, args.inner)
        print(f'{name:18s} {ms:8.2f} ms (min {fastest:.2f})  '
              f'{sum(counter.ops.values())} aten ops, {launches} '
              f'launches{extra}')
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(args.inner):
                fn()
            prof.disable()
            pstats.Stats(prof, stream=sys.stdout).sort_stats(
                'tottime').print_stats(15)
            print('top aten ops:', counter.ops.most_common(12))


if __name__ == '__main__':
    main()
