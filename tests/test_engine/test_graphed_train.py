"""mmvmamba.CUDAGraphTrainHook: the graphed mmengine training step.

On a CPU the graph is a stand-in with CUDAGraph's contract (a capture runs
nothing that lasts, a replay refills the captured outputs and overwrites the
captured gradients), so what the step must get right around the graph is
checked here: new images and labels through the static buffers (Mixup's
soft labels too), the learning rate of the schedule on every replay,
clipping, the eager fallback for a batch of other shapes, and the refusals.
The capture itself runs in the GPU suite (tests/test_kernels/test_gpu.py).
"""
import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmpretrain.registry import HOOKS as PRETRAIN_HOOKS

from mmvmamba.engine import graphed_train
from mmvmamba.engine.graphed_train import (CUDAGraphTrainHook,
                                           GraphedTrainStep,
                                           check_optim_wrapper)

from .._classifier import tiny_classifier


def _tensors(out):
    """The tensors of a step body's (loss, log_vars, grad norm)."""
    loss, log_vars, norm = out
    return [loss, *log_vars.values()] + ([] if norm is None else [norm])


class EagerGraph:
    """CUDAGraph's contract without a GPU: ``capture`` returns the body's
    outputs and leaves model and optimizer as they were (a capture executes
    nothing); ``replay`` runs the body with fresh gradients (a captured
    backward writes, it does not accumulate) and copies its outputs into the
    captured ones."""

    def __init__(self, model, optimizer):
        self.model, self.optimizer = model, optimizer
        self.fn = self.outputs = None

    def warm(self, fn):
        return fn()

    def capture(self, fn):
        state = copy.deepcopy(self.model.state_dict())
        opt_state = copy.deepcopy(self.optimizer.state_dict())
        self.fn = fn
        self.outputs = fn()
        self.model.load_state_dict(state)
        self.optimizer.load_state_dict(opt_state)
        return self.outputs

    def replay(self):
        self.optimizer.zero_grad(set_to_none=True)
        new = self.fn()
        for old, t in zip(_tensors(self.outputs), _tensors(new)):
            old.data.copy_(t.detach())


def _classifier(mixup: bool):
    return tiny_classifier(mixup)


def _batch(i: int, n: int = 4, size: int = 32):
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(100 + i)
    return dict(
        inputs=[torch.rand(3, size, size, generator=g) for _ in range(n)],
        data_samples=[
            DataSample().set_gt_label(int(torch.randint(5, (1, ),
                                                        generator=g)))
            for _ in range(n)
        ])


def _wrapper(model, clip=True):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=.05,
                            foreach=False)
    return OptimWrapper(opt, clip_grad=dict(max_norm=0.5) if clip else None)


@pytest.mark.parametrize('mixup', [False, True])
def test_graphed_step_trains_as_the_eager_step(mixup):
    """Eight steps with a learning rate changed every step (as a scheduler
    does), new images and labels each time, a 3-image batch among the
    4-image ones: the graphed step leaves the same weights and logs the
    same losses as mmengine's own train_step."""
    ref, model = _classifier(mixup), _classifier(mixup)
    w_ref, w = _wrapper(ref), _wrapper(model)
    step = GraphedTrainStep(model, w, model.train_step, warmup=2,
                            graph_factory=lambda: EagerGraph(model,
                                                             w.optimizer))
    for i in range(8):
        lr = 1e-2 * (0.7**i)
        for opt in (w_ref.optimizer, w.optimizer):
            for g in opt.param_groups:
                g['lr'] = lr
        n = 3 if i == 5 else 4
        outs = []
        for fn, wrapper in ((ref.train_step, w_ref), (step, w)):
            torch.manual_seed(i)  # Mixup's permutation
            np.random.seed(i)  # Mixup's mixing factor
            outs.append(fn(_batch(i, n), wrapper))
        assert outs[0].keys() == outs[1].keys()
        for k in outs[0]:
            assert torch.allclose(outs[0][k], outs[1][k], atol=1e-6), (i, k)
        for (name, a), b in zip(ref.named_parameters(), model.parameters()):
            assert torch.allclose(a, b, atol=1e-6), (i, name)
    assert step.replays == 5  # steps 3-8 but the 3-image batch
    assert w._inner_count == w_ref._inner_count == 8


def test_refusals():
    model = _classifier(False)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with pytest.raises(ValueError, match='accumulative_counts=1'):
        check_optim_wrapper(OptimWrapper(opt, accumulative_counts=2))
    fp16 = AmpOptimWrapper.__new__(AmpOptimWrapper)  # no GPU needed
    OptimWrapper.__init__(fp16, opt)
    fp16.cast_dtype = torch.float16
    with pytest.raises(ValueError, match="dtype='bfloat16'"):
        check_optim_wrapper(fp16)
    with pytest.raises(ValueError, match='at least 1'):
        CUDAGraphTrainHook(warmup=0)


def _runner(model, wrapper, schedulers=()):
    return SimpleNamespace(model=model, optim_wrapper=wrapper,
                           param_schedulers=list(schedulers),
                           logger=SimpleNamespace(info=lambda msg: None))


def test_hook_refuses_what_it_cannot_capture(monkeypatch):
    model = _classifier(False)
    hook = PRETRAIN_HOOKS.build(dict(type='mmvmamba.CUDAGraphTrainHook'))
    assert type(hook) is CUDAGraphTrainHook
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='CUDA device'):
            hook.before_train(_runner(model, _wrapper(model)))
    # the remaining checks, as for a model on a GPU
    monkeypatch.setattr(graphed_train, '_on_cuda', lambda model: True)
    with pytest.raises(ValueError, match='capturable=True'):
        hook.before_train(_runner(model, _wrapper(model)))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for g in opt.param_groups:
        g['capturable'] = True
    wd = SimpleNamespace(param_name='weight_decay')
    with pytest.raises(ValueError, match=r"schedules \['weight_decay'\]"):
        hook.before_train(_runner(model, OptimWrapper(opt), [wd]))
    with monkeypatch.context() as m:  # a DistributedDataParallel model
        m.setattr(graphed_train, 'is_model_wrapper', lambda model: True)
        with pytest.raises(ValueError, match='one process'):
            hook.before_train(_runner(model, OptimWrapper(opt)))
    # accepted: the runner's model now steps through the graph
    runner = _runner(model, OptimWrapper(opt),
                     [SimpleNamespace(param_name='lr')])
    hook.before_train(runner)
    assert isinstance(model.train_step, GraphedTrainStep)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
@pytest.mark.parametrize('amp', [False, True])
def test_cuda_graph_step_trains_as_the_eager_step(amp, monkeypatch):
    """On a GPU, the real capture: six steps (two eager, one capture and
    replay, three replays) against mmengine's eager step. float32: the same
    weights to rounding (the eager step runs the capture's pair kernels,
    and cuDNN its deterministic algorithms: six AdamW steps at lr 1e-2 turn
    the atomics' run-to-run noise into 1e-4 differences); bf16 AMP (the
    eager step with its GradScaler, the graph without): the same losses to
    bf16 rounding."""
    from mmvmamba.kernels.ss2d import config
    monkeypatch.setattr(config, 'PAIR_MAX_BATCH', 1 << 30)
    monkeypatch.setattr(torch.backends.cudnn, 'deterministic', True)
    ref, model = _classifier(True).cuda(), _classifier(True).cuda()
    wrappers = []
    for m in (ref, model):
        opt = torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=.05,
                                capturable=True)
        kind = dict(dtype='bfloat16') if amp else {}
        wrap = AmpOptimWrapper if amp else OptimWrapper
        wrappers.append(wrap(optimizer=opt, clip_grad=dict(max_norm=0.5),
                             **kind))
    step = GraphedTrainStep(model, wrappers[1], model.train_step, warmup=2)
    tol = dict(rtol=5e-2, atol=1e-3) if amp else dict(rtol=1e-3, atol=1e-5)
    for i in range(6):
        for w in wrappers:
            for g in w.optimizer.param_groups:
                g['lr'] = 1e-2 * (0.7**i)
        outs = []
        for fn, w in ((ref.train_step, wrappers[0]), (step, wrappers[1])):
            torch.manual_seed(i)
            np.random.seed(i)
            outs.append(fn(_batch(i), w))
        for k in outs[0]:
            assert torch.allclose(outs[0][k].float(), outs[1][k].float(),
                                  **tol), (i, k)
    if not amp:
        for (name, a), b in zip(ref.named_parameters(), model.parameters()):
            assert torch.allclose(a, b, **tol), name
    assert step.replays == 4


def _train_with_runner(tmp_path, hook: bool):
    """Six iterations of an mmengine Runner (AdamW, clipping, a linear
    learning-rate warm-up by iteration) on fixed batches; the model."""
    from mmengine.dataset import pseudo_collate
    from mmengine.runner import Runner
    from torch.utils.data import DataLoader
    samples = []
    for i in range(6):
        b = _batch(i)
        samples += [dict(inputs=x, data_samples=d)
                    for x, d in zip(b['inputs'], b['data_samples'])]
    loader = DataLoader(samples, batch_size=4, shuffle=False,
                        collate_fn=pseudo_collate)
    model = _classifier(False)
    runner = Runner(
        model=model,
        work_dir=str(tmp_path / ('graph' if hook else 'eager')),
        train_dataloader=loader,
        train_cfg=dict(by_epoch=False, max_iters=6),
        optim_wrapper=dict(
            optimizer=dict(type='AdamW', lr=1e-2, weight_decay=.05,
                           foreach=False),
            clip_grad=dict(max_norm=0.5)),
        param_scheduler=[
            dict(type='LinearLR', start_factor=.1, by_epoch=False, begin=0,
                 end=6)
        ],
        custom_hooks=[dict(type='mmvmamba.CUDAGraphTrainHook', warmup=2)]
        if hook else None,
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1),
                           checkpoint=None),
        randomness=dict(seed=0),
        default_scope='mmpretrain',
        # its own MessageHub: two runners started within one second would
        # share the timestamped default name
        experiment_name=f'{tmp_path.name}-{"graph" if hook else "eager"}')
    runner.train()
    return model, runner


def test_runner_trains_through_the_hook(tmp_path, monkeypatch):
    """The hook in a real mmengine Runner (on a CPU: the device checks
    answered as on a GPU, the stand-in graph): the loop's steps go through
    the graph after the warm-up, the learning-rate schedule reaches the
    replays, and the weights end as without the hook."""
    monkeypatch.setattr(graphed_train, '_on_cuda', lambda model: True)
    monkeypatch.setattr(graphed_train, '_capturable', lambda opt: True)
    # on the CPU on every machine: on a GPU the two runs' scan atomics
    # differ from run to run, which six AdamW steps amplify past 1e-6
    import mmengine.runner.runner as runner_module
    monkeypatch.setattr(runner_module, 'get_device', lambda: 'cpu')

    class StandIn(GraphedTrainStep):

        def __init__(self, model, optim_wrapper, eager, warmup):
            super().__init__(
                model, optim_wrapper, eager, warmup,
                graph_factory=lambda: EagerGraph(model,
                                                 optim_wrapper.optimizer))

    monkeypatch.setattr(graphed_train, 'GraphedTrainStep', StandIn)
    ref, ref_runner = _train_with_runner(tmp_path, hook=False)
    model, runner = _train_with_runner(tmp_path, hook=True)
    assert isinstance(model.train_step, StandIn)
    assert model.train_step.replays == 4
    lr = runner.optim_wrapper.optimizer.param_groups[0]['lr']
    assert isinstance(lr, float) and lr == pytest.approx(1e-2)
    for (name, a), b in zip(ref.named_parameters(), model.parameters()):
        assert torch.allclose(a, b, atol=1e-6), name
    logged, ref_logged = (r.message_hub.get_scalar('train/loss').data[0]
                          for r in (runner, ref_runner))
    assert len(logged) == len(ref_logged) == 6
    assert np.allclose(logged, ref_logged, rtol=1e-5)
