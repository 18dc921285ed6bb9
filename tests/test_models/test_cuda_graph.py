"""VMamba(cuda_graph=...): graphs replay the eager forward exactly.

The CPU tests check the option's validation and that everything a graph
cannot serve (CPU tensors, training, autograd) runs the eager forward; the
GPU test (H200 run) checks replayed outputs against eager ones, per-shape
capture, least-recently-used eviction and autocast.
"""
import copy
import pickle

import pytest
import torch

from mmvmamba.models import VMamba
from mmvmamba.models.cuda_graph import (GraphCache, _TrainGraph,
                                        with_fresh_leaves)

from .._classifier import tiny_classifier

TINY = dict(dims=16, depths=(1, 1, 1, 1))


@pytest.mark.parametrize('bad', [0, -1, 2.5, 'yes'])
def test_cuda_graph_option_rejects_bad_values(bad):
    with pytest.raises(ValueError, match='cuda_graph must be'):
        VMamba(**TINY, cuda_graph=bad)
    with pytest.raises(ValueError, match='max_graphs must be'):
        GraphCache(max_graphs=True)


def test_cuda_graph_falls_back_to_eager_on_cpu():
    torch.manual_seed(0)
    plain = VMamba(**TINY, backend='torch').eval()
    graphed = VMamba(**TINY, backend='torch', cuda_graph=2).eval()
    graphed.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref, out = plain(x), graphed(x)
    assert len(ref) == len(out) == 4
    for a, b in zip(ref, out):
        assert torch.equal(a, b)
    assert graphed._graphs.captures == 0 and not graphed._graphs.graphs
    # copies (EMA hooks deep-copy the model) and pickles carry no graphs
    dup = copy.deepcopy(graphed)
    assert dup._graphs is not graphed._graphs
    assert dup._graphs.max_graphs == 2
    assert pickle.loads(pickle.dumps(graphed._graphs)).max_graphs == 2


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason='needs a CUDA GPU (H200 run)')
def test_cuda_graph_replays_eager_outputs_on_gpu():
    torch.manual_seed(0)
    model = VMamba(arch='tiny', cuda_graph=2).cuda().eval()
    x = torch.randn(1, 3, 64, 96, device='cuda')
    with torch.no_grad():
        model(x)  # a first sighting runs eagerly ...
        assert model._graphs.captures == 0
        model(x)  # ... the second captures
        assert model._graphs.captures == 1
    model._graphs.clear()
    model._graphs.captures = 0
    model._graphs.capture_after = 1
    shapes = [(1, 3, 224, 224), (1, 3, 160, 256), (2, 3, 96, 128)]
    xs = [torch.randn(s, device='cuda') for s in shapes]
    with torch.no_grad():
        for x in xs + xs[:1]:
            model._graphs, graphs = None, model._graphs
            ref = model(x)
            model._graphs = graphs
            out = model(x)
            kept = [t.clone() for t in out]
            out2 = model(x)  # a replay does not overwrite earlier results
            for a, b, c, k in zip(ref, out, out2, kept):
                assert a.shape == b.shape == c.shape
                # the scan adds its four directions with atomics: replays
                # agree with the eager run to rounding, not bit for bit
                for o in (b, c):
                    assert (a - o).abs().max() <= 1e-4 * a.abs().max()
                assert torch.equal(b, k)
        # three shapes through a cache of two: the first was evicted and
        # captured again
        assert model._graphs.captures == 4
        assert len(model._graphs.graphs) == 2
        with torch.autocast('cuda', dtype=torch.float16):
            out = model(xs[0])
            ref = model._forward(xs[0])
        for a, b in zip(ref, out):
            assert (a.float() - b.float()).abs().max() <= 2e-2 * a.abs().max()
    # training and autograd run eagerly
    model.train()
    feats = model(xs[0])
    assert feats[0].requires_grad and model._graphs.captures == 5


# --------------------------------------------------------------------------
# cuda_graph_train: the training forward and backward from two graphs


@pytest.mark.parametrize('bad', [0, -1, 2.5, 'yes'])
def test_cuda_graph_train_option_rejects_bad_values(bad):
    with pytest.raises(ValueError, match='cuda_graph_train must be'):
        VMamba(**TINY, cuda_graph_train=bad)


def _replay_stand_in(fn, module, params, x, warmup):
    """A _TrainGraph whose two 'graphs' run the forward (through the fresh
    leaves a capture uses) and the backward eagerly into the same static
    buffers (CUDA graphs need a GPU): the contract the autograd function
    and the cache rely on."""
    g = _TrainGraph.__new__(_TrainGraph)
    g.params = params
    g.static_in = x.detach().clone().requires_grad_(x.requires_grad)
    captured, leaves = with_fresh_leaves(module, fn, params)
    wrt = leaves + ([g.static_in] if x.requires_grad else [])
    live = {}
    g.static_out = [o.detach().clone() for o in fn(g.static_in)]
    g.static_gout = [torch.empty_like(o) for o in g.static_out]
    g.sizes = [p.numel() for p in params]
    g.flat = torch.zeros(sum(g.sizes), dtype=params[0].dtype)
    g.static_gin = torch.zeros_like(x) if x.requires_grad else None

    class Fwd:

        def replay(self):
            with torch.enable_grad():
                live['outs'] = captured(g.static_in)
            for s, o in zip(g.static_out, live['outs']):
                s.copy_(o.detach())

    class Bwd:

        def replay(self):
            grads = torch.autograd.grad(live['outs'], wrt, g.static_gout,
                                        allow_unused=True)
            for v, gr in zip(g.flat.split(g.sizes), grads):
                if gr is not None:
                    v.copy_(gr.flatten())
            if g.static_gin is not None:
                g.static_gin.copy_(grads[-1])

    g.fwd, g.bwd = Fwd(), Bwd()
    with torch.enable_grad():
        outs = captured(g.static_in)
        g.used = [
            gr is not None for gr in torch.autograd.grad(
                outs, leaves, [torch.ones_like(o) for o in outs],
                allow_unused=True)
        ]
    g.generation, g.pending = 0, None
    return g


def _leaf_nodes(t):
    """The tensors of the AccumulateGrad nodes t's graph reaches."""
    seen, todo, found = set(), [t.grad_fn], []
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if hasattr(fn, 'variable'):
            found.append(fn.variable)
        todo.extend(f for f, _ in fn.next_functions)
    return found


def test_fresh_leaves_share_storage_and_keep_old_graphs_out():
    """What a capture runs instead of the forward: the parameters' values
    (in-place updates included) through leaves of their own, so a graph
    the caller still holds (last step's loss) is not reached; gradients
    equal to the parameters' own."""
    torch.manual_seed(0)
    model = VMamba(**TINY, backend='torch', out_indices=(0, ),
                   drop_path_rate=0.).train()
    x = torch.randn(1, 3, 32, 32)
    kept = model(x)[0].sum()  # a loop's last loss, still alive
    params = [p for p in model.parameters() if p.requires_grad]
    run, leaves = with_fresh_leaves(model, model._forward, params)
    assert [t.data_ptr() for t in leaves] == [p.data_ptr() for p in params]
    assert all(t.is_leaf and t.requires_grad for t in leaves)
    out = run(x)[0]
    reached = _leaf_nodes(out.sum())
    assert reached and not any(
        any(r is p for p in params) for r in reached)
    assert any(r is p for r in _leaf_nodes(kept) for p in params)
    got = torch.autograd.grad(out.sum(), leaves, allow_unused=True)
    want = torch.autograd.grad(
        model._forward(x)[0].sum(), params, allow_unused=True)
    for a, b in zip(got, want):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b)
    with torch.no_grad():
        params[0].add_(1.)  # an optimizer's in-place step
    torch.testing.assert_close(run(x)[0], model._forward(x)[0])


@pytest.fixture
def train_graphs_on_cpu(monkeypatch):
    from mmvmamba.models import cuda_graph as cg
    monkeypatch.setattr(cg.TrainGraphCache, 'usable',
                        staticmethod(lambda x: torch.is_grad_enabled()))
    monkeypatch.setattr(cg, '_TrainGraph', _replay_stand_in)


def test_train_graph_gradients_match_eager(train_graphs_on_cpu):
    """Through the replay function: the same outputs and gradients as the
    eager backbone, unused parameters (stages after the last output index)
    without a gradient, capture at the second sighting, and two forwards
    before one backward run the second eagerly."""
    torch.manual_seed(0)
    kw = dict(TINY, backend='torch', out_indices=(1, ), drop_path_rate=0.)
    eager = VMamba(**kw).train()
    graphed = VMamba(**kw, cuda_graph_train=True).train()
    graphed.load_state_dict(eager.state_dict())
    cache = graphed._train_graphs
    x = torch.randn(2, 3, 32, 32)
    for step in range(3):
        outs = []
        for model in (eager, graphed):
            model.zero_grad(set_to_none=True)
            out = model(x)
            (out[0]**2).mean().backward()
            outs.append(out[0])
        assert cache.captures == (0 if step == 0 else 1)
        torch.testing.assert_close(outs[0], outs[1])
        for (name, a), b in zip(eager.named_parameters(),
                                graphed.parameters()):
            if a.grad is None:  # after stage 2's output: never reached
                assert b.grad is None, name
                assert name.startswith(
                    ('layers.1.downsample', 'layers.2', 'layers.3')), name
            else:
                torch.testing.assert_close(a.grad, b.grad, msg=name)
    graph = next(iter(cache.graphs.values()))
    first = graphed(x)  # a replay waiting for its backward ...
    assert graph.busy()
    second = graphed(x)  # ... so this one runs eagerly
    assert graph.generation == 3
    (first[0].sum() + second[0].sum()).backward()
    assert not graph.busy()


def test_train_graph_dropped_when_parameters_get_new_storage(
        train_graphs_on_cpu):
    torch.manual_seed(0)
    model = VMamba(**TINY, backend='torch', out_indices=(0, ),
                   cuda_graph_train=True).train()
    x = torch.randn(1, 3, 32, 32)
    for _ in range(2):
        model(x)[0].sum().backward()
    cache = model._train_graphs
    assert cache.captures == 1 and len(cache.graphs) == 1
    p = next(model.parameters())
    p.data = p.data.clone()  # e.g. a load with assign=True
    ref = model._forward(x)[0]
    out = model(x)[0]  # eager, the graph dropped
    assert not cache.graphs and torch.equal(out, ref)
    model(x)
    model(x)  # seen twice again: captured on the new storage
    assert cache.captures == 2 and len(cache.graphs) == 1


def test_train_graph_refuses_a_backward_after_another_replay(
        train_graphs_on_cpu):
    torch.manual_seed(0)
    model = VMamba(**TINY, backend='torch', out_indices=(0, ),
                   cuda_graph_train=2).train()
    x = torch.randn(1, 3, 32, 32)
    model(x)[0].sum().backward()  # first sighting: eager
    out = model(x)[0].sum()  # captured and replayed
    out.backward(retain_graph=True)
    model(x)[0].sum().backward()  # a second replay
    with pytest.raises(RuntimeError, match='replayed again before'):
        out.backward()


def test_train_graphs_skip_cpu_no_grad_and_checkpointing():
    torch.manual_seed(0)
    model = VMamba(**TINY, backend='torch', cuda_graph_train=True).train()
    x = torch.randn(1, 3, 32, 32)
    for _ in range(3):
        model(x)
        with torch.no_grad():
            model(x)
    assert model._train_graphs.captures == 0
    assert copy.deepcopy(model)._train_graphs.max_graphs == 1


def test_compiled_model_bypasses_its_graphs(monkeypatch):
    """Under torch.compile the backbone runs its plain forward: the graph
    caches (eager mode's) are not consulted, so dynamo neither traces their
    bookkeeping nor recompiles on it (on a GPU a compiled VMamba with
    cuda_graph_train hit the recompile limit); eager calls still consult
    them."""
    from mmvmamba.models import cuda_graph
    calls = []

    def usable(x):
        if torch.compiler.is_compiling():
            raise AssertionError('graph cache consulted under compile')
        calls.append(x.shape)
        return False

    for cache in (cuda_graph.GraphCache, cuda_graph.TrainGraphCache):
        monkeypatch.setattr(cache, 'usable', staticmethod(usable))
    torch.manual_seed(0)
    model = VMamba(**TINY, backend='torch', cuda_graph=True,
                   cuda_graph_train=True)
    x = torch.randn(1, 3, 32, 32)
    compiled = torch.compile(model, backend='eager', fullgraph=True)
    for train in (True, False):
        model.train(train)
        with torch.set_grad_enabled(train):
            torch.manual_seed(1)  # the same drop path in both
            outs = compiled(x)
            torch.manual_seed(1)
            for out, ref in zip(outs, model._forward(x)):
                torch.testing.assert_close(out, ref)
        assert calls == []
    model(x)  # eager: the cache decides
    assert calls == [x.shape]


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason='needs a CUDA GPU (H200 run)')
@pytest.mark.parametrize('amp', [False, True])
@pytest.mark.parametrize('cudnn_deterministic', [True, False])
def test_train_graph_trains_as_eager_on_gpu(amp, cudnn_deterministic,
                                            monkeypatch):
    """Real capture: AdamW steps from the graphs end with the weights of
    the same steps run eagerly (the eager run takes the capture's pair
    kernels); fp16 AMP with a GradScaler; cuDNN deterministic (as
    mmengine's ``randomness=dict(deterministic=True)`` sets it) or not."""
    from mmvmamba.kernels.ss2d import config
    monkeypatch.setattr(config, 'PAIR_MAX_BATCH', 64)
    monkeypatch.setattr(torch.backends.cudnn, 'deterministic',
                        cudnn_deterministic)
    torch.manual_seed(0)
    kw = dict(arch='tiny', depths=(1, 1, 2, 1), drop_path_rate=0.)
    eager = VMamba(**kw).cuda().train()
    graphed = VMamba(**kw, cuda_graph_train=True).cuda().train()
    graphed.load_state_dict(eager.state_dict())
    x = torch.randn(2, 3, 64, 96, device='cuda')
    runs = []
    for model in (eager, graphed):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        scaler = torch.amp.GradScaler('cuda', enabled=amp)
        for _ in range(4):
            opt.zero_grad(set_to_none=True)
            with torch.autocast('cuda', dtype=torch.float16, enabled=amp):
                loss = sum((o.float()**2).mean() for o in model(x))
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        runs.append(model)
    assert graphed._train_graphs.captures == 1
    for (name, a), b in zip(eager.named_parameters(),
                            graphed.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_train_graph_in_an_mmpretrain_train_step_with_accumulation(
        train_graphs_on_cpu):
    """mmengine's train_step with gradient accumulation over two batches
    (gradients added into the ones a replay handed out) and clipping: the
    weights of the eager model after six steps."""
    from mmengine.optim import OptimWrapper
    from mmpretrain.structures import DataSample

    models = [
        tiny_classifier(backend='torch', cuda_graph_train=graph)
        for graph in (False, True)
    ]
    wrappers = [
        OptimWrapper(torch.optim.AdamW(m.parameters(), lr=1e-2),
                     accumulative_counts=2, clip_grad=dict(max_norm=0.5))
        for m in models
    ]
    for i in range(6):
        g = torch.Generator().manual_seed(i)
        batch = dict(
            inputs=[torch.rand(3, 32, 32, generator=g) for _ in range(4)],
            data_samples=[
                DataSample().set_gt_label((i + j) % 5) for j in range(4)
            ])
        for m, w in zip(models, wrappers):
            m.train_step(batch, w)
    assert models[1].backbone._train_graphs.captures == 1
    for (name, a), b in zip(models[0].named_parameters(),
                            models[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
