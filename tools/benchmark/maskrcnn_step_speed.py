"""Seconds per Mask R-CNN training step: VMamba-T beside mmdet's Swin-T.

Both models are built from their COCO 1x configs (no pretrained weights),
fed the same random batch (boxes + masks from ``mmdet.testing``), and
trained with AdamW (AMP on a GPU), so the numbers are directly comparable.
Two figures per model: the model step on device-resident data (the batch
prepared once by the data preprocessor; then loss, backward and optimizer,
the headline: the model's own cost) and mmengine's ``model.train_step``
(which moves and pads the batch every step, host work common to both
models). Example (H100)::

    python tools/benchmark/maskrcnn_step_speed.py --batch 2 --height 800 \\
        --width 1344 --amp --iters 30

Under torchrun with N processes the step is data-parallel: one GPU per
process (gloo processes on a CPU), ``--batch`` images on each, the model in
MMEngine's DistributedDataParallel (gradient all-reduce in every step), and
throughput = N * batch / (slowest rank's seconds per step)::

    torchrun --nproc_per_node 4 tools/benchmark/maskrcnn_step_speed.py \\
        --amp --out speed_n4.json

``--predict`` (one process) also times ``model.test_step`` on one image
(fp32, median of ``--iters``), and for VMamba-T once more with the backbone
replayed from a CUDA graph (``backbone.cuda_graph``).
"""
import argparse
import os
import os.path as osp
import tempfile
import time
from typing import Dict

import mmvmamba  # noqa: F401  isort:skip
import torch
from mmengine.config import Config
from mmengine.dist import all_reduce, is_main_process
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from mmvmamba.analysis.bench import add_device_args, wall_clock, write_json
from mmvmamba.engine.distributed import finish_distributed

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MODELS = {
    'vmamba_t': osp.join(ROOT, 'configs', 'maskrcnn_vmamba_t_coco.py'),
    'swin_t': 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py',
}


def load_cfg(path: str) -> Config:
    if '::' not in path:
        return Config.fromfile(path)
    # 'mmdet::' only works inside _base_
    with tempfile.NamedTemporaryFile('w', suffix='.py', delete=False) as f:
        f.write(f'_base_ = [{path!r}]\n')
    return Config.fromfile(f.name)


def world_size() -> int:
    return int(os.environ.get('WORLD_SIZE', 1))


def init_distributed(device: str) -> str:
    """Join torchrun's process group; the device of this process."""
    import torch.distributed as dist
    if world_size() == 1:
        return device
    local_rank = int(os.environ['LOCAL_RANK'])
    if device == 'cuda':
        if local_rank >= torch.cuda.device_count():
            raise SystemExit(
                f'[mmvmamba] error: local rank {local_rank} but only '
                f'{torch.cuda.device_count()} visible GPU(s); start at most '
                'that many processes per machine (--nproc_per_node)')
        torch.cuda.set_device(local_rank)
        device = f'cuda:{local_rank}'
    dist.init_process_group('nccl' if device.startswith('cuda') else 'gloo')
    return device


def reduce_max(value: float, device: str) -> float:
    """The largest value over all ranks (the value itself without torchrun)."""
    t = torch.tensor([value], dtype=torch.float64, device=device)
    all_reduce(t, op='max')
    return t.item()


def time_model(name: str, args: argparse.Namespace) -> Dict[str, float]:
    from mmdet.registry import MODELS as DET_MODELS
    from mmdet.testing import demo_mm_inputs
    from mmengine.model import MMDistributedDataParallel
    cfg = load_cfg(MODELS[name])
    init_default_scope('mmdet')
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)  # the same initial weights on every rank
    model = DET_MODELS.build(cfg.model).to(args.device)
    model.init_weights()
    model.train()
    world = world_size()
    if world > 1:
        cuda = args.device.startswith('cuda')
        model = MMDistributedDataParallel(
            model,
            device_ids=[torch.cuda.current_device()] if cuda else None,
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    optim_cfg = cfg.optim_wrapper.copy()
    if args.amp:
        optim_cfg.type = 'AmpOptimWrapper'
        optim_cfg.loss_scale = 'dynamic'
    optim = build_optim_wrapper(model, optim_cfg)
    torch.manual_seed(0)
    data = demo_mm_inputs(
        args.batch, [[3, args.height, args.width]] * args.batch,
        num_items=[10] * args.batch,
        num_classes=80,
        with_mask=True)
    cuda = args.device.startswith('cuda')
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(args.warmup):
        model.train_step(data, optim)
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    reduce_max(0., args.device)  # start together (a barrier)
    start = time.perf_counter()
    for _ in range(args.iters):
        model.train_step(data, optim)
    sync()
    sec = reduce_max((time.perf_counter() - start) / args.iters, args.device)
    model_sec = time_model_step(model, optim, data, args, sync)
    mem = reduce_max(
        torch.cuda.max_memory_allocated() / 2**30 if cuda else float('nan'),
        args.device)
    res = dict(
        model_step_sec=model_sec,
        sec_per_iter=sec,
        images_per_sec=world * args.batch / sec,
        peak_mem_gib=mem)
    if args.predict and world == 1:
        res.update(time_predict(model, args))
    del model, optim
    if cuda:
        torch.cuda.empty_cache()
    return res


def time_model_step(model, optim, data: dict, args: argparse.Namespace,
                    sync) -> float:
    """Seconds per model step on device-resident data: ``train_step``
    without its data preprocessor, which runs once here (slowest rank)."""
    inner = getattr(model, 'module', model)
    with torch.no_grad():
        prepared = inner.data_preprocessor(data, True)

    def step() -> None:
        with optim.optim_context(model):
            losses = model(**prepared, mode='loss')
        parsed, _ = inner.parse_losses(losses)
        optim.update_params(parsed)

    for _ in range(args.warmup):
        step()
    sync()
    reduce_max(0., args.device)
    start = time.perf_counter()
    for _ in range(args.iters):
        step()
    sync()
    return reduce_max((time.perf_counter() - start) / args.iters,
                      args.device)


def time_predict(model, args: argparse.Namespace) -> Dict[str, float]:
    """Median seconds of one batch-1 ``test_step`` (eager; VMamba: also
    with the backbone replayed from a CUDA graph)."""
    from mmdet.testing import demo_mm_inputs
    torch.manual_seed(0)
    data = demo_mm_inputs(
        1, [[3, args.height, args.width]], num_items=[10], num_classes=80)
    cuda = args.device.startswith('cuda')
    model.eval()

    def median_time() -> float:
        return wall_clock(
            lambda: model.test_step(data), args.iters, warmup=3, cuda=cuda)

    out = dict(predict_sec=median_time())
    if cuda and hasattr(model.backbone, '_graphs'):
        from mmvmamba.models.cuda_graph import GraphCache
        model.backbone._graphs = GraphCache(max_graphs=1, capture_after=1)
        out['predict_sec_cuda_graph'] = median_time()
        model.backbone._graphs = None
    model.train()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--models', nargs='+', default=list(MODELS))
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--height', type=int, default=800)
    parser.add_argument('--width', type=int, default=1344)
    parser.add_argument('--amp', action='store_true')
    parser.add_argument('--iters', type=int, default=30)
    parser.add_argument('--warmup', type=int, default=5)
    add_device_args(parser)
    parser.add_argument(
        '--predict',
        action='store_true',
        help='also time batch-1 inference (one process only)')
    parser.add_argument('--out', help='write the results as JSON here')
    args = parser.parse_args()
    if args.amp and args.device != 'cuda':
        parser.error('--amp needs --device cuda')
    args.device = init_distributed(args.device)
    world = world_size()
    rank0 = is_main_process()
    results = {}
    for name in args.models:
        results[name] = time_model(name, args)
        if rank0:
            r = results[name]
            print(f'{name}: model step {r["model_step_sec"]:.4f} s, '
                  f'train_step {r["sec_per_iter"]:.4f} s/iter, '
                  f'{r["images_per_sec"]:.2f} img/s on {world} '
                  f'process(es), peak {r["peak_mem_gib"]:.2f} '
                  'GiB' + ''.join(f', {k} {v * 1e3:.1f} ms'
                                  for k, v in r.items()
                                  if k.startswith('predict')),
                  flush=True)
    device_name = (torch.cuda.get_device_name()
                   if args.device.startswith('cuda') else 'cpu')
    if {'vmamba_t', 'swin_t'} <= set(results):
        ratio = (results['vmamba_t']['sec_per_iter'] /
                 results['swin_t']['sec_per_iter'])
        results['vmamba_over_swin'] = ratio
        model_ratio = (results['vmamba_t']['model_step_sec'] /
                       results['swin_t']['model_step_sec'])
        results['vmamba_over_swin_model_step'] = model_ratio
        if rank0:
            print(f'VMamba-T / Swin-T model step time: {model_ratio:.3f}, '
                  f'train_step time: {ratio:.3f} '
                  f'(batch {args.batch} per process, {world} process(es), '
                  f'{args.height}x{args.width}, amp={args.amp}, '
                  f'{args.device}: {device_name})')
    if rank0:
        write_json(
            args.out,
            dict(
                args=vars(args),
                world_size=world,
                device_name=device_name,
                results=results))
    finish_distributed()


if __name__ == '__main__':
    main()
