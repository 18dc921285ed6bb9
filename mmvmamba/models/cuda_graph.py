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
from collections import OrderedDict
from typing import Callable, Tuple

import torch
from torch import Tensor


def _signature(x: Tensor) -> tuple:
    cuda_ac = torch.is_autocast_enabled('cuda')
    ac_dtype = torch.get_autocast_dtype('cuda') if cuda_ac else None
    return (tuple(x.shape), x.stride(), x.dtype, x.device, cuda_ac, ac_dtype)


class _Graph:

    def __init__(self, fn: Callable[[Tensor], Tuple[Tensor, ...]], x: Tensor,
                 warmup: int) -> None:
        self.static_in = torch.empty_strided(
            x.shape, x.stride(), dtype=x.dtype, device=x.device)
        self.static_in.copy_(x)
        ac = torch.is_autocast_enabled('cuda')
        ac_dtype = torch.get_autocast_dtype('cuda')

        def run() -> Tuple[Tensor, ...]:
            # The autocast weight-cast cache would hand the graph tensors
            # that are freed when the caller's autocast region ends: cast
            # inside the graph instead.
            with torch.autocast('cuda', dtype=ac_dtype, enabled=ac,
                                cache_enabled=False):
                return fn(self.static_in)

        stream = torch.cuda.Stream(device=x.device)
        stream.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(stream):
            for _ in range(warmup):  # compiles kernels, settles allocations
                run()
        torch.cuda.current_stream(x.device).wait_stream(stream)
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

    def __call__(self, fn: Callable[[Tensor], Tuple[Tensor, ...]],
                 x: Tensor) -> Tuple[Tensor, ...]:
        if not self.usable(x):
            return fn(x)
        key = _signature(x)
        graph = self.graphs.get(key)
        if graph is None:
            if len(self.seen) > 4096:
                self.seen.clear()
            self.seen[key] = self.seen.get(key, 0) + 1
            if self.seen[key] < self.capture_after:
                return fn(x)
            graph = _Graph(fn, x, self.warmup)
            self.captures += 1
            self.graphs[key] = graph
            while len(self.graphs) > self.max_graphs:
                self.graphs.popitem(last=False)
        else:
            self.graphs.move_to_end(key)
        return graph(x)
