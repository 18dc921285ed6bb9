"""VMamba-T/S/B beside timm's Swin and ConvNeXt of the same size, one run.

For each model at 224² (batch 128 by default): fp32 inference, AMP (fp16
autocast) inference, an AMP training step (forward, backward, AdamW with a
GradScaler) and the training step's peak memory. Median of ``--iters``
timed steps after ``--warmup`` steps, random weights and inputs, same card.
Models named in ``--compile-models`` get an extra ``NAME+c`` row run under
``torch.compile`` (``--compile-mode``, default ``default``; ``reduce-overhead``
replays forward and backward from CUDA graphs); ``--compile`` compiles
every row instead. ``--pairs`` makes the SS2D core take the pair kernels at
every stage (as inside a CUDA-graph capture; eager, the chunked kernels serve
small maps at batch > 2), to measure that choice under compilation; models
named in ``--pair-models`` get an extra ``NAME+p`` row with the pair kernels
at every stage, in the same process as their default row.
``--latency`` adds batch-1 latency at 224² (fp32 and AMP; wall clock of one
synchronised forward, median of 50): eager, and replayed from a CUDA graph
(:class:`mmvmamba.models.cuda_graph.GraphCache`, the path behind
``VMamba(cuda_graph=True)``), for every model alike. ``--breakdown`` adds
where the AMP training step and the AMP inference step spend their time (ms
per step: wall, host time less its waits for the GPU, GPU kernel time; from
the profiler over ``--iters`` steps, :func:`mmvmamba.analysis.bench.
step_breakdown`): a host time above the GPU time means an idle GPU.
``--graph-train`` adds a training step replayed from a CUDA graph (bf16
autocast, capturable AdamW, no GradScaler: :func:`mmvmamba.analysis.bench.
graphed_train_step`), the step without any host work, for every model
alike. ``--backbone-graph`` adds, for the VMamba models, the same eager AMP
training step (fp16, GradScaler) with the backbone's forward and backward
replayed from CUDA graphs (``VMamba(cuda_graph_train=True)``) and its peak
memory.

    python tools/benchmark/bench_models.py [--models vmamba-t swin-t ...]
        [--compile-models vmamba-t swin-t] [--compile-mode reduce-overhead]
        [--pairs] [--pair-models vmamba-t vmamba-s] [--batch 128] [--latency]
        [--breakdown] [--graph-train] [--backbone-graph] [--json out.json]

Model names: ``mmvmamba.analysis.bench.MODELS`` (``vmamba_t`` is
``vmamba-t``).
"""
import argparse
import time

import torch
import torch.nn as nn

from mmvmamba.analysis.bench import (MODELS, amp_train_step, build_classifier,
                                     cuda_timed, graphed_train_step,
                                     model_choice, step_breakdown, wall_clock,
                                     write_json)
from mmvmamba.kernels.ss2d import config as ss2d


def latency(model: nn.Module, amp: bool, graph: bool, iters: int = 50) -> float:
    """Median wall-clock ms of one synchronised batch-1 forward."""
    from mmvmamba.models.cuda_graph import GraphCache
    x = torch.randn(1, 3, 224, 224, device='cuda')
    cache = GraphCache(max_graphs=1, capture_after=1)

    def fwd(t):
        return (model(t), )

    def call():
        with torch.autocast('cuda', dtype=torch.float16, enabled=amp):
            return cache(fwd, x) if graph else fwd(x)

    return wall_clock(call, iters) * 1e3


def _breakdown(res: dict, kind: str, step, iters: int) -> None:
    """res[kind + '_{wall,host,device}_ms'] from :func:`step_breakdown`;
    NaN (and a message) if the profiler fails, keeping the other rows."""
    try:
        parts = step_breakdown(step, iters)
    except Exception as exc:  # the profiler, not the model
        print(f'breakdown of {kind} failed: {type(exc).__name__}: {exc}')
        parts = dict.fromkeys(('wall', 'host', 'device'), float('nan'))
    for k, v in parts.items():
        res[f'{kind}_{k}_ms'] = v


def run_model(name: str,
              batch: int,
              warmup: int,
              iters: int,
              compile_model: bool,
              compile_mode: str = 'default',
              with_latency: bool = False,
              breakdown: bool = False,
              graph_train: bool = False,
              backbone_graph: bool = False) -> dict:
    torch.manual_seed(0)
    model = build_classifier(name).cuda()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    if compile_model:
        model = torch.compile(model, mode=compile_mode)
    x = torch.randn(batch, 3, 224, 224, device='cuda')
    target = torch.randint(0, 1000, (batch, ), device='cuda')
    res = dict(model=name, params_m=round(params, 1), batch=batch)

    model.eval()
    with torch.no_grad():
        t = cuda_timed(lambda: model(x), warmup, iters)
        res['infer_fp32'] = batch / t
        with torch.autocast('cuda', dtype=torch.float16):
            t = cuda_timed(lambda: model(x), warmup, iters)
        res['infer_amp'] = batch / t
        if breakdown:
            with torch.autocast('cuda', dtype=torch.float16):
                _breakdown(res, 'infer_amp', lambda: model(x), iters)
    if with_latency:
        for amp in (False, True):
            for graph in (False, True):
                key = 'lat_{}_{}'.format('amp' if amp else 'fp32',
                                         'graph' if graph else 'eager')
                res[key] = latency(model, amp, graph)

    model.train()
    step = amp_train_step(model, x, target)
    step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t = cuda_timed(step, warmup, iters)
    res['train_amp'] = batch / t
    res['train_peak_gib'] = torch.cuda.max_memory_allocated() / 2**30
    if breakdown:
        _breakdown(res, 'train_amp', step, iters)
    del step  # its optimizer state
    backbone = getattr(model, 'backbone', None)
    # the backbone's graphs are eager mode's (a compiled VMamba bypasses them)
    if backbone_graph and not compile_model and hasattr(
            backbone, '_train_graphs'):
        from mmvmamba.models.cuda_graph import TrainGraphCache
        backbone._train_graphs = TrainGraphCache(1)
        try:
            step = amp_train_step(model, x, target)
            step()
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            res['train_amp_bbgraph'] = batch / cuda_timed(step, warmup, iters)
            res['train_bbgraph_peak_gib'] = (
                torch.cuda.max_memory_allocated() / 2**30)
            res['bbgraph_captures'] = backbone._train_graphs.captures
        except Exception as exc:  # report, keep the other rows
            print(f'{name}: backbone training graphs failed: '
                  f'{type(exc).__name__}: {exc}')
        finally:
            backbone._train_graphs = None
            step = None
            torch.cuda.empty_cache()
    if graph_train:
        try:
            step = graphed_train_step(model, x, target)
            res['train_graph'] = batch / cuda_timed(step, warmup, iters)
        except Exception as exc:  # report, keep the other rows
            print(f'{name}: graphed training failed: '
                  f'{type(exc).__name__}: {exc}')
            res['train_graph'] = float('nan')
    return res


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--models',
        nargs='*',
        type=model_choice,
        default=[m for m in MODELS if not m.endswith(('-ln', '-s1l20'))
                 and not m.startswith('resnet')],
        help=f'default: all but variants and resnets; from {list(MODELS)}')
    parser.add_argument('--json', help='write the results here')
    parser.add_argument('--batch', type=int, default=128)
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--iters', type=int, default=20)
    parser.add_argument(
        '--compile', action='store_true', help='torch.compile every model')
    parser.add_argument(
        '--compile-models',
        nargs='*',
        default=[],
        type=model_choice,
        help='also run these models under torch.compile (rows NAME+c)')
    parser.add_argument(
        '--compile-mode',
        default='default',
        choices=['default', 'reduce-overhead', 'max-autotune-no-cudagraphs'],
        help='torch.compile mode of the compiled rows')
    parser.add_argument(
        '--pairs',
        action='store_true',
        help='the SS2D core takes the pair kernels at every stage')
    parser.add_argument(
        '--pair-models',
        nargs='*',
        default=[],
        type=model_choice,
        help='also run these models with the pair kernels at every stage '
        '(rows NAME+p)')
    parser.add_argument(
        '--latency',
        action='store_true',
        help='also batch-1 latency (eager and CUDA graph, fp32 and AMP)')
    parser.add_argument(
        '--breakdown',
        action='store_true',
        help='also wall / host / GPU ms per AMP training and inference step')
    parser.add_argument(
        '--graph-train',
        action='store_true',
        help='also a bf16 training step replayed from a CUDA graph')
    parser.add_argument(
        '--backbone-graph',
        action='store_true',
        help='also the AMP training step with VMamba(cuda_graph_train=True)')
    args = parser.parse_args()
    if args.pairs:
        ss2d.PAIR_MIN_PIXELS = 0
    torch.backends.cudnn.benchmark = True
    dev = torch.cuda.get_device_name()
    print(f'{dev}  torch {torch.__version__}  batch {args.batch}  224²  '
          f'tf32 matmul={torch.backends.cuda.matmul.allow_tf32} '
          f'cudnn={torch.backends.cudnn.allow_tf32}  '
          f'compile={args.compile} mode={args.compile_mode} '
          f'pairs everywhere={args.pairs}')
    print(f'{"model":12s} {"params":>7s} {"inf fp32":>9s} {"inf amp":>9s} '
          f'{"train amp":>10s} {"peak GiB":>9s}   (img/s)')
    results = []
    runs = [(name, args.compile, False) for name in args.models]
    runs += [(name, True, False) for name in args.compile_models]
    runs += [(name, args.compile, True) for name in args.pair_models]
    default_min_pixels = ss2d.PAIR_MIN_PIXELS
    for name, comp, everywhere in runs:
        label = (name + ('+c' if comp and not args.compile else '') +
                 ('+p' if everywhere else ''))
        t0 = time.time()
        ss2d.PAIR_MIN_PIXELS = 0 if everywhere else default_min_pixels
        try:
            r = run_model(name, args.batch, args.warmup, args.iters, comp,
                          args.compile_mode, args.latency, args.breakdown,
                          args.graph_train, args.backbone_graph)
        except Exception as exc:  # report and go on with the other models
            print(f'{label:12s} failed: {type(exc).__name__}: {exc}')
            torch.cuda.empty_cache()
            continue
        finally:
            ss2d.PAIR_MIN_PIXELS = default_min_pixels
        r['model'] = label
        r['compiled'] = comp
        r['pairs_everywhere'] = everywhere or args.pairs
        results.append(r)
        print(
            f'{label:12s} {r["params_m"]:6.1f}M {r["infer_fp32"]:9.0f} '
            f'{r["infer_amp"]:9.0f} {r["train_amp"]:10.0f} '
            f'{r["train_peak_gib"]:9.2f}   ({time.time() - t0:.0f} s)',
            flush=True)
        if args.latency:
            print(f'{"":12s} batch-1 ms: fp32 eager {r["lat_fp32_eager"]:.2f} '
                  f'graph {r["lat_fp32_graph"]:.2f} | amp eager '
                  f'{r["lat_amp_eager"]:.2f} graph {r["lat_amp_graph"]:.2f}',
                  flush=True)
        if args.breakdown:
            print(f'{"":12s} ms per step (wall / host / GPU): ' + ' | '.join(
                f'{kind} {r[f"{kind}_amp_wall_ms"]:.1f} / '
                f'{r[f"{kind}_amp_host_ms"]:.1f} / '
                f'{r[f"{kind}_amp_device_ms"]:.1f}'
                for kind in ('train', 'infer')),
                  flush=True)
        if args.graph_train:
            print(f'{"":12s} training step from a CUDA graph (bf16): '
                  f'{r["train_graph"]:.0f} img/s', flush=True)
        if 'train_amp_bbgraph' in r:
            print(f'{"":12s} AMP training step, backbone from CUDA graphs '
                  f'(cuda_graph_train): {r["train_amp_bbgraph"]:.0f} img/s, '
                  f'peak {r["train_bbgraph_peak_gib"]:.2f} GiB, '
                  f'{r["bbgraph_captures"]} capture(s)', flush=True)
        torch.cuda.empty_cache()
    by = {r['model']: r for r in results}
    pairs = []
    for size in 'tsb':
        for v in (f'vmamba-{size}', f'vmamba-{size}-ln',
                  f'vmamba-{size}-s1l20'):
            for peer in (f'swin-{size}', f'convnext-{size}'):
                pairs.append((v, peer))
                pairs.append((v + '+p', peer))
                pairs.append((v + '+c', peer + '+c'))
                pairs.append((v + '+c', peer))
    print('ratios (>1: VMamba faster; peak mem <1: VMamba smaller)')
    for v, s in pairs:
        if v in by and s in by:
            a, b = by[v], by[s]
            print(
                f'{v}/{s}: infer fp32 {a["infer_fp32"] / b["infer_fp32"]:.2f}'
                f'  infer amp {a["infer_amp"] / b["infer_amp"]:.2f}  '
                f'train amp {a["train_amp"] / b["train_amp"]:.2f}  '
                f'peak mem {a["train_peak_gib"] / b["train_peak_gib"]:.2f}')
            if args.graph_train:
                print(f'    train from a CUDA graph '
                      f'{a["train_graph"] / b["train_graph"]:.2f}')
            if 'train_amp_bbgraph' in a:
                print(f'    AMP train with cuda_graph_train against eager '
                      f'{a["train_amp_bbgraph"] / b["train_amp"]:.2f}, '
                      f'peak mem '
                      f'{a["train_bbgraph_peak_gib"] / b["train_peak_gib"]:.2f}')
            if args.latency:
                print('    batch-1 latency ratio (<1: VMamba faster): ' +
                      '  '.join(f'{k[4:]} {a[k] / b[k]:.2f}' for k in a
                                if k.startswith('lat_')))
    write_json(args.json, dict(device=dev, results=results))


if __name__ == '__main__':
    main()
