"""Replay a module's inference forward from captured CUDA graphs.

At small batches VMamba's forward is launch-bound: a few hundred short kernels
whose CPU-side launch cost is larger than their GPU time. A CUDA graph
records them once and replays them with one launch. :class:`GraphCache`
captures one graph per input signature (shape, strides, dtype, device and
autocast state) once that signature has been seen ``capture_after`` times,
keeps the ``max_graphs`` most recently used ones and runs the eager forward
otherwise and whenever a graph cannot be used (CPU tensors, autograd
enabled). A stream of ever-new shapes (detection with free image sizes)
thus stays at eager speed instead of paying a capture per image.

Outputs are copied out of the graph's static buffers, so a later replay
never overwrites a result the caller still holds.
"""
import weakref
from collections import OrderedDict
from typing import Callable, List, Optional, Tuple

import torch
from torch import Tensor, nn


def _signature(x: Tensor) -> tuple:
    cuda_ac = torch.is_autocast_enabled('cuda')
    ac_dtype = torch.get_autocast_dtype('cuda') if cuda_ac else None
    return (tuple(x.shape), x.stride(), x.dtype, x.device, cuda_ac, ac_dtype)


def _static_runner(fn: Callable[[Tensor], Tuple[Tensor, ...]],
                   x: Tensor) -> Tuple[Tensor, Callable[[], tuple]]:
    """A static copy of ``x`` (its strides, dtype, device) and ``run()``:
    ``fn`` (or ``run(f)``: ``f``) on it under the caller's CUDA autocast
    state, the weight-cast cache off (it would hand the graph tensors that
    are freed when the caller's autocast region ends: cast inside the graph
    instead)."""
    static_in = torch.empty_strided(
        x.shape, x.stride(), dtype=x.dtype, device=x.device)
    static_in.copy_(x)
    ac = torch.is_autocast_enabled('cuda')
    ac_dtype = torch.get_autocast_dtype('cuda')

    def run(f: Callable[[Tensor], Tuple[Tensor, ...]] = fn
            ) -> Tuple[Tensor, ...]:
        with torch.autocast('cuda', dtype=ac_dtype, enabled=ac,
                            cache_enabled=False):
            return f(static_in)

    return static_in, run


def _warm_up(device: torch.device, times: int,
             step: Callable[[], object]) -> None:
    """``step`` run ``times`` on a side stream before a capture: compiles
    kernels and settles allocations."""
    stream = torch.cuda.Stream(device=device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(times):
            step()
    torch.cuda.current_stream(device).wait_stream(stream)


class _Graph:

    def __init__(self, fn: Callable[[Tensor], Tuple[Tensor, ...]], x: Tensor,
                 warmup: int) -> None:
        self.static_in, run = _static_runner(fn, x)
        _warm_up(x.device, warmup, run)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_out = run()

    def __call__(self, x: Tensor) -> Tuple[Tensor, ...]:
        self.static_in.copy_(x)
        self.graph.replay()
        return tuple(t.clone() for t in self.static_out)


class GraphCache:
    """Per-signature CUDA graphs of ``fn`` (a forward without autograd).

    Call it as ``cache(fn, x)`` with ``fn`` the eager forward (``Tensor ->
    tuple of Tensors``). Copies and pickles of a cache are empty (graphs
    belong to one module instance and one device).

    Args:
        max_graphs: graphs kept (least recently used ones are dropped).
        warmup: eager runs right before a capture.
        capture_after: calls with one signature before it is captured.
    """

    def __init__(self,
                 max_graphs: int = 4,
                 warmup: int = 1,
                 capture_after: int = 2) -> None:
        if not isinstance(max_graphs, int) or isinstance(
                max_graphs, bool) or max_graphs < 1:
            raise ValueError(f'max_graphs must be a positive int, got '
                             f'{max_graphs!r}')
        self.max_graphs = max_graphs
        self.warmup = warmup
        self.capture_after = capture_after
        self.graphs: 'OrderedDict[tuple, _Graph]' = OrderedDict()
        self.seen: dict = {}
        self.captures = 0

    @staticmethod
    def usable(x: Tensor) -> bool:
        return x.is_cuda and not torch.is_grad_enabled()

    def clear(self) -> None:
        self.graphs.clear()
        self.seen.clear()

    def __deepcopy__(self, memo) -> 'GraphCache':
        return GraphCache(**self.__getstate__())

    def __getstate__(self) -> dict:
        return dict(
            max_graphs=self.max_graphs,
            warmup=self.warmup,
            capture_after=self.capture_after)

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def _graph_for(self, key: tuple, capture: Callable[[], object]):
        """The graph kept for ``key``, or the one ``capture()`` makes at the
        key's ``capture_after``-th sighting (least recently used graphs
        beyond ``max_graphs`` dropped); None: run eagerly (also when
        ``capture`` returns None)."""
        graph = self.graphs.get(key)
        if graph is not None:
            self.graphs.move_to_end(key)
            return graph
        if len(self.seen) > 4096:
            self.seen.clear()
        self.seen[key] = self.seen.get(key, 0) + 1
        if self.seen[key] < self.capture_after:
            return None
        graph = capture()
        if graph is not None:
            self.captures += 1
            self.graphs[key] = graph
            while len(self.graphs) > self.max_graphs:
                self.graphs.popitem(last=False)
        return graph

    def __call__(self, fn: Callable[[Tensor], Tuple[Tensor, ...]],
                 x: Tensor) -> Tuple[Tensor, ...]:
        if not self.usable(x):
            return fn(x)
        graph = self._graph_for(_signature(x),
                                lambda: _Graph(fn, x, self.warmup))
        return fn(x) if graph is None else graph(x)


# --------------------------------------------------------------------------
# Training: the forward and the backward as two graphs


class _Bound(nn.Module):
    """``fn`` (a method of ``module``) as a module's forward, for
    ``torch.func.functional_call``."""

    def __init__(self, module: nn.Module,
                 fn: Callable[[Tensor], Tuple[Tensor, ...]]) -> None:
        super().__init__()
        self.m = module
        self.fn = fn

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        return self.fn(x)


def with_fresh_leaves(
    module: nn.Module, fn: Callable[[Tensor], Tuple[Tensor, ...]],
    params: List[Tensor]
) -> Tuple[Callable[[Tensor], Tuple[Tensor, ...]], List[Tensor]]:
    """``fn`` (a forward of ``module``) with ``params`` replaced by fresh
    leaf tensors sharing their storage, and those leaves.

    Autograd runs a leaf's gradient node on the stream that was current when
    the node was made, and a parameter keeps its node while any graph
    reaches it: a loop that keeps the last step's ``loss`` until the next
    forward (most do) keeps nodes made on the default stream, and a backward
    captured through them makes that stream wait on the capturing one
    (``cudaErrorStreamCaptureImplicit``: the first captures on an H100,
    2026-12-05). Fresh leaves get their nodes inside the capture; sharing
    storage, they read the parameters' current values at every replay (the
    optimizer updates them in place)."""
    names = {id(p): n for n, p in module.named_parameters()}
    leaves = [p.detach().requires_grad_() for p in params]
    swap = {f'm.{names[id(p)]}': t for p, t in zip(params, leaves)}
    bound = _Bound(module, fn)
    return (lambda x: torch.func.functional_call(bound, swap, (x, ))), leaves


class _TrainGraph:
    """A training forward (``fn``: Tensor -> tuple of Tensors, a method of
    ``module``) and its backward to ``params`` (and to the input, when it
    requires grad) captured as two CUDA graphs sharing one memory pool,
    through fresh leaves in the parameters' place
    (:func:`with_fresh_leaves`). The parameters' gradients land in one flat
    buffer, handed out per backward as views of a fresh copy
    (AccumulateGrad may keep them; a later replay never writes into a
    gradient the caller holds)."""

    def __init__(self, fn: Callable[[Tensor], Tuple[Tensor, ...]],
                 module: nn.Module, params: List[Tensor], x: Tensor,
                 warmup: int) -> None:
        self.params = params
        self.static_in, run = _static_runner(fn, x)
        self.static_in.requires_grad_(x.requires_grad)
        extra = [self.static_in] if x.requires_grad else []
        dev = x.device

        def step() -> None:
            outs = run()
            torch.autograd.grad(outs, params + extra,
                                [torch.ones_like(o) for o in outs],
                                allow_unused=True)

        _warm_up(dev, warmup, step)
        captured, leaves = with_fresh_leaves(module, fn, params)
        wrt = leaves + extra
        pool = torch.cuda.graph_pool_handle()
        self.fwd = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.fwd, pool=pool):
            self.static_out = run(captured)
        self.static_gout = [torch.empty_like(o) for o in self.static_out]
        self.sizes = [p.numel() for p in params]
        self.flat = torch.zeros(
            sum(self.sizes), dtype=params[0].dtype, device=dev)
        views = [v.view_as(p) for v, p in zip(self.flat.split(self.sizes),
                                              params)]
        self.bwd = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.bwd, pool=pool):
            grads = torch.autograd.grad(
                self.static_out, wrt, self.static_gout, allow_unused=True)
            used = [(v, g) for v, g in zip(views, grads) if g is not None]
            if used:
                torch._foreach_copy_([v for v, _ in used],
                                     [g for _, g in used])
            self.static_gin = grads[len(params)] if x.requires_grad else None
        #: params the forward does not reach get no gradient, as in eager
        self.used = [g is not None for g in grads[:len(params)]]
        self.generation = 0
        self.pending: Optional[weakref.ref] = None

    def busy(self) -> bool:
        """A replay's backward is still to come: another replay would
        overwrite the activations it needs."""
        return self.pending is not None and self.pending() is not None


class _Replay(torch.autograd.Function):

    @staticmethod
    def forward(ctx, graph: _TrainGraph, x: Tensor, *params: Tensor):
        graph.static_in.detach().copy_(x)
        graph.fwd.replay()
        graph.generation += 1
        ctx.graph, ctx.generation = graph, graph.generation
        graph.pending = weakref.ref(ctx)
        return tuple(o.detach().clone() for o in graph.static_out)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *gouts: Tensor):
        graph = ctx.graph
        if ctx.generation != graph.generation:
            raise RuntimeError(
                'the backbone training graph was replayed again before the '
                'backward of an earlier replay (a retained graph '
                'back-propagated after another forward); its activations '
                'are gone. Build the backbone with cuda_graph_train=False '
                'for this training loop.')
        graph.pending = None
        for s, g in zip(graph.static_gout, gouts):
            if g is None:
                s.zero_()
            else:
                s.copy_(g)
        graph.bwd.replay()
        flat = graph.flat.clone()
        grads = [
            v.view_as(p) if used else None for v, p, used in zip(
                flat.split(graph.sizes), graph.params, graph.used)
        ]
        gin = graph.static_gin
        return (None, None if gin is None else gin.clone(), *grads)


def _train_signature(x: Tensor, params: List[Tensor]) -> tuple:
    return _signature(x) + (x.requires_grad, tuple(p.requires_grad
                                                   for p in params))


class TrainGraphCache(GraphCache):
    """Per-signature CUDA graphs of a module's training forward and
    backward (``cache(fn, x, module)``), run by an autograd function:
    the eager step's per-op host work (Python, dispatch, launches) is
    replaced by two graph launches. The signature adds the input's and the
    parameters' ``requires_grad`` to the inference one. It runs the eager
    forward when a graph cannot serve: CPU input, autograd off, nothing
    requiring a gradient, parameters of several dtypes or devices, and
    while an earlier replay waits for its backward (e.g. two forwards
    before one backward); a graph whose parameters got new storage is
    dropped. Each graph keeps its activations in its own memory pool
    between steps.
    """

    @staticmethod
    def usable(x: Tensor) -> bool:
        return x.is_cuda and torch.is_grad_enabled()

    def __deepcopy__(self, memo) -> 'TrainGraphCache':
        return TrainGraphCache(**self.__getstate__())

    def _capture(self, fn: Callable[[Tensor], Tuple[Tensor, ...]], x: Tensor,
                 module: nn.Module,
                 every: List[Tensor]) -> Optional[_TrainGraph]:
        params = [p for p in every if p.requires_grad]
        if not params or len({(p.dtype, p.device) for p in params}) > 1:
            return None
        graph = _TrainGraph(fn, module, params, x, self.warmup)
        graph.ptrs = [p.data_ptr() for p in params]
        return graph

    def __call__(self, fn: Callable[[Tensor], Tuple[Tensor, ...]],
                 x: Tensor, module: nn.Module) -> Tuple[Tensor, ...]:
        if not self.usable(x):
            return fn(x)
        every = list(module.parameters())
        key = _train_signature(x, every)
        kept = self.graphs.get(key)
        if kept is not None and [p.data_ptr()
                                 for p in kept.params] != kept.ptrs:
            # parameters given new storage (``p.data = ...``, a load with
            # ``assign=True``): the graphs read the old one
            del self.graphs[key]
            self.seen.pop(key, None)
            return fn(x)
        graph = self._graph_for(key,
                                lambda: self._capture(fn, x, module, every))
        if graph is None or graph.busy():
            return fn(x)
        return _Replay.apply(graph, x, *graph.params)
