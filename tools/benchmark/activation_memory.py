"""Activation memory of a training step, counted without a GPU.

Runs the AMP forward of each model (``mmvmamba.analysis.bench.MODELS``) on fake CUDA
tensors (``FakeTensorMode``: shapes, dtypes and the CUDA code paths, the
Triton ops through their fake implementations, no data) and adds up the
bytes autograd saves for the backward, each storage once, parameters
excluded. The count is taken at two batch sizes and reported per image as
the difference, so per-step constants (autocast's 16-bit weight copies) drop
out; the breakdown is by the leaf module that saved the tensor (``other``:
ops outside leaf modules, e.g. VMamba's SS2D core) and its dtype.

This is the part of the training peak that grows with the batch; the GPU
peak (``bench_models.py``) adds weights, gradients, optimizer state and
workspaces.

    python tools/benchmark/activation_memory.py [--models vmamba-t swin-t]
        [--amp-dtype fp16] [--size 224] [--json out.json]
"""
import argparse
import collections
from typing import Dict, Tuple
from unittest import mock

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from mmvmamba.analysis import bench

BATCHES = (4, 12)


def saved_bytes(model: torch.nn.Module, batch: int, size: int,
                amp_dtype: torch.dtype) -> Dict[Tuple[str, str], int]:
    """Bytes saved for backward by one AMP forward, by (module, dtype)."""
    params = {p.untyped_storage()._cdata for p in model.parameters()}
    seen, by = set(), collections.Counter()
    stack = []
    hooks = []
    for mod in model.modules():
        if next(mod.children(), None) is None:  # leaf modules
            name = type(mod).__name__
            hooks.append(
                mod.register_forward_pre_hook(
                    lambda m, i, n=name: stack.append(n)))
            hooks.append(
                mod.register_forward_hook(lambda m, i, o: stack.pop() and None))

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = t.untyped_storage()._cdata
        if key not in params and key not in seen:
            seen.add(key)
            by[(stack[-1] if stack else 'other', str(t.dtype).replace('torch.', ''))] += (
                t.untyped_storage().nbytes())
        return t

    try:
        x = torch.randn(batch, 3, size, size, device='cuda')
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
                torch.autocast('cuda', dtype=amp_dtype):
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return dict(by)


def per_image(name: str, size: int, amp_dtype: torch.dtype) -> Dict:
    """Activation MiB per image of ``name`` and the breakdown."""
    model = bench.build_classifier(name).train()  # real init, on the CPU
    counts = []
    # autocast checks for a CUDA device; the tensors are fake CUDA tensors
    with FakeTensorMode(allow_non_fake_inputs=True):
        model = model.cuda()
        with mock.patch('torch.cuda.is_available', return_value=True), \
                mock.patch('torch.cuda.is_bf16_supported', return_value=True):
            for batch in BATCHES:
                counts.append(saved_bytes(model, batch, size, amp_dtype))
    span = BATCHES[1] - BATCHES[0]
    keys = set(counts[0]) | set(counts[1])
    parts = {
        k: (counts[1].get(k, 0) - counts[0].get(k, 0)) / span / 2**20
        for k in keys
    }
    return dict(
        model=name,
        mib_per_image=sum(parts.values()),
        parts={
            f'{m} {d}': round(v, 2)
            for (m, d), v in sorted(parts.items(), key=lambda kv: -kv[1])
            if abs(v) >= 0.01
        })


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--models',
        nargs='+',
        default=['vmamba-t', 'swin-t', 'convnext-t'],
        type=bench.model_choice,
        help=f'from {list(bench.MODELS)}')
    parser.add_argument('--amp-dtype', default='fp16', choices=['fp16', 'bf16'])
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--json', help='write the results here')
    args = parser.parse_args(argv)
    amp_dtype = torch.float16 if args.amp_dtype == 'fp16' else torch.bfloat16
    results = []
    for name in args.models:
        res = per_image(name, args.size, amp_dtype)
        results.append(res)
        print(f'{name}: {res["mib_per_image"]:.1f} MiB saved for the '
              f'backward per image ({args.size}², AMP {args.amp_dtype})')
        for part, mib in list(res['parts'].items())[:8]:
            print(f'    {part:28s} {mib:7.2f}')
    base = results[0]['mib_per_image']
    for res in results[1:]:
        print(f'{results[0]["model"]} / {res["model"]}: '
              f'{base / res["mib_per_image"]:.2f}')
    bench.write_json(
        args.json, dict(size=args.size, amp=args.amp_dtype, results=results))


if __name__ == '__main__':
    main()
