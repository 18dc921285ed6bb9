"""hubconf.py: torch.hub entry points, weights through the safe loader."""
import importlib.util
import os
import os.path as osp
import pickle

import pytest
import torch

from mmvmamba.apis.model_zoo import find_model
from mmvmamba.models import VMamba

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SMALL = dict(dims=16, depths=(1, 1, 1, 1), backend='torch')


def save_mmdet_style(model: VMamba, path: str) -> None:
    """As mmdet's tools/train.py saves a detector with this backbone."""
    sd = {f'backbone.{k}': v for k, v in model.state_dict().items()}
    torch.save(dict(state_dict=sd, meta=dict(epoch=1)), path)


def test_entry_points():
    spec = importlib.util.spec_from_file_location(
        'hubconf', osp.join(ROOT, 'hubconf.py'))
    hub = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hub)
    # what torch.hub.list shows: public callables of hubconf.py
    assert [f for f in dir(hub) if callable(getattr(hub, f))
            and not f.startswith('_')] == [
                'vmamba_base', 'vmamba_small', 'vmamba_tiny'
            ]
    with torch.device('meta'):
        model = torch.hub.load(ROOT, 'vmamba_small', source='local')
    assert isinstance(model, VMamba) and model.depths == [2, 2, 15, 2]


def test_pretrained_file_loads_through_the_checked_loader(tmp_path):
    torch.manual_seed(0)
    trained = VMamba(arch='tiny', **SMALL)
    path = str(tmp_path / 'det.pth')
    save_mmdet_style(trained, path)
    model = torch.hub.load(
        ROOT, 'vmamba_tiny', source='local', pretrained=path, **SMALL)
    for k, v in trained.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    x = torch.randn(1, 3, 64, 64)
    for a, b in zip(model.eval()(x), trained.eval()(x)):
        torch.testing.assert_close(a, b)
    # a file of another model stops with the keys that do not fit
    other = VMamba(arch='tiny', dims=16, depths=(1, 1, 2, 1))
    save_mmdet_style(other, path)
    with pytest.raises(Exception, match='layers.2.blocks.1'):
        torch.hub.load(
            ROOT, 'vmamba_tiny', source='local', pretrained=path, **SMALL)


def test_pickled_code_is_not_run(tmp_path):
    class Evil:

        def __reduce__(self):
            return (os.system, (f'touch {tmp_path}/ran',))

    path = str(tmp_path / 'evil.pth')
    with open(path, 'wb') as f:
        pickle.dump(dict(state_dict={}, evil=Evil()), f, protocol=2)
    with pytest.raises(Exception, match='refusing to load'):
        torch.hub.load(
            ROOT, 'vmamba_tiny', source='local', pretrained=path, **SMALL)
    assert not osp.exists(tmp_path / 'ran')


def test_pretrained_true_takes_the_model_index_weights(tmp_path):
    url = find_model('vmamba_t_in1k')['Weights']
    assert url.endswith('/vssm1_tiny_0230s_ckpt_epoch_264.pth')
    # a copy already in the torch hub cache is used, nothing is downloaded
    hub_dir = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))
    try:
        os.makedirs(tmp_path / 'checkpoints')
        torch.manual_seed(1)
        trained = VMamba(arch='tiny', **SMALL)
        save_mmdet_style(
            trained, str(tmp_path / 'checkpoints' / osp.basename(url)))
        model = torch.hub.load(
            ROOT, 'vmamba_tiny', source='local', pretrained=True, **SMALL)
    finally:
        torch.hub.set_dir(hub_dir)
    assert torch.equal(model.patch_embed[0].weight,
                       trained.patch_embed[0].weight)
