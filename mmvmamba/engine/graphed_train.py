"""An mmengine training step replayed from a CUDA graph.

A VMamba training step in eager mode waits for the host: hundreds of Python
op calls and kernel launches per step (H200, VMamba-T, batch 128: the GPU is
busy 69 of 145 ms). Captured once in a CUDA graph and replayed, the step has
no host work left, and VMamba-T trains faster than Swin-T (the same capture
in ``bench_models.py --graph-train``: 2316 against 2156 img/s, bf16, one
run; docs/benchmarks.md). This module brings that step to an mmengine
classification recipe:

    custom_hooks = [dict(type='mmvmamba.CUDAGraphTrainHook')]
    optim_wrapper = dict(type='AmpOptimWrapper', dtype='bfloat16',
                         optimizer=dict(capturable=True))

What runs where. The data preprocessor (copies to the GPU, normalisation,
Mixup/CutMix) runs eagerly every step. Its outputs are copied into static
buffers: the image batch, and each tensor field of the data samples
(``gt_label``, ``gt_score``), which the captured samples hold as views of
those buffers, so the head's loss reads the new labels on every replay. The
graph holds the forward, the loss, the backward, gradient clipping (the
wrapper's ``clip_grad``) and the optimizer step. Learning rates live in
static tensors while captured; before each replay they are filled from the
param groups, so mmengine's parameter schedulers keep working.

Limits, each refused with a message at the start of training: a CUDA device,
one process (no distributed wrapper), an optimizer built with
``capturable=True``, no gradient accumulation, no float16 (its GradScaler's
overflow check waits for the GPU: use bfloat16), schedulers of the learning
rate only. A batch whose shapes differ from the captured ones (the last,
smaller batch of an epoch without ``drop_last``) runs the eager step
instead.
"""
from contextlib import nullcontext
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from torch import Tensor

from mmvmamba.registry import HOOKS

__all__ = ['CUDAGraph', 'GraphedTrainStep', 'CUDAGraphTrainHook']


class CUDAGraph:
    """One captured callable: ``warm(fn)`` runs ``fn`` eagerly on the
    capture stream, ``capture(fn)`` records it (nothing executes) and returns
    its outputs, whose memory every ``replay()`` refills."""

    def __init__(self) -> None:
        self.stream = torch.cuda.Stream()
        self.graph = torch.cuda.CUDAGraph()

    def warm(self, fn: Callable[[], Any]) -> Any:
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            out = fn()
        torch.cuda.current_stream().wait_stream(self.stream)
        return out

    def capture(self, fn: Callable[[], Any]) -> Any:
        torch.cuda.synchronize()
        with torch.cuda.graph(self.graph, stream=self.stream):
            out = fn()
        return out

    def replay(self) -> None:
        self.graph.replay()


def check_optim_wrapper(optim_wrapper: OptimWrapper) -> None:
    """Raise ValueError if the step of ``optim_wrapper`` cannot be captured.
    """
    name = type(optim_wrapper).__name__
    if type(optim_wrapper) not in (OptimWrapper, AmpOptimWrapper):
        raise ValueError(
            f'CUDAGraphTrainHook supports OptimWrapper and AmpOptimWrapper, '
            f'got {name}')
    if optim_wrapper._accumulative_counts != 1:
        raise ValueError(
            'CUDAGraphTrainHook: gradient accumulation (accumulative_counts='
            f'{optim_wrapper._accumulative_counts}) is not supported; set '
            'optim_wrapper.accumulative_counts=1')
    if (isinstance(optim_wrapper, AmpOptimWrapper)
            and optim_wrapper.cast_dtype in (None, torch.float16)):
        raise ValueError(
            'CUDAGraphTrainHook: float16 AMP needs a GradScaler, whose '
            'overflow check waits for the GPU and cannot be captured; set '
            "optim_wrapper.dtype='bfloat16'")


def _sample_fields(samples: List) -> Dict[str, Tuple]:
    """{name: (shape, dtype)} of the tensor data fields every sample has."""
    if not samples:
        return {}
    fields = {}
    for name in samples[0].keys():
        v = getattr(samples[0], name)
        if not isinstance(v, Tensor):
            continue
        same = all(
            isinstance(getattr(s, name, None), Tensor)
            and getattr(s, name).shape == v.shape
            and getattr(s, name).dtype == v.dtype for s in samples)
        if same:
            fields[name] = (tuple(v.shape), v.dtype)
    return fields


class GraphedTrainStep:
    """``model.train_step(data, optim_wrapper)``, replayed from a graph.

    ``warmup`` eager steps first (on the capture stream: kernels compile,
    the optimizer state appears), then one capture, then replays. Any batch
    whose key (input shape and dtype, the samples' tensor fields) differs
    from the captured one runs ``eager_step``. ``graph_factory`` makes the
    graph (:class:`CUDAGraph`; the tests pass a stand-in).
    """

    def __init__(self,
                 model: torch.nn.Module,
                 optim_wrapper: OptimWrapper,
                 eager_step: Callable,
                 warmup: int = 3,
                 graph_factory: Callable[[], Any] = CUDAGraph) -> None:
        check_optim_wrapper(optim_wrapper)
        self.model = model
        self.optim_wrapper = optim_wrapper
        self.eager_step = eager_step
        self.warmup = warmup
        self.graph_factory = graph_factory
        self.graph = None
        self.outputs = None
        self.key = None
        self.steps = 0
        self.replays = 0

    # -- the parts of one step ------------------------------------------
    def _preprocess(self, data) -> Tuple[Tensor, List]:
        with self.optim_wrapper.optim_context(self.model):
            data = self.model.data_preprocessor(data, True)
        if not isinstance(data, dict) or not isinstance(
                data.get('inputs'), Tensor):
            raise ValueError(
                'CUDAGraphTrainHook needs a data preprocessor that returns '
                "dict(inputs=<one batch tensor>, data_samples=[...]) "
                '(classification); got '
                f'{type(data).__name__}')
        return data['inputs'], list(data.get('data_samples') or [])

    def _key(self, inputs: Tensor, samples: List) -> Tuple:
        fields = _sample_fields(samples)
        return (tuple(inputs.shape), inputs.dtype, len(samples),
                tuple(sorted((k, v) for k, v in fields.items())))

    def _body(self) -> Tuple[Tensor, Dict[str, Tensor], Optional[Tensor]]:
        """Forward, loss, backward, clipping and the optimizer step on the
        static buffers, the learning rates read from the static tensors."""
        opt = self.optim_wrapper.optimizer
        floats = [g['lr'] for g in opt.param_groups]
        for g, lr in zip(opt.param_groups, self.lrs):
            g['lr'] = lr
        try:
            with self._autocast():
                losses = self.model._run_forward(
                    dict(inputs=self.inputs, data_samples=self.samples),
                    mode='loss')
            loss, log_vars = self.model.parse_losses(losses)
            loss.backward()
            norm = None
            clip = self.optim_wrapper.clip_grad_kwargs
            if clip:  # the wrapper's clip function (norm or value)
                params = [
                    p for g in opt.param_groups for p in g['params']
                    if p.requires_grad and p.grad is not None
                ]
                norm = self.optim_wrapper.clip_func(params, **clip)
            opt.step()
        finally:
            for g, lr in zip(opt.param_groups, floats):
                g['lr'] = lr
        return loss, log_vars, norm

    def _autocast(self):
        """The wrapper's autocast without its weight-cast cache: a cache
        would keep casts from before the capture (the CUDA-graph notes of
        PyTorch ask for ``cache_enabled=False``)."""
        if isinstance(self.optim_wrapper, AmpOptimWrapper):
            return torch.autocast(
                self.inputs.device.type,
                dtype=self.optim_wrapper.cast_dtype,
                cache_enabled=False)
        return nullcontext()

    def _capture(self, inputs: Tensor, samples: List) -> None:
        opt = self.optim_wrapper.optimizer
        dev = inputs.device
        self.inputs = inputs.clone()
        self.fields = _sample_fields(samples)
        self.buffers = {
            name: torch.stack([getattr(s, name) for s in samples])
            for name in self.fields
        }
        self.samples = []
        for i, s in enumerate(samples):
            s = s.clone()
            for name, buf in self.buffers.items():
                setattr(s, name, buf[i])
            self.samples.append(s)
        self.lrs = [
            torch.tensor(float(g['lr']), dtype=torch.float32, device=dev)
            for g in opt.param_groups
        ]
        # gradients allocated by the captured backward (not accumulated)
        opt.zero_grad(set_to_none=True)
        self.outputs = self._graph().capture(self._body)

    def _load(self, inputs: Tensor, samples: List) -> None:
        self.inputs.copy_(inputs)
        for name, buf in self.buffers.items():
            buf.copy_(torch.stack([getattr(s, name) for s in samples]))
        for lr, g in zip(self.lrs, self.optim_wrapper.optimizer.param_groups):
            lr.fill_(float(g['lr']))

    # -- the step -----------------------------------------------------------
    def __call__(self, data, optim_wrapper: OptimWrapper = None):
        if optim_wrapper is not None and optim_wrapper is not \
                self.optim_wrapper:
            raise ValueError('CUDAGraphTrainHook: train_step called with '
                             'another optim_wrapper than the runner\'s')
        self.steps += 1
        if self.steps <= self.warmup:  # on the stream of the capture
            return self._graph().warm(
                lambda: self.eager_step(data, self.optim_wrapper))
        inputs, samples = self._preprocess(data)
        key = self._key(inputs, samples)
        if self.outputs is None:
            self.key = key
            self._capture(inputs, samples)
        elif key != self.key:
            return self._eager_on(inputs, samples)
        self._load(inputs, samples)
        self.graph.replay()
        self.replays += 1
        self.optim_wrapper._inner_count += 1
        loss, log_vars, norm = self.outputs
        if norm is not None:
            self.optim_wrapper.message_hub.update_scalar(
                f'train/{self.optim_wrapper.grad_name}', float(norm))
        return {k: v.detach().clone() for k, v in log_vars.items()}

    def _graph(self):
        if self.graph is None:
            self.graph = self.graph_factory()
        return self.graph

    def _eager_on(self, inputs: Tensor, samples: List):
        """The step eagerly on preprocessed data (a batch of other shapes);
        the captured gradients stay the graph's."""
        opt = self.optim_wrapper.optimizer
        opt.zero_grad(set_to_none=True)
        with self.optim_wrapper.optim_context(self.model):
            losses = self.model._run_forward(
                dict(inputs=inputs, data_samples=samples), mode='loss')
        loss, log_vars = self.model.parse_losses(losses)
        self.optim_wrapper.update_params(loss)
        return log_vars


def _capturable(optimizer: torch.optim.Optimizer) -> bool:
    return all(g.get('capturable', False) for g in optimizer.param_groups)


def _on_cuda(model: torch.nn.Module) -> bool:
    return torch.cuda.is_available() and any(p.is_cuda
                                             for p in model.parameters())


@HOOKS.register_module()
class CUDAGraphTrainHook(Hook):
    """Replace the runner's training step by :class:`GraphedTrainStep`
    (``custom_hooks = [dict(type='mmvmamba.CUDAGraphTrainHook')]``).

    Args:
        warmup (int): eager steps before the capture. Default 3.
    """

    priority = 'LOWEST'

    def __init__(self, warmup: int = 3) -> None:
        if warmup < 1:
            raise ValueError(f'warmup must be at least 1, got {warmup}')
        self.warmup = warmup

    def before_train(self, runner) -> None:
        model = runner.model
        if is_model_wrapper(model):
            raise ValueError(
                'CUDAGraphTrainHook runs one process on one GPU; the model '
                f'is wrapped in {type(model).__name__} (distributed '
                'training): remove the hook or launch one process')
        if not _on_cuda(model):
            raise ValueError('CUDAGraphTrainHook needs the model on a CUDA '
                             'device')
        optim_wrapper = runner.optim_wrapper
        if not isinstance(optim_wrapper, OptimWrapper):
            raise ValueError('CUDAGraphTrainHook supports one optimizer '
                             f'(OptimWrapper), got '
                             f'{type(optim_wrapper).__name__}')
        opt = optim_wrapper.optimizer
        if not _capturable(opt):
            raise ValueError(
                'CUDAGraphTrainHook needs an optimizer built with '
                f'capturable=True ({type(opt).__name__}): set '
                'optim_wrapper.optimizer.capturable=True (Adam, AdamW)')
        schedulers = runner.param_schedulers or []
        if isinstance(schedulers, dict):
            schedulers = [s for v in schedulers.values() for s in v]
        other = sorted({
            s.param_name
            for s in schedulers if getattr(s, 'param_name', 'lr') != 'lr'
        })
        if other:
            raise ValueError(
                'CUDAGraphTrainHook follows schedules of the learning rate '
                f'only; the config also schedules {other}')
        eager = model.train_step
        # checks the optim wrapper (check_optim_wrapper)
        model.train_step = GraphedTrainStep(model, optim_wrapper, eager,
                                            self.warmup)
        runner.logger.info(
            f'CUDAGraphTrainHook: the training step is captured in a CUDA '
            f'graph after {self.warmup} eager steps')
