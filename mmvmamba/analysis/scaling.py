"""Throughput and peak memory versus input size (224² → 1024²).

VMamba's claim is linear cost in the number of pixels: pixels/s should stay
flat as the input grows, where global attention falls. :func:`run_scaling`
measures images/s, pixels/s and peak memory of several backbones on whatever
device is present, :func:`write_table` writes CSV + Markdown and
:func:`plot_scaling` draws the three curves.
"""
import csv
import ctypes
import os
import os.path as osp
import threading
import time
from contextlib import nullcontext
from functools import partial
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

from .bench import median_seconds

__all__ = [
    'DEFAULT_SIZES', 'batch_for_size', 'measure', 'run_scaling', 'write_table',
    'plot_scaling'
]

DEFAULT_SIZES = (224, 288, 384, 512, 640, 768, 1024)
FIELDS = ('model', 'size', 'batch', 'mode', 'dtype', 'ms_per_batch',
          'img_per_s', 'mpix_per_s', 'peak_mem_mib', 'device')


def batch_for_size(size: int, batch_224: int) -> int:
    """Keep pixels per batch about constant: batch_224 · (224 / size)²."""
    return max(1, int(batch_224 * (224 / size)**2))


class _RSSPeak:
    """Peak resident memory of this process while active (CPU runs)."""

    def __init__(self, period: float = 0.002) -> None:
        self.period, self.peak, self._stop = period, 0, threading.Event()
        self.page = os.sysconf('SC_PAGE_SIZE') if hasattr(os, 'sysconf') \
            else 4096

    def _rss(self) -> int:
        try:
            with open('/proc/self/statm') as f:
                return int(f.read().split()[1]) * self.page
        except OSError:  # not Linux: no sampling
            return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.period)

    def __enter__(self) -> '_RSSPeak':
        # hand freed heap back to the OS first, or memory kept by glibc from
        # earlier runs hides this run's allocations
        try:
            ctypes.CDLL('libc.so.6').malloc_trim(0)
        except (OSError, AttributeError):
            pass
        self.base = self._rss()
        self.peak = self.base
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def measure(model: nn.Module,
            size: int,
            batch: int,
            device: torch.device,
            dtype: str = 'fp32',
            mode: str = 'infer',
            warmup: int = 5,
            iters: int = 20) -> Dict[str, float]:
    """Median time of ``iters`` steps on a (batch, 3, size, size) input.

    ``mode='infer'``: eval + no_grad forward; ``'train'``: forward + backward
    of the output's mean (no optimizer step). ``dtype`` fp16/bf16 runs under
    autocast. Peak memory: ``max_memory_allocated`` on CUDA, sampled process
    RSS growth on a CPU.
    """
    if mode not in ('infer', 'train'):
        raise ValueError(f"unknown mode {mode!r}; expected 'infer' or "
                         "'train'")
    dtypes = {'fp32': None, 'fp16': torch.float16, 'bf16': torch.bfloat16}
    if dtype not in dtypes:
        raise ValueError(f'unknown dtype {dtype!r}; expected one of '
                         f'{tuple(dtypes)}')
    amp = (
        torch.autocast(device.type, dtype=dtypes[dtype])
        if dtypes[dtype] is not None else nullcontext())
    model.train(mode == 'train')
    x = torch.randn(batch, 3, size, size, device=device)

    def step() -> None:
        with amp:
            if mode == 'infer':
                with torch.no_grad():
                    model(x)
            else:
                model(x).float().mean().backward()

    for _ in range(warmup):
        step()
    _sync(device)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        mem_ctx = nullcontext()
    else:
        mem_ctx = _RSSPeak()
    with mem_ctx:
        t = median_seconds(step, iters, sync=partial(_sync, device))
    if device.type == 'cuda':
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = (mem_ctx.peak - mem_ctx.base) / 2**20
    return dict(
        size=size,
        batch=batch,
        mode=mode,
        dtype=dtype,
        ms_per_batch=1e3 * t,
        img_per_s=batch / t,
        mpix_per_s=batch * size * size / t / 1e6,
        peak_mem_mib=peak,
        device=(torch.cuda.get_device_name(device)
                if device.type == 'cuda' else 'cpu'))


def run_scaling(builders: Dict[str, Callable[[int], nn.Module]],
                sizes: Sequence[int] = DEFAULT_SIZES,
                batch_224: int = 64,
                device: Optional[torch.device] = None,
                log: Callable[[str], None] = print,
                **measure_kwargs) -> List[Dict]:
    """Measure every model at every size.

    Args:
        builders: label → function(size) returning the model (on the CPU).
        sizes: square input sizes.
        batch_224: batch at 224²; other sizes keep pixels per batch constant.
        device: default CUDA if present.
        measure_kwargs: passed to :func:`measure` (dtype, mode, warmup, iters).

    Returns:
        One row (dict with :data:`FIELDS`) per model and size; a size that runs
        out of memory even at batch 1 gets NaN numbers.
    """
    device = device or torch.device(
        'cuda' if torch.cuda.is_available() else 'cpu')
    rows = []
    for label, build in builders.items():
        model, built_for = None, None
        for size in sizes:
            if model is None or getattr(build, 'per_size', False):
                if built_for != size:
                    model = build(size).to(device)
                    built_for = size
            batch = batch_for_size(size, batch_224)
            while True:
                try:
                    row = measure(model, size, batch, device, **measure_kwargs)
                    break
                except torch.cuda.OutOfMemoryError:
                    torch.cuda.empty_cache()
                    if batch == 1:
                        row = dict(
                            size=size,
                            batch=0,
                            **{
                                k: float('nan')
                                for k in ('ms_per_batch', 'img_per_s',
                                          'mpix_per_s', 'peak_mem_mib')
                            })
                        break
                    batch = max(1, batch // 2)
            row = dict(model=label, **row)
            row.setdefault('device', str(device))
            row.setdefault('mode', measure_kwargs.get('mode', 'infer'))
            row.setdefault('dtype', measure_kwargs.get('dtype', 'fp32'))
            rows.append(row)
            log(f'{label:>14s} {size:5d}² batch {row["batch"]:4d}: '
                f'{row["img_per_s"]:9.1f} img/s '
                f'{row["mpix_per_s"]:8.2f} Mpix/s '
                f'{row["peak_mem_mib"]:9.1f} MiB')
        del model
        if device.type == 'cuda':
            torch.cuda.empty_cache()
    return rows


def write_table(rows: List[Dict],
                csv_path: str,
                md_path: Optional[str] = None) -> None:
    """Write the rows as CSV and, optionally, as a Markdown table."""
    os.makedirs(osp.dirname(osp.abspath(csv_path)), exist_ok=True)
    with open(csv_path, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) for k in FIELDS})
    if md_path:
        head = ('| model | size | batch | img/s | Mpix/s | peak MiB | '
                'ms/batch |\n| --- | --- | --- | --- | --- | --- | --- |\n')
        body = ''.join(f'| {r["model"]} | {r["size"]}² | {r["batch"]} | '
                       f'{r["img_per_s"]:.1f} | {r["mpix_per_s"]:.2f} | '
                       f'{r["peak_mem_mib"]:.0f} | {r["ms_per_batch"]:.1f} |\n'
                       for r in rows)
        dev = rows[0]['device'] if rows else ''
        mode = f'{rows[0]["mode"]}, {rows[0]["dtype"]}' if rows else ''
        with open(md_path, 'w') as f:
            f.write(f'Device: {dev}; mode: {mode}\n\n{head}{body}')


def plot_scaling(rows: List[Dict], path: str) -> str:
    """Three panels versus input size: images/s, Mpixels/s, peak memory."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(15, 4.2), dpi=100)
    axes = fig.subplots(1, 3)
    panels = (('img_per_s', 'images / s', True), ('mpix_per_s', 'Mpixels / s',
                                                  False),
              ('peak_mem_mib', 'peak memory (MiB)', True))
    models = list(dict.fromkeys(r['model'] for r in rows))
    for ax, (key, title, logy) in zip(axes, panels):
        for m in models:
            pts = [(r['size'], r[key]) for r in rows if r['model'] == m]
            ax.plot([p[0] for p in pts], [p[1] for p in pts],
                    marker='o',
                    label=m)
        ax.set_xticks(sorted({r['size'] for r in rows}))
        ax.set_xlabel('input size (pixels per side)')
        ax.set_title(title)
        if logy:
            ax.set_yscale('log')
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    if rows:
        r = rows[0]
        fig.suptitle(
            f'{r["device"]} — {r["mode"]}, {r["dtype"]}; batch '
            'scaled to constant pixels per batch',
            fontsize=10)
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, bbox_inches='tight')
    return path
