"""The base of the benchmark and analysis scripts (``tools/benchmark``,
``tools/analysis``): benchmark shapes, model names, timing and JSON output.

Model names are one vocabulary: ``vmamba-t`` and ``vmamba_t`` are the same
name (:func:`model_key`), and a name means one model in every script (the
comparison models are timm's, see :data:`PEERS`).

Timing: :func:`bench` (``triton.testing.do_bench`` median, ms; the kernel
benchmarks), :func:`cuda_timed` (CUDA events, median s per call; GPU time of
whole steps), :func:`median_seconds` / :func:`wall_clock` (synchronised wall
clock, median s; latency and CPU runs).
"""
import json
import math
import statistics
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

# SS2D core shapes of the kernel benchmarks: name, batch, Di, H, W
SHAPES: List[Tuple[str, int, int, int, int]] = [
    ('T-stage1', 128, 96, 56, 56),
    ('T-stage2', 128, 192, 28, 28),
    ('T-stage3', 128, 384, 14, 14),
    ('T-stage4', 128, 768, 7, 7),
    ('batch1-stage1', 1, 96, 56, 56),
    ('MaskRCNN-s1', 2, 96, 200, 336),
    ('MaskRCNN-s2', 2, 192, 100, 168),
    ('MaskRCNN-s3', 2, 384, 50, 84),
    ('MaskRCNN-s4', 2, 768, 25, 42),
]

# VMamba classifiers (backbone + pooled linear head): name -> VMamba kwargs
VMAMBA_MODELS: Dict[str, dict] = {
    'vmamba-t': dict(arch='tiny'),
    'vmamba-t-ln': dict(arch='tiny', norm_layer='ln'),
    'vmamba-s': dict(arch='small'),  # s2l15, the default preset
    'vmamba-b': dict(arch='base'),
    'vmamba-s-s1l20': dict(arch='small_s1l20'),
    'vmamba-b-s1l20': dict(arch='base_s1l20'),
}

# The comparison models, timm's implementations: name -> timm model name
PEERS: Dict[str, str] = {
    'swin-t': 'swin_tiny_patch4_window7_224',
    'swin-s': 'swin_small_patch4_window7_224',
    'swin-b': 'swin_base_patch4_window7_224',
    'convnext-t': 'convnext_tiny',
    'convnext-s': 'convnext_small',
    'convnext-b': 'convnext_base',
    'resnet50': 'resnet50',
    'resnet101': 'resnet101',
}

MODELS: Tuple[str, ...] = tuple(VMAMBA_MODELS) + tuple(PEERS)


def model_key(name: str) -> str:
    """The vocabulary's spelling of a model name (``swin_t`` -> ``swin-t``);
    specs with a prefix (``timm:...``, ``vmamba:...``) are left as given."""
    return name if ':' in name else name.lower().replace('_', '-')


def model_choice(name: str) -> str:
    """argparse ``type`` for a classifier name of :data:`MODELS`."""
    key = model_key(name)
    if key not in MODELS:
        import argparse
        raise argparse.ArgumentTypeError(
            f'unknown model {name!r}; expected one of {list(MODELS)} '
            '(- and _ are the same)')
    return key


class VMambaClassifier(nn.Module):
    """VMamba backbone (last stage) + global pooling + linear head."""

    def __init__(self, **kwargs) -> None:
        super().__init__()
        from mmvmamba.models import VMamba
        self.backbone = VMamba(out_indices=(3, ), **kwargs)
        self.head = nn.Linear(self.backbone.num_features, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.backbone(x)[-1]
        return self.head(feat.mean((2, 3)))


def build_classifier(name: str) -> nn.Module:
    """The 1000-class classifier of a :data:`MODELS` name, random init."""
    key = model_key(name)
    if key in VMAMBA_MODELS:
        return VMambaClassifier(**VMAMBA_MODELS[key])
    if key not in PEERS:
        raise ValueError(f'unknown model {name!r}; expected one of '
                         f'{list(MODELS)}')
    import timm
    return timm.create_model(PEERS[key], num_classes=1000)


def ss2d_params(C: int, N: int = 1, device='cuda'):
    """x_proj, dt_projs weight and bias, A_logs, Ds as in a VMamba block."""
    R = math.ceil(C / 16)
    return [
        torch.randn(4, R + 2 * N, C, device=device) * C**-0.5,
        torch.randn(4, C, R, device=device) * R**-0.5,
        torch.randn(4, C, device=device) * 0.5 - 3.,
        torch.log(torch.rand(4 * C, N, device=device) + 0.5),
        torch.randn(4 * C, device=device),
    ]


def rel(a, b):
    """Max absolute difference relative to the max of ``b``."""
    return ((a.float() - b.float()).abs().max() /
            b.float().abs().max().clamp_min(1e-12)).item()


def bench(fn):
    """Median ms of ``fn`` (``triton.testing.do_bench``)."""
    from triton.testing import do_bench
    return do_bench(fn, warmup=10, rep=60, return_mode='median')


def copy_rate() -> float:
    """Device-to-device copy rate in GB/s (read + write bytes): the card's
    pace for the memory floors of the kernel benchmarks."""
    src = torch.empty(1 << 29, dtype=torch.uint8, device='cuda')
    dst = torch.empty_like(src)
    ms = bench(lambda: dst.copy_(src))
    return 2 * src.numel() / ms / 1e6


def core_calls(core: Callable, B: int, C: int, H: int,
               W: int) -> Tuple[Callable[[], None], Callable[[], None]]:
    """(forward without autograd, forward + backward) closures of an SS2D
    core on a bf16 channels-last (B, C, H, W) input, fp32 parameters."""
    x = torch.randn(
        B, C, H, W, device='cuda',
        dtype=torch.bfloat16).to(memory_format=torch.channels_last)
    ps = ss2d_params(C)
    xg = x.detach().requires_grad_()
    pg = [p.clone().requires_grad_() for p in ps]
    gy = torch.randn(
        B, C, H, W, device='cuda').to(memory_format=torch.channels_last)

    def fwd() -> None:
        with torch.no_grad():
            core(x, *ps)

    def fwd_bwd() -> None:
        torch.autograd.grad(core(xg, *pg), [xg] + pg, gy)

    return fwd, fwd_bwd


def time_core(core: Callable, B: int, C: int, H: int,
              W: int) -> Tuple[float, float]:
    """(forward ms without autograd, forward + backward ms) of an SS2D core
    (:func:`core_calls`), :func:`bench` medians."""
    fwd, fwd_bwd = core_calls(core, B, C, H, W)
    return bench(fwd), bench(fwd_bwd)


def cuda_timed(fn: Callable, warmup: int, iters: int) -> float:
    """Median seconds per call, CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def median_seconds(fn: Callable,
                   iters: int,
                   warmup: int = 0,
                   sync: Optional[Callable] = None) -> float:
    """Median wall-clock seconds of one call of ``fn``, ``sync()`` before
    and after each call (latency, launch overhead included)."""
    sync = sync or (lambda: None)
    times = []
    for i in range(warmup + iters):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def wall_clock(fn: Callable,
               iters: int,
               warmup: int = 5,
               cuda: bool = True) -> float:
    """:func:`median_seconds` under ``no_grad``, CUDA-synchronised."""
    with torch.no_grad():
        return median_seconds(
            fn,
            iters,
            warmup,
            sync=torch.cuda.synchronize if cuda else None)


def write_json(path: Optional[str], data: Any) -> None:
    """Write a benchmark's results (``--json``/``--out``); no-op without a
    path."""
    if path:
        with open(path, 'w') as f:
            json.dump(data, f, indent=1)


def amp_train_step(model: nn.Module, x: torch.Tensor,
                   target: torch.Tensor) -> Callable[[], None]:
    """One AMP (fp16 autocast) training step of a classifier on CUDA:
    cross entropy, backward through a GradScaler, AdamW step."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler('cuda')
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast('cuda', dtype=torch.float16):
            loss = loss_fn(model(x), target)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    return step


def graphed_train_step(model: nn.Module, x: torch.Tensor,
                       target: torch.Tensor,
                       warmup: int = 3) -> Callable[[], None]:
    """One training step of a classifier replayed from a CUDA graph: bf16
    autocast forward, cross entropy, backward and a capturable AdamW step,
    captured once after ``warmup`` eager steps on a side stream (the
    whole-network capture of the PyTorch CUDA-graph notes). No host work
    is left in the step, so its time is the GPU's. bf16, not fp16: a
    GradScaler's overflow check waits for the device and cannot be
    captured. ``x`` and ``target`` are copied into the graph's static
    inputs once (a data loop would copy each batch there). The capture is
    :class:`mmvmamba.engine.graphed_train.CUDAGraph`, the one behind
    ``CUDAGraphTrainHook``."""
    from mmvmamba.engine.graphed_train import CUDAGraph
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, capturable=True)
    loss_fn = nn.CrossEntropyLoss()
    static_x, static_t = x.clone(), target.clone()

    def body() -> None:
        # the autocast weight-cast cache would keep tensors of the warm-up
        # steps alive across the capture: cast inside the graph
        with torch.autocast(
                'cuda', dtype=torch.bfloat16, cache_enabled=False):
            loss = loss_fn(model(static_x), static_t)
        loss.backward()
        opt.step()

    graph = CUDAGraph()
    for _ in range(warmup):  # compiles kernels, creates the state
        opt.zero_grad(set_to_none=True)
        graph.warm(body)
    opt.zero_grad(set_to_none=True)  # .grad allocated inside the graph
    graph.capture(body)
    return graph.replay


#: CUDA runtime calls in which the host waits for the device
SYNC_CALLS = ('cudaStreamSynchronize', 'cudaDeviceSynchronize',
              'cudaEventSynchronize')


def host_busy_us(step_ranges: List[Tuple[float, float]],
                 sync_ranges: List[Tuple[float, float]]) -> float:
    """Host time inside the steps that is not spent waiting for the device:
    the steps' (start, end) intervals minus the parts of them covered by
    synchronising calls (same clock, any unit)."""
    total = 0.
    for s0, s1 in step_ranges:
        total += s1 - s0
        for w0, w1 in sync_ranges:
            total -= max(0., min(s1, w1) - max(s0, w0))
    return total


def step_breakdown(step: Callable[[], None], iters: int,
                   device: str = 'cuda') -> Dict[str, float]:
    """Where a training step's time goes, in ms per step, over ``iters``
    steps run back to back: ``wall`` (from the first step's start to the
    device's end, per step), ``host`` (the host's time inside the steps
    less its waits for the device, e.g. the GradScaler's check of the
    gradients: the enqueue cost) and ``device`` (the profiler's sum of
    device kernel and copy time). A step whose host time exceeds its device
    time leaves the device idle. The same method for every model;
    ``device`` is 0 on a CPU."""
    from torch.profiler import ProfilerActivity, profile, record_function
    cuda = device == 'cuda'
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])

    def sync():
        if cuda:
            torch.cuda.synchronize()

    sync()
    with profile(activities=acts) as prof:
        t0 = time.perf_counter()
        for _ in range(iters):
            with record_function('mmvmamba_step'):
                step()
        sync()
        wall = time.perf_counter() - t0
    res = breakdown_from_events(prof.events(), iters)
    if cuda and not res['device']:  # a profiler that keeps them only as keys
        res['device'] = sum(
            getattr(e, 'self_device_time_total', 0.)
            for e in prof.key_averages()
            if str(e.device_type).endswith('CUDA')) / 1e3 / iters
    res['wall'] = wall * 1e3 / iters
    return res


def breakdown_from_events(events, iters: int) -> Dict[str, float]:
    """``host`` and ``device`` ms per step of :func:`step_breakdown` from
    the profiler's events (``name``, ``device_type``, ``time_range`` in
    µs). The steps' record_function range also appears on the device's
    timeline, as a GPU user annotation spanning the step's kernels: it
    counts as host time once and never as device time."""

    def on_device(e) -> bool:
        return str(e.device_type).endswith('CUDA')

    steps = [(e.time_range.start, e.time_range.end) for e in events
             if e.name == 'mmvmamba_step' and not on_device(e)]
    waits = [(e.time_range.start, e.time_range.end) for e in events
             if e.name in SYNC_CALLS and not on_device(e)]
    # device-side events (kernels, copies, sets), each once
    dev_us = sum(e.time_range.end - e.time_range.start for e in events
                 if on_device(e) and e.name != 'mmvmamba_step')
    return dict(
        host=host_busy_us(steps, waits) / 1e3 / iters,
        device=dev_us / 1e3 / iters)


def add_device_args(parser, backend: bool = False) -> None:
    """``--device`` (default CUDA when present) and, with ``backend``, the
    ``--backend`` of the SS2D core."""
    parser.add_argument(
        '--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    if backend:
        parser.add_argument(
            '--backend',
            choices=['torch', 'triton'],
            help='SS2D core backend of VMamba presets (default: '
            'Triton on CUDA, torch elsewhere)')
