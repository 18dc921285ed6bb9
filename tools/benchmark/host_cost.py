"""The host's (CPU's) cost of the project's GPU ops and of a training step.

At tiny shapes each kernel takes the GPU a few microseconds, so a loop of
calls is bound by the host: the clock's time per call (no profiler, whose
per-launch callbacks cost more than a launch) is the enqueue cost, the
Python, dispatch and launch work a training step pays for every op. Rows,
µs per call:

* a bare Triton launch of a kernel with 25 arguments and one aten op;
* LayerNorm with the cast to fp16 under autocast: PyTorch's
  (``F.layer_norm(...).to(fp16)``) and the project's op, forward and
  forward + backward;
* the SS2D core on the pair kernels (batch 2) and the chunked kernels
  (batch 4), 64 channels at 8×8, forward and forward + backward;
* one AMP training step of VMamba-T and of Swin-T at batch 1, 224²: the
  host's floor of a step, which a batch-128 step can only hide when its
  GPU time is larger;

then (unless ``--no-tables``) the profiler's ops by self CPU time of the
pair core's forward + backward and of the VMamba-T step (what runs, how
often), and cProfile's Python functions of both steps by own time.

    python tools/benchmark/host_cost.py [--json FILE] [--rows 25] [--no-tables]
"""
import argparse
import time
from typing import Callable

import torch
import triton
import triton.language as tl
from torch.profiler import ProfilerActivity, profile

from mmvmamba.analysis.bench import (amp_train_step, build_classifier,
                                     core_calls, write_json)
from mmvmamba.kernels import layer_norm, ss2d_core

_INTS = [f'n{i}' for i in range(22)]


@triton.jit(do_not_specialize=_INTS)
def _store_kernel(a_ptr, b_ptr, c_ptr, n0, n1, n2, n3, n4, n5, n6, n7, n8,
                  n9, n10, n11, n12, n13, n14, n15, n16, n17, n18, n19, n20,
                  n21, BD: tl.constexpr):
    offs = tl.program_id(0) * BD + tl.arange(0, BD)
    tl.store(a_ptr + offs, tl.load(b_ptr + offs) + n0 + n21)


def _launch_us(fn, n: int) -> float:
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


class _Rows(dict):
    """The table, each row printed as soon as it is measured."""

    def __setitem__(self, name, r):
        super().__setitem__(name, r)
        print(f'{name:52s} {r:12.1f}', flush=True)


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


def _cprofile(fn, rows: int, title: str, calls: int = 20) -> str:
    """The Python functions with the most own time over ``calls`` calls of
    ``fn`` (cProfile: where the host's time goes inside the Python)."""
    import cProfile
    import io
    import pstats
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        fn()
    torch.cuda.synchronize()
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats('tottime').print_stats(rows)
    stats.sort_stats('cumulative').print_stats(rows)
    return f'== {title}: cProfile over {calls} calls\n{out.getvalue()}'


def _direct(jit_fn, grid, *args, **kwargs) -> Callable[[], None]:
    """A launch of ``jit_fn`` that skips Triton's per-call binding,
    specialisation and cache lookup: the compiled kernel's own launcher,
    called as ``JITFunction.run`` calls it (the floor of a launch)."""
    from triton import knobs
    kernel = jit_fn[grid](*args, **kwargs)
    device = triton.runtime.driver.active.get_current_device()
    binder = jit_fn.device_caches[device][4]
    bound = list(binder(*args, **kwargs)[0].values())
    stream = triton.runtime.driver.active.get_current_stream(device)
    g = tuple(grid) + (1, ) * (3 - len(grid))

    def launch() -> None:
        meta = kernel.launch_metadata(grid, stream, *bound)
        kernel.run(*g, stream, kernel.function, kernel.packed_metadata, meta,
                   knobs.runtime.launch_enter_hook,
                   knobs.runtime.launch_exit_hook, *bound)

    return launch


def _parts(rows: '_Rows', iters: int) -> None:
    """Clock rows of the pieces of a LayerNorm and an SS2D pair call."""
    from mmvmamba.kernels.common.eager import _plain
    from mmvmamba.kernels.common.util import cdiv
    from mmvmamba.kernels.norm import config as LNC
    from mmvmamba.kernels.norm import kernels as LNK
    from mmvmamba.kernels.norm import op as LN
    from mmvmamba.kernels.ss2d import op as S
    from mmvmamba.kernels.ss2d import pair as SP
    from mmvmamba.analysis.bench import ss2d_params
    half = torch.float16
    x = torch.randn(128, 96, device='cuda')
    w = torch.ones(96, device='cuda')
    b = torch.zeros(96, device='cuda')
    y, stats, xhat = LN._ln_fwd_impl(x, w, b, 1e-5, half, True)
    BM, BC, warps = LNC.blocks(96)
    grid = (cdiv(128, BM), )
    largs = (x, w, b, y, stats, xhat, 128, 96, 1e-5, BM, BC, True, True)

    def empties():  # the training forward's three outputs
        torch.empty(x.shape, dtype=half, device=x.device)
        torch.empty((2, 128), dtype=torch.float32, device=x.device)
        torch.empty(x.shape, dtype=half, device=x.device)

    part = torch.zeros(4, 2, 96, device='cuda')
    for name, fn in [
        ('torch.empty x3', empties),
        ('LN fwd kernel[grid], outputs allocated',
         lambda: LNK.ln_fwd_kernel[grid](*largs, num_warps=warps)),
        ('LN fwd Launcher[grid] (kernels/common/launch.py), outputs allocated',
         lambda: LN._LN_FWD[grid](*largs, num_warps=warps)),
        ('LN _ln_fwd_impl',
         lambda: LN._ln_fwd_impl(x, w, b, 1e-5, half, True)),
        ('eager _plain(6 args)', lambda: _plain((x, w, b, 1e-5, half, True))),
        ('part.sum(0)', lambda: part.sum(0)),
        ('LN _ln_bwd_impl',
         lambda: LN._ln_bwd_impl(xhat, y, w, stats, True, torch.float32)),
    ]:
        rows[name] = _launch_us(fn, iters)
    try:  # the launcher's calling convention is Triton's internal one
        rows['LN fwd compiled kernel launcher (floor)'] = _launch_us(
            _direct(LNK.ln_fwd_kernel, grid, *largs, num_warps=warps), iters)
    except Exception as e:  # noqa: BLE001
        print(f'direct launch failed: {e!r}')
    with torch.no_grad():
        rows['LN _LayerNorm.apply, no grad'] = _launch_us(
            lambda: LN._LayerNorm.apply(x, w, b, 1e-5, half, False), iters)
        rows['LN layer_norm_triton, no grad'] = _launch_us(
            lambda: LN.layer_norm_triton(x, w, b, 1e-5, half), iters)

    xs = torch.randn(2, 64, 8, 8, device='cuda', dtype=torch.bfloat16).to(
        memory_format=torch.channels_last)
    xp, dw, db, al, ds = ss2d_params(64)
    xpp = SP.pad_x_proj(xp, dw.shape[2])
    x_dbl = torch.matmul(xs.permute(0, 2, 3, 1).reshape(2, 64, 64),
                         xpp.reshape(-1, 64).t().to(xs.dtype)).contiguous()
    fargs = (xs, x_dbl, dw, db.reshape(-1), al, ds)
    _, carry = SP._fwd1_impl(*fargs)
    gy = torch.randn(2, 64, 8, 8, device='cuda').to(
        memory_format=torch.channels_last)
    rows['ss2d pair _zproj'] = _launch_us(lambda: SP._zproj(x_dbl, dw), iters)
    rows['ss2d pair _fwd1_impl'] = _launch_us(lambda: SP._fwd1_impl(*fargs),
                                              iters)
    rows['ss2d pair _bwd1_impl'] = _launch_us(
        lambda: SP._bwd1_impl(*fargs, gy, carry), iters)
    with torch.no_grad():
        rows['ss2d pair ss2d_core_triton, no grad'] = _launch_us(
            lambda: S.ss2d_core_triton(xs, xp, dw, db, al, ds), iters)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--json', help='write the rows here')
    parser.add_argument('--rows', type=int, default=25)
    parser.add_argument('--iters', type=int, default=300)
    parser.add_argument(
        '--no-tables',
        action='store_true',
        help='only the rows, without the profiler and cProfile tables')
    parser.add_argument(
        '--parts',
        action='store_true',
        help='first the pieces of a LayerNorm and an SS2D pair call')
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True
    print(f'{torch.cuda.get_device_name()}  torch {torch.__version__}  '
          f'triton {triton.__version__}')
    print(f'{"":52s} {"µs per call (clock, no profiler)":>34s}')
    rows = _Rows()
    if args.parts:
        _parts(rows, args.iters)

    a = torch.zeros(1024, device='cuda')
    b = torch.ones(1024, device='cuda')
    ints = list(range(22))
    rows['triton launch (25 args), kernel[grid]'] = _launch_us(
        lambda: _store_kernel[(8, )](a, b, a, *ints, BD=128), args.iters)
    rows['torch.add (one aten op)'] = _launch_us(
        lambda: torch.add(a, b, out=a), args.iters)

    xn = torch.randn(2 * 64, 96, device='cuda', requires_grad=True)
    wn = torch.ones(96, device='cuda', requires_grad=True)
    bn = torch.zeros(96, device='cuda', requires_grad=True)
    gn = torch.randn(2 * 64, 96, device='cuda')
    half = torch.float16

    def ln_fwd(norm):
        def fn():
            with torch.no_grad(), torch.autocast('cuda', dtype=half):
                norm()
        return fn

    def ln_fwd_bwd(norm):
        def fn():
            with torch.autocast('cuda', dtype=half):
                y = norm()
            y.backward(gn)
        return fn

    ours = lambda: layer_norm(xn, wn, bn, 1e-5, half)  # noqa: E731
    aten = lambda: torch.nn.functional.layer_norm(  # noqa: E731
        xn, (96, ), wn, bn, 1e-5).to(half)
    rows['F.layer_norm + cast fwd (aten)'] = _launch_us(ln_fwd(aten),
                                                        args.iters)
    rows['F.layer_norm + cast fwd+bwd (aten)'] = _launch_us(
        ln_fwd_bwd(aten), args.iters)
    rows['layer_norm fwd'] = _launch_us(ln_fwd(ours), args.iters)
    rows['layer_norm fwd+bwd'] = _launch_us(ln_fwd_bwd(ours), args.iters)

    pair = core_calls(ss2d_core, 2, 64, 8, 8)
    chunked = core_calls(ss2d_core, 4, 64, 8, 8)
    for name, (fwd, fb) in (('pair 2x64x8x8', pair),
                            ('chunked 4x64x8x8', chunked)):
        rows[f'ss2d {name} fwd'] = _launch_us(fwd, args.iters)
        rows[f'ss2d {name} fwd+bwd'] = _launch_us(fb, args.iters)

    steps = {}
    for name in ('vmamba-t', 'swin-t'):
        torch.manual_seed(0)
        model = build_classifier(name).cuda().train()
        x = torch.randn(1, 3, 224, 224, device='cuda')
        target = torch.zeros(1, dtype=torch.long, device='cuda')
        steps[name] = amp_train_step(model, x, target)
        rows[f'{name} AMP train step, batch 1, 224²'] = _launch_us(
            steps[name], 30)

    write_json(args.json, rows)
    if args.no_tables:
        return
    print(_top_ops(pair[1], args.rows, 'ss2d pair 2x64x8x8 fwd+bwd'))
    print(_top_ops(steps['vmamba-t'], args.rows,
                   'vmamba-t AMP train step, batch 1, 224²'))
    print(_cprofile(steps['vmamba-t'], 40,
                    'vmamba-t AMP train step, batch 1, 224²'))
    print(_cprofile(steps['swin-t'], 25, 'swin-t AMP train step, batch 1, 224²'))


if __name__ == '__main__':
    main()
