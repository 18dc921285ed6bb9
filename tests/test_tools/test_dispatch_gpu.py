"""tools/benchmark/dispatch_gpu.py: the shapes it times (the SS2D calls of
VMamba-T/S/B on the 28², 14² and 7² maps of a 224² input) and its refusal
without a GPU; its timings run on the GPU machine (gpu_speed.sh, stage
``dispatch``)."""
import importlib
import os.path as osp

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture(scope='module')
def tool():
    path = osp.join(ROOT, 'tools', 'benchmark', 'dispatch_gpu.py')
    spec = importlib.util.spec_from_file_location('dispatch_gpu', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stage_shapes_follow_the_presets(tool):
    # T: ssm_ratio 1, dims 96; S: ratio 2, dims 96; B: ratio 2, dims 128
    assert tool.stage_shapes('tiny') == [('tiny-stage2', 192, 28),
                                         ('tiny-stage3', 384, 14),
                                         ('tiny-stage4', 768, 7)]
    assert tool.stage_shapes('small') == [('small-stage2', 384, 28),
                                          ('small-stage3', 768, 14),
                                          ('small-stage4', 1536, 7)]
    assert tool.stage_shapes('base', sizes=(14, )) == [
        ('base-stage3', 1024, 14)]


def test_the_shapes_take_the_chunked_kernels_by_default(tool):
    """The calls the tool is about: batch 128 below PAIR_MIN_PIXELS, where
    the dispatch picks the chunked kernels (28² is at the threshold)."""
    from mmvmamba.kernels.ss2d import config
    for _, _, side in tool.stage_shapes('small', sizes=(14, 7)):
        assert not config.use_pairs(1, 128, side * side)
        assert config.use_pairs(1, 2, side * side)


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU path')
def test_refuses_without_a_gpu(tool, capsys):
    with pytest.raises(SystemExit) as exc:
        tool.main(['--archs', 'tiny'])
    assert exc.value.code == 2
    assert 'needs a CUDA GPU' in capsys.readouterr().err
