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
from mmvmamba.models.cuda_graph import GraphCache

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
