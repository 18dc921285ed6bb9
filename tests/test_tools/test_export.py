"""tools/export.py: torch.export and ONNX of the backbone on the CPU."""

import pytest
import torch

from mmvmamba.models import VMamba

from .._tools import load_tool

SMALL = dict(dims=16, depths=(1, 1, 1, 1))


def _tool():
    return load_tool('tools', 'export.py')


def _close(outs, refs):
    assert len(outs) == len(refs)
    for out, ref in zip(outs, refs):
        assert out.shape == ref.shape
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_exported_program_equals_eager_for_any_batch(tmp_path):
    torch.manual_seed(0)
    model = VMamba(arch='tiny', out_indices=(1, 3), **SMALL).eval()
    # the CLI: weights through the safe loader, program saved to a file
    weights = str(tmp_path / 'det.pth')
    torch.save(
        dict(state_dict={
            f'backbone.{k}': v
            for k, v in model.state_dict().items()
        }), weights)
    path = str(tmp_path / 'vmamba.pt2')
    _tool().main([
        'tiny', '--weights', weights, '--size', '32', '48', '--out', path,
        '--backbone-args', 'dims=16', 'depths=[1,1,1,1]', 'out_indices=[1,3]'
    ])
    program = torch.export.load(path).module()
    with torch.no_grad():
        for batch in (1, 3):
            x = torch.randn(batch, 3, 32, 48)
            _close(program(x), model(x))
    # the documented limit: another image size is refused, not mis-computed
    with pytest.raises(Exception, match='Guard failed|size'):
        program(torch.randn(1, 3, 48, 48))


def test_cli_needs_an_output():
    with pytest.raises(SystemExit):
        _tool().main(['tiny'])


def test_onnx_export_is_checked_and_computes_the_same(tmp_path):
    pytest.importorskip(
        'onnxscript',
        reason='ONNX export needs onnx and onnxscript (pip install onnx '
        'onnxscript); not installed by tools/install.sh')
    from onnx.reference import ReferenceEvaluator
    torch.manual_seed(0)
    model = VMamba(arch='tiny', dims=16, depths=(1, 1, 1, 1)).eval()
    path = str(tmp_path / 'vmamba.onnx')
    _tool().export_onnx(model, (64, 64), path)  # runs onnx.checker
    session = ReferenceEvaluator(path)
    x = torch.randn(1, 3, 64, 64)
    outs = session.run(None, {session.input_names[0]: x.numpy()})
    with torch.no_grad():
        _close([torch.from_numpy(o) for o in outs], model(x))
