"""Time the SS2D core on a GPU against its memory floor and against public
first-order-recurrence kernels.

Shapes (batch, Di, H×W): VMamba-T's four stages at batch 128, 224² (d_state
1, dt_rank Di/16), stage 1 at batch 1, and the four Mask R-CNN stages at
batch 2, 800×1344. For each shape the core is first checked against the
float32 PyTorch reference (forward and every gradient, at batch ≤ 2) and for
bit-identical results over two runs, then timed with
``triton.testing.do_bench`` (median) in bf16: forward without autograd
(inference) and forward + backward.

The floor is the bytes the op must move at least, at the card's copy rate
(measured in the same run, device-to-device): forward reads x and the
projections x_dbl (B·L·4·(R+2)) and writes the float32 output; forward +
backward also reads x, x_dbl and the float32 upstream gradient again and
writes dx and d x_dbl.

``--public fla|accel`` times instead a public kernel for the plain recurrence
h_t = a_t·h_{t-1} + b_t on the same number of steps (4·batch·Di sequences of
length L, bf16): fla-core's ``hgrn`` (chunk and fused_recurrent) or
accelerated-scan's ``scalar.scan``. Run each in its own process
(accelerated-scan can fault after a first shape). ``--report`` merges the
JSON files of such runs into one markdown table.

    python tools/benchmark/bench_kernels.py [--json ours.json]
    python tools/benchmark/bench_kernels.py --public fla --json fla.json
    python tools/benchmark/bench_kernels.py --report ours.json fla.json ...
"""
import argparse
import json
import math
import sys
from math import nan

import torch

from mmvmamba.analysis.bench import (SHAPES, bench, copy_rate, rel,
                                     ss2d_params, time_core, write_json)


def floor_bytes(B, C, H, W, esz=2):
    E, L = B * C * H * W, H * W
    xdbl = B * L * 4 * (math.ceil(C / 16) + 2) * esz
    fwd = E * esz + xdbl + E * 4
    return fwd, fwd + E * esz + xdbl + E * 4 + E * esz + xdbl


def check(B, C, H, W):
    """(max relative error against the reference, bit-identical twice)."""
    from mmvmamba.kernels import ss2d_core, ss2d_core_ref
    torch.manual_seed(0)
    nb = min(B, 2)
    x = torch.randn(nb, C, H, W, device='cuda').to(
        memory_format=torch.channels_last).requires_grad_()
    ps = [p.requires_grad_() for p in ss2d_params(C)]
    g = torch.randn(nb, C, H, W, device='cuda')
    runs = []
    for _ in range(2):
        y = ss2d_core(x, *ps)
        runs.append([y] + list(torch.autograd.grad(y, [x] + ps, g)))
    yr = ss2d_core_ref(x, *ps)
    ref = [yr] + list(torch.autograd.grad(yr, [x] + ps, g))
    err = max(rel(a, b) for a, b in zip(runs[0], ref))
    same = all(torch.equal(a, b) for a, b in zip(*runs))
    return err, same


def legacy_core(x, xw, dt_w, dt_b, A_logs, Ds):
    """The chunked per-direction kernels (the default path, atomics), timed
    beside the deterministic pair kernels."""
    import mmvmamba.kernels.ss2d.op  # noqa: F401  (registers the op)
    B, Di, H, W = x.shape
    x = x.contiguous(memory_format=torch.channels_last)
    x_dbl = torch.matmul(
        x.permute(0, 2, 3, 1).reshape(B, H * W, Di),
        xw.reshape(-1, Di).t().to(x.dtype))
    need = torch.is_grad_enabled()
    return torch.ops.mmvmamba.ss2d_scan_fwd(x, x_dbl, dt_w.contiguous(),
                                            dt_b.reshape(-1).float(),
                                            -torch.exp(A_logs.float()),
                                            Ds.float(), need)[0]


def run_ours(args, rate):
    from mmvmamba.kernels import ss2d_core
    if args.legacy:
        ss2d_core = legacy_core  # noqa: F811
    else:  # the deterministic pair kernels at every batch
        torch.use_deterministic_algorithms(True, warn_only=True)
    rows = []
    print(f'{"shape":14s} {"fwd ms":>8s} {"f+b ms":>8s} {"floor f":>8s} '
          f'{"floor fb":>8s} {"x fwd":>6s} {"x f+b":>6s} {"err":>8s} det')
    for name, B, C, H, W in SHAPES:
        if args.shapes and name not in args.shapes:
            continue
        err, same = check(B, C, H, W) if not args.legacy else (nan, False)
        fwd, fb = time_core(ss2d_core, B, C, H, W)
        ff, ffb = (n / rate / 1e6 for n in floor_bytes(B, C, H, W))
        variant = 'legacy' if args.legacy else 'pairs'
        rows.append(dict(shape=name, variant=variant, fwd_ms=fwd,
                         fwd_bwd_ms=fb, floor_fwd_ms=ff, floor_fwd_bwd_ms=ffb,
                         err=err, deterministic=same))
        print(f'{name:14s} {fwd:8.3f} {fb:8.3f} {ff:8.4f} {ffb:8.4f} '
              f'{fwd / ff:6.1f} {fb / ffb:6.1f} {err:8.1e} {same}',
              flush=True)
        torch.cuda.empty_cache()
    return rows


def run_public(args):
    if args.public == 'fla':
        from fla.ops.hgrn import chunk_hgrn, fused_recurrent_hgrn
        kernels = {
            'fla chunk_hgrn': lambda x, g: chunk_hgrn(x, g)[0],
            'fla fused_recurrent_hgrn':
            lambda x, g: fused_recurrent_hgrn(x, g)[0],
        }
    else:
        from accelerated_scan.scalar import scan
        # gates as decays a_t, float32 (its bf16 path faults on an H200)
        kernels = {'accelerated-scan': lambda x, a: scan(a, x)}
    rows = []
    for name, B, C, H, W in SHAPES:
        if args.shapes and name not in args.shapes:
            continue
        L = H * W
        # (sequences, L, channels) for fla; accelerated-scan wants
        # (batch, channels, L): same element count, own layout
        shape = (4 * B, L, C) if args.public == 'fla' else (4 * B, C, L)
        dt = torch.bfloat16 if args.public == 'fla' else torch.float32
        x = torch.randn(shape, device='cuda', dtype=dt)
        g = torch.nn.functional.logsigmoid(torch.randn(shape, device='cuda'))
        g = g.to(dt) if args.public == 'fla' else g.exp()
        for kname, fn in kernels.items():
            try:
                with torch.no_grad():
                    fwd = bench(lambda: fn(x, g))
                xg, gg = x.requires_grad_(), g.requires_grad_()
                do = torch.randn_like(x)
                fb = bench(lambda: torch.autograd.grad(
                    fn(xg, gg), [xg, gg], do))
                x, g = x.detach(), g.detach()
            except Exception as e:  # report and go on with the next one
                print(f'{name:14s} {kname}: {type(e).__name__}: {e}',
                      flush=True)
                continue
            rows.append(
                dict(shape=name, kernel=kname, fwd_ms=fwd, fwd_bwd_ms=fb))
            print(f'{name:14s} {kname:26s} {fwd:8.3f} {fb:8.3f}', flush=True)
        torch.cuda.empty_cache()
    return rows


def report(paths):
    ours, public, legacy = {}, {}, {}
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        for row in data['rows']:
            if 'kernel' in row:
                best = public.get(row['shape'])
                if best is None or row['fwd_bwd_ms'] < best['fwd_bwd_ms']:
                    public[row['shape']] = row
            elif row.get('variant') == 'legacy':
                legacy[row['shape']] = row
            else:
                ours[row['shape']] = row
    print('| shape (batch, Di, H×W) | fwd ms | fwd+bwd ms | floor fwd / '
          'fwd+bwd ms | × floor fwd / fwd+bwd | deterministic | fastest '
          'public fwd+bwd ms | chunked kernels fwd / fwd+bwd ms |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- |')
    for name, B, C, H, W in SHAPES:
        r = ours.get(name)
        if r is None:
            continue
        p = public.get(name)
        pub = f'{p["fwd_bwd_ms"]:.3f} ({p["kernel"]})' if p else '—'
        q = legacy.get(name)
        old = f'{q["fwd_ms"]:.3f} / {q["fwd_bwd_ms"]:.3f}' if q else '—'
        print(f'| {name} ({B}, {C}, {H}×{W}) | {r["fwd_ms"]:.3f} | '
              f'{r["fwd_bwd_ms"]:.3f} | {r["floor_fwd_ms"]:.4f} / '
              f'{r["floor_fwd_bwd_ms"]:.4f} | '
              f'{r["fwd_ms"] / r["floor_fwd_ms"]:.1f} / '
              f'{r["fwd_bwd_ms"] / r["floor_fwd_bwd_ms"]:.1f} | '
              f'{"yes" if r["deterministic"] else "NO"} | {pub} | {old} |')


def compare(base_paths, new_paths):
    """The pair kernels of two trees timed in one call (the ``ab`` stage of
    gpu_speed.sh: a base revision's tree and this one, in turn): per shape
    the fastest of each tree's runs and new / base."""
    def best(paths):
        rows = {}
        for path in paths:
            with open(path) as f:
                for row in json.load(f)['rows']:
                    old = rows.get(row['shape'])
                    if old is None:
                        rows[row['shape']] = dict(row)
                    else:
                        for key in ('fwd_ms', 'fwd_bwd_ms'):
                            old[key] = min(old[key], row[key])
        return rows

    base, new = best(base_paths), best(new_paths)
    print('| shape | base fwd / fwd+bwd ms | new fwd / fwd+bwd ms | new / base '
          'fwd, fwd+bwd | new × floor fwd+bwd | new deterministic |')
    print('| --- | --- | --- | --- | --- | --- |')
    for name, *_ in SHAPES:
        b, n = base.get(name), new.get(name)
        if b is None or n is None:
            continue
        print(f'| {name} | {b["fwd_ms"]:.3f} / {b["fwd_bwd_ms"]:.3f} | '
              f'{n["fwd_ms"]:.3f} / {n["fwd_bwd_ms"]:.3f} | '
              f'{n["fwd_ms"] / b["fwd_ms"]:.2f}, '
              f'{n["fwd_bwd_ms"] / b["fwd_bwd_ms"]:.2f} | '
              f'{n["fwd_bwd_ms"] / n["floor_fwd_bwd_ms"]:.1f} | '
              f'{"yes" if n["deterministic"] else "NO"} |')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--json', help='write the results here')
    parser.add_argument(
        '--shapes', nargs='+', help='only these shapes (default: all)')
    parser.add_argument(
        '--public',
        choices=['fla', 'accel'],
        help='time a public recurrence kernel instead of ours')
    parser.add_argument(
        '--report', nargs='+', help='merge JSON files into a markdown table')
    parser.add_argument(
        '--compare',
        nargs=2,
        metavar=('BASE', 'NEW'),
        help='comma-separated JSON files of a base tree and of this tree: '
        'their times side by side')
    parser.add_argument(
        '--legacy',
        action='store_true',
        help='time the chunked per-direction kernels at d_state 1')
    args = parser.parse_args(argv)
    if args.report:
        report(args.report)
        return
    if args.compare:
        compare(*(p.split(',') for p in args.compare))
        return
    if not torch.cuda.is_available():
        sys.exit('bench_kernels.py needs a CUDA GPU')
    rate = copy_rate()
    print(f'{torch.cuda.get_device_name()}  torch {torch.__version__}  '
          f'copy {rate:.0f} GB/s')
    rows = run_public(args) if args.public else run_ours(args, rate)
    write_json(args.json,
               dict(device=torch.cuda.get_device_name(), copy_gbs=rate,
                    rows=rows))


if __name__ == '__main__':
    main()
