"""CPU speed of VMamba-T beside timm's Swin-T and ConvNeXt-T, one run.

Two parts, each interleaved (every repeat times every row once, in turn, so
a load change on a shared machine hits all rows alike) and reported as the
median over ``--repeats`` with the min-max spread of the per-repeat ratios:

* inference (eval, ``no_grad``, fp32, 224², random weights) at each
  ``--batch`` and ``--threads``: VMamba-T with the compiled CPU core
  (``vmamba_t``), with the PyTorch reference core (``vmamba_t_ref``),
  Swin-T and ConvNeXt-T (timm);
* ``--maskrcnn``: one training step (forward, backward, AdamW) of the demo's
  Mask R-CNN (``configs/demo/maskrcnn_vmamba_t_demo-shapes.py``, batch 2,
  160², random boxes and masks) with the compiled core (``after``) and the
  reference core (``before``).

``--baseline-rev REV`` (with ``--maskrcnn``): the same demo step of this
checkout against the source tree of git revision ``REV`` (extracted with
``git archive``), each in its own worker process
(``demo_step_worker.py``), timed in turn: how much faster the step is than
at an earlier commit, whatever changed since.

``--avx2``: on an AVX-512 machine, the run as an AVX2-only machine would
see it: the script runs again with PyTorch's kernels, oneDNN and MKL capped
at AVX2 (``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA``,
``MKL_ENABLE_INSTRUCTIONS``) and the SS2D core built with
``-mno-avx512f``; an emulation of the instruction set, not of another
CPU's caches and clocks.

Rows ``core`` and ``core_ref`` replay the SS2D core calls of that model
alone (recorded from one run: 14 calls for VMamba-T; forward and backward
for the training step), compiled and reference, to show the core's share.

    python tools/benchmark/cpu_speed.py [--threads 1 2] [--batch 1 8]
        [--repeats 7] [--maskrcnn [--baseline-rev REV]] [--avx2]
        [--json out.json]
"""
import argparse
import contextlib
import os
import os.path as osp
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List

import mmvmamba  # noqa: F401  isort:skip
import torch

from mmvmamba.analysis.bench import build_classifier, write_json
from mmvmamba.kernels import routed, ss2d_core, ss2d_core_ref

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_CFG = osp.join(ROOT, 'configs', 'demo',
                    'maskrcnn_vmamba_t_demo-shapes.py')


def _ref_core(x, *params, backend=None):
    return ss2d_core_ref(x, *params)


def core(kind: str):
    """Run VMamba's SS2D core as ``kind``: 'cpu' (the dispatch of
    :func:`mmvmamba.kernels.ss2d_core`) or 'ref' (the PyTorch reference)."""
    return routed(ss2d_core=_ref_core) if kind == 'ref' else \
        contextlib.nullcontext()


def captured_cores(run: Callable[[], None]) -> List[tuple]:
    """The arguments of every SS2D core call made by ``run()``, copied."""
    calls = []

    def record(x, *params, backend=None):
        calls.append(tuple(t.detach().clone() for t in (x, ) + params))
        return ss2d_core(x, *params, backend=backend)

    with routed(ss2d_core=record):
        run()
    return calls


def core_rows(calls: List[tuple], backward: bool) -> Dict[str, Callable]:
    """The captured core calls alone, compiled core and reference: forward
    under ``no_grad``, or forward and backward of every call."""
    if backward:
        calls = [tuple(t.requires_grad_() for t in c) for c in calls]

    def replay(fn):
        def run():
            for args in calls:
                if backward:
                    y = fn(*args)
                    y.backward(torch.ones_like(y))
                else:
                    with torch.no_grad():
                        fn(*args)
        return run

    return {'core': replay(ss2d_core), 'core_ref': replay(_ref_core)}


def interleaved(rows: Dict[str, Callable[[], None]], repeats: int,
                warmup: int = 1) -> Dict[str, List[float]]:
    """Seconds of each row's call, ``repeats`` rounds of all rows."""
    for fn in rows.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in rows}
    for _ in range(repeats):
        for name, fn in rows.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def summary(times: Dict[str, List[float]], base: str) -> Dict[str, dict]:
    """Median ms per row and its ratio to ``base`` (median and spread of
    the per-repeat ratios)."""
    out = {}
    for name, ts in times.items():
        ratios = [t / b for t, b in zip(ts, times[base])]
        out[name] = dict(
            ms=statistics.median(ts) * 1e3,
            ms_min=min(ts) * 1e3,
            ms_max=max(ts) * 1e3,
            ratio=statistics.median(ratios),
            ratio_min=min(ratios),
            ratio_max=max(ratios))
    return out


def print_table(title: str, res: Dict[str, dict], base: str) -> None:
    print(f'\n{title}')
    print(f'| row | median ms | min-max ms | / {base} (min-max) |')
    print('| --- | --- | --- | --- |')
    for name, r in res.items():
        print(f"| {name} | {r['ms']:.1f} | {r['ms_min']:.1f}-{r['ms_max']:.1f}"
              f" | {r['ratio']:.2f} ({r['ratio_min']:.2f}-"
              f"{r['ratio_max']:.2f}) |", flush=True)


def inference(args) -> dict:
    torch.manual_seed(0)
    models = {
        'vmamba_t': build_classifier('vmamba-t'),
        'swin_t': build_classifier('swin-t'),
        'convnext_t': build_classifier('convnext-t')
    }
    for m in models.values():
        m.eval()
    results = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch in args.batch:
            x = torch.randn(batch, 3, 224, 224)

            def run(name: str, kind: str = 'cpu') -> Callable[[], None]:
                def fn():
                    with torch.no_grad(), core(kind):
                        models[name](x)
                return fn

            rows = {
                'vmamba_t': run('vmamba_t'),
                'vmamba_t_ref': run('vmamba_t', 'ref'),
                'swin_t': run('swin_t'),
                'convnext_t': run('convnext_t')
            }
            # VMamba-T's core calls of this forward, replayed alone
            with torch.no_grad():
                calls = captured_cores(lambda: models['vmamba_t'](x))
            rows.update(core_rows(calls, False))
            res = summary(interleaved(rows, args.repeats), 'swin_t')
            key = f'threads{threads}_batch{batch}'
            results[key] = res
            print_table(
                f'inference, batch {batch}, 224², {threads} thread(s), '
                f'median of {args.repeats}', res, 'swin_t')
    return results


def maskrcnn(args) -> dict:
    from demo_step_worker import build_demo_step  # beside this script
    model, optim, data, cfg = build_demo_step(DEMO_CFG)
    size = cfg.img_size
    results = {}
    for threads in args.threads:
        torch.set_num_threads(threads)

        def step(kind: str) -> Callable[[], None]:
            def fn():
                with core(kind):
                    model.train_step(data, optim)
            return fn

        rows = {'after': step('cpu'), 'before': step('ref')}
        # the step's core calls alone, forward and backward
        calls = captured_cores(lambda: model.train_step(data, optim))
        rows.update(core_rows(calls, True))
        res = summary(interleaved(rows, args.repeats), 'after')
        results[f'threads{threads}'] = res
        print_table(
            f'demo Mask R-CNN train step (batch 2, {size}², fwd+bwd+AdamW), '
            f'{threads} thread(s), median of {args.repeats}', res, 'after')
    return results


class StepWorker:
    """A ``demo_step_worker.py`` process for one source tree."""

    def __init__(self, tree: str):
        self.proc = subprocess.Popen(
            [sys.executable,
             osp.join(osp.dirname(__file__), 'demo_step_worker.py'), tree],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True)
        self._expect('ready')

    def _expect(self, what: str) -> str:
        line = self.proc.stdout.readline().strip()
        if not line or (what and line != what):
            raise RuntimeError(f'demo_step_worker answered {line!r}, '
                               f'expected {what or "a time"}')
        return line

    def ask(self, cmd: str) -> str:
        self.proc.stdin.write(cmd + '\n')
        self.proc.stdin.flush()
        return self._expect('ok' if cmd.startswith('threads') else '')

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def against_revision(args) -> dict:
    """The demo step of this checkout and of ``args.baseline_rev``."""
    rev = args.baseline_rev
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(['git', '-C', ROOT, 'archive', rev],
                                 check=True,
                                 capture_output=True).stdout
        subprocess.run(['tar', '-x', '-C', tmp], input=archive, check=True)
        workers = {'this tree': StepWorker(ROOT), rev: StepWorker(tmp)}
        try:
            for threads in args.threads:
                for w in workers.values():
                    w.ask(f'threads {threads}')
                rows = {
                    name: (lambda w=w: w.ask('step'))
                    for name, w in workers.items()
                }
                res = summary(interleaved(rows, args.repeats), 'this tree')
                results[f'threads{threads}'] = res
                print_table(
                    f'demo Mask R-CNN train step, this tree against {rev}, '
                    f'{threads} thread(s), median of {args.repeats} '
                    '(wall time of the call, each tree in its own process)',
                    res, 'this tree')
        finally:
            for w in workers.values():
                w.close()
    return results


AVX2_ENV = 'MMVMAMBA_AVX2_CAPPED'
AVX2_CAPS = dict(
    ATEN_CPU_CAPABILITY='avx2',
    ONEDNN_MAX_CPU_ISA='AVX2',
    MKL_ENABLE_INSTRUCTIONS='AVX2')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--batch', type=int, nargs='+', default=[1, 8])
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument(
        '--maskrcnn', action='store_true', help='also the demo train step')
    parser.add_argument(
        '--no-inference', action='store_true', help='only --maskrcnn')
    parser.add_argument(
        '--baseline-rev',
        help='with --maskrcnn: also time the step of this git revision')
    parser.add_argument(
        '--avx2',
        action='store_true',
        help='cap PyTorch, oneDNN, MKL and the core at AVX2 (see above)')
    parser.add_argument('--json', help='write the results here')
    args = parser.parse_args()
    if args.avx2 and args.baseline_rev:
        parser.error('--avx2 cannot cap the --baseline-rev worker\'s core; '
                     'run them apart')
    if args.avx2 and os.environ.get(AVX2_ENV) != '1':
        # the caps are read when the libraries load: set them, start again
        env = dict(os.environ, **AVX2_CAPS, **{AVX2_ENV: '1'})
        sys.exit(subprocess.call([sys.executable] + sys.argv, env=env))
    import mmvmamba.kernels.ss2d.cpu as cpu
    t0 = time.perf_counter()
    if args.avx2:
        if not cpu.has_avx512():
            parser.error('--avx2: this CPU has no AVX-512; run without it')
        cpu._ext = cpu.build('_no512', ['-mno-avx512f'])
    else:
        cpu.load_extension()
    print(f'CPU kernel ready in {time.perf_counter() - t0:.1f} s (built '
          'at first use on a machine, then cached)')
    results = dict(torch=torch.__version__, avx2_caps=args.avx2)
    if not args.no_inference:
        results['inference'] = inference(args)
    if args.maskrcnn:
        results['maskrcnn'] = maskrcnn(args)
        if args.baseline_rev:
            results['maskrcnn_against'] = dict(
                rev=args.baseline_rev, **against_revision(args))
    write_json(args.json, results)


if __name__ == '__main__':
    main()
