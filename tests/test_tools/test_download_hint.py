"""A checkpoint URL that cannot be downloaded: the error names the config key
that holds it and the command-line option that replaces it."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from mmvmamba.cli.preflight import PreflightError, check_checkpoints

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture
def offline(tmp_path, monkeypatch):
    hub_dir = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))

    def fail(url, dst, **kwargs):
        raise ConnectionError('network unreachable')

    monkeypatch.setattr(torch.hub, 'download_url_to_file', fail)
    yield
    torch.hub.set_dir(hub_dir)


@pytest.mark.parametrize('config, hint', [
    ('maskrcnn_vmamba_s_coco.py',
     '--cfg-options model.backbone.init_cfg.checkpoint=/path/to/file.pth'),
    ('vmamba_t_in1k_official-eval.py',
     '--cfg-options load_from=/path/to/file.pth'),
])
def test_download_error_names_the_key_and_option(offline, config, hint):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', config))
    with pytest.raises(PreflightError) as e:
        check_checkpoints(cfg)
    message = str(e.value)
    assert 'could not download the checkpoint' in message
    assert 'ConnectionError: network unreachable' in message
    assert hint in message
    assert '<path.to' not in message
