"""ERF maps, area numbers, pictures and the CLI (tiny sizes, CPU)."""
import importlib.util
import os.path as osp

import numpy as np
import pytest
import torch
from matplotlib.image import imread
from PIL import Image
from torch import nn

from mmvmamba.analysis.backbones import build_last_stage
from mmvmamba.analysis.erf import (erf_map, load_images, mass_area_fraction,
                                   plot_erfs, square_area_fraction,
                                   synthetic_images)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _load_tool(name):
    path = osp.join(ROOT, 'tools', 'analysis', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'_tool_{name}', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_area_fractions():
    delta = np.zeros((9, 9))
    delta[4, 4] = 1.0
    assert mass_area_fraction(delta, 0.9) == pytest.approx(1 / 81)
    assert square_area_fraction(delta, 0.9) == pytest.approx(1 / 81)
    uniform = np.ones((10, 10))
    assert mass_area_fraction(uniform, 0.5) == pytest.approx(0.5)
    assert mass_area_fraction(uniform, 0.9) == pytest.approx(0.9)
    with pytest.raises(ValueError, match='mass'):
        mass_area_fraction(uniform, 1.5)


def test_erf_of_a_3x3_conv_is_its_window():
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
    nn.init.constant_(conv.weight, 0.1)  # positive: centre output > 0
    images = [torch.rand(1, 3, 9, 11) for _ in range(2)]
    erf = erf_map(conv, iter(images))
    assert erf.shape == (9, 11)
    support = np.argwhere(erf > 0)
    assert support.min(0).tolist() == [3, 4]
    assert support.max(0).tolist() == [5, 6]
    # gradient of 4 channels · weight 0.1, summed over RGB, per image
    np.testing.assert_allclose(erf[3:6, 4:7], 4 * 0.1 * 3)


def test_erf_needs_images():
    with pytest.raises(ValueError, match='no images'):
        erf_map(nn.Conv2d(3, 1, 1), iter([]))


def test_load_images_folder(tmp_path):
    for i in range(3):
        Image.fromarray((np.random.rand(40, 60, 3) * 255).astype(
            np.uint8)).save(tmp_path / f'{i}.png')
    imgs = list(load_images(str(tmp_path), 32, num=2))
    assert len(imgs) == 2 and imgs[0].shape == (1, 3, 32, 32)
    with pytest.raises(FileNotFoundError, match='does not exist'):
        list(load_images(str(tmp_path / 'missing'), 32, 1))
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError, match='no images'):
        list(load_images(str(tmp_path / 'empty'), 32, 1))


def test_plot_is_written_and_not_blank(tmp_path):
    yy, xx = np.mgrid[-8:8, -8:8]
    maps = {'a': np.exp(-(yy**2 + xx**2) / 4.0), 'b': np.ones((16, 16))}
    path = plot_erfs(maps, str(tmp_path / 'erf.png'))
    img = imread(path)
    assert img.shape[1] > img.shape[0] > 100  # two panels side by side
    assert img[..., :3].std() > 0.05


@pytest.mark.parametrize(
    'spec', ['timm:swin_tiny_patch4_window7_224', 'swin-t', 'resnet50'])
def test_peer_last_stage(spec):
    out = build_last_stage(spec, img_size=64)(torch.randn(1, 3, 64, 64))
    assert out.shape[0] == 1 and out.shape[2:] == (2, 2)


def test_unknown_spec():
    with pytest.raises(ValueError, match='unknown model spec'):
        build_last_stage('vgg-nope')


def test_cli_vmamba_beside_convnext(tmp_path, capsys):
    tool = _load_tool('erf')
    stats = tool.main([
        'vmamba:' + 'tiny', 'convnext-t', '--synthetic', '--num-images', '1',
        '--size', '64', '--out',
        str(tmp_path)
    ])
    assert set(stats) == {'vmamba:tiny', 'convnext-t'}
    for name in ('erf_vmamba_tiny.png', 'erf_convnext-t.png',
                 'erf_compare.png'):
        assert imread(str(tmp_path / name))[..., :3].std() > 0.02
    erf = np.load(str(tmp_path / 'erf_vmamba_tiny.npy'))
    assert erf.shape == (64, 64) and erf.max() > 0
    # random-init ConvNeXt is near-identity per block: a local ERF, much
    # smaller than VMamba's global one
    assert stats['vmamba:tiny']['area@50%'] > \
        2 * stats['convnext-t']['area@50%']
    assert '(1 images, 64²): input area holding' in capsys.readouterr().out


def test_cli_before_after_training(tmp_path):
    cfg = tmp_path / 'tiny_vmamba.py'
    cfg.write_text("model = dict(type='mmvmamba.VMamba', arch=dict(dims=16, "
                   "depths=(1, 1, 1, 1)), out_indices=(3, ))\n")
    trained = build_last_stage(str(cfg)).backbone
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ckpt = tmp_path / 'epoch_1.pth'
    torch.save({'state_dict': trained.state_dict()}, str(ckpt))
    loaded = build_last_stage(str(cfg), str(ckpt)).backbone
    for (k, a), b in zip(trained.state_dict().items(),
                         loaded.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)

    stats = _load_tool('erf').main([
        str(cfg), f'{cfg}@{ckpt}', '--labels', 'init', 'trained',
        '--synthetic', '--num-images', '1', '--size', '48', '--out',
        str(tmp_path / 'out')
    ])
    assert list(stats) == ['init', 'trained']
    init = np.load(str(tmp_path / 'out' / 'erf_init.npy'))
    after = np.load(str(tmp_path / 'out' / 'erf_trained.npy'))
    assert not np.allclose(init, after)
    assert (tmp_path / 'out' / 'erf_compare.png').stat().st_size > 1000


def test_cli_label_count(tmp_path):
    tool = _load_tool('erf')
    with pytest.raises(SystemExit, match='one per model'):
        tool.main(['vmamba-t', '--labels', 'a', 'b', '--out', str(tmp_path)])


def test_synthetic_images_are_deterministic():
    a = next(synthetic_images(16, 1, seed=3))
    b = next(synthetic_images(16, 1, seed=3))
    assert a.shape == (1, 3, 16, 16) and torch.equal(a, b)
