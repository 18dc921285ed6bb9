"""One source tree's demo Mask R-CNN training step, timed on request.

Run by ``cpu_speed.py --baseline-rev`` once per source tree (this checkout and
an extracted earlier revision), so that the two trees' steps can be timed in
turn, interleaved, in one run::

    python tools/benchmark/demo_step_worker.py TREE

``TREE`` is a source tree whose ``mmvmamba`` is imported (its ``kernels/``
folder served as ``mmvmamba.kernels``, as ``setup.cfg`` maps it). The worker
builds the demo model and its batch exactly as ``cpu_speed.py --maskrcnn``
does, prints ``ready``, then answers each line of its input: ``threads N``
(sets torch's threads, answers ``ok``) or ``step`` (one training step,
answers its seconds).
"""
import importlib.util
import os.path as osp
import sys
import time


def _package(name: str, folder: str):
    """The package ``name`` from ``folder`` (its ``__init__.py``),
    registered in ``sys.modules`` but not yet executed."""
    spec = importlib.util.spec_from_file_location(
        name,
        osp.join(folder, '__init__.py'),
        submodule_search_locations=[folder])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    return module, spec


def import_tree(tree: str) -> None:
    """Import ``mmvmamba`` (and ``mmvmamba.kernels``) from ``tree``."""
    pkg, spec = _package('mmvmamba', osp.join(tree, 'mmvmamba'))
    kernels, kspec = _package('mmvmamba.kernels', osp.join(tree, 'kernels'))
    kspec.loader.exec_module(kernels)
    spec.loader.exec_module(pkg)
    pkg.kernels = kernels


def build_demo_step(cfg_file: str):
    """The demo's Mask R-CNN (random init, train mode), its optimizer
    wrapper and a fixed batch of 2 (random boxes and masks): what one
    ``model.train_step(data, optim)`` needs. Only mmdet and mmengine, so a
    worker for an older tree builds it the same way."""
    import torch
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope

    # no line per parameter from init_weights and the optimizer
    MMLogger.get_current_instance().setLevel('WARNING')
    cfg = Config.fromfile(cfg_file)
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    torch.manual_seed(0)
    size = cfg.img_size
    data = demo_mm_inputs(
        2, [[3, size, size]] * 2,
        num_items=[3, 3],
        num_classes=len(cfg.classes),
        with_mask=True)
    return model, optim, data, cfg


def main() -> None:
    tree = osp.abspath(sys.argv[1])
    import_tree(tree)
    import torch
    model, optim, data, _ = build_demo_step(
        osp.join(tree, 'configs', 'demo', 'maskrcnn_vmamba_t_demo-shapes.py'))
    print('ready', flush=True)
    for line in sys.stdin:
        cmd, *arg = line.split()
        if cmd == 'threads':
            torch.set_num_threads(int(arg[0]))
            print('ok', flush=True)
        elif cmd == 'step':
            t0 = time.perf_counter()
            model.train_step(data, optim)
            print(time.perf_counter() - t0, flush=True)
        else:
            raise SystemExit(f'demo_step_worker: unknown command {line!r}')


if __name__ == '__main__':
    main()
