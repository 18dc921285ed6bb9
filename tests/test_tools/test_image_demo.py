"""tools/image_demo.py: detection, segmentation and classification on the
demo images (CPU), and its errors.

No trained checkpoint is needed: each test model is built from its config
and saved with random weights, as tools/train.py would save it. The
detector is the demo config itself; the segmentor and the classifier are the
UperNet and ImageNet recipes reduced to a 16-wide VMamba.
"""
import json
import os
import os.path as osp
import re
import sys
from collections import OrderedDict

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mmvmamba  # noqa: F401
from mmvmamba.apis import run_image_demo
from mmvmamba.datasets.demo_shapes import (CLASSES, PALETTE,
                                           generate_demo_shapes)
from mmvmamba.cli.preflight import PreflightError

from .._tools import run_script

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_CFG = osp.join(ROOT, 'configs', 'demo',
                    'maskrcnn_vmamba_t_demo-shapes.py')
TOOL = osp.join(ROOT, 'tools', 'image_demo.py')

SEG_CFG = f"""
_base_ = [{osp.join(ROOT, 'configs',
                    'upernet_vmamba_t_ade20k-512x512-160k.py')!r}]
model = dict(
    backbone=dict(arch=dict(_delete_=True, dims=16, depths=(1, 1, 1, 1)),
                  init_cfg=None),
    decode_head=dict(in_channels=[16, 32, 64, 128], channels=16,
                     num_classes=4),
    auxiliary_head=dict(in_channels=64, channels=16, num_classes=4))
test_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='PackSegInputs')]))
"""
CLS_CFG = f"""
_base_ = [{osp.join(ROOT, 'configs', 'vmamba_t_in1k.py')!r}]
model = dict(
    backbone=dict(arch=dict(_delete_=True, dims=16, depths={{depths}})),
    head=dict(in_channels=128, num_classes=3))
test_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=72, edge='short'),
    dict(type='CenterCrop', crop_size=64),
    dict(type='PackInputs')]))
"""


def build_model(cfg: Config) -> torch.nn.Module:
    """The model of ``cfg``, initialised as for training."""
    import importlib
    scope = cfg.default_scope
    registry = importlib.import_module(f'{scope}.registry').MODELS
    model_cfg = cfg.model
    if scope == 'mmpretrain':
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(model_cfg)
        model.init_weights()
    return model


def save_checkpoint(cfg_path: str, out: str, classes, palette=None) -> dict:
    """Save a random-init model of ``cfg_path`` as tools/train.py does."""
    model = build_model(Config.fromfile(cfg_path))
    stem = osp.splitext(osp.basename(cfg_path))[0]
    dataset_meta = dict(classes=tuple(classes))
    if palette:
        dataset_meta['palette'] = [tuple(p) for p in palette]
    sd = model.state_dict()
    torch.save(
        dict(
            state_dict=sd,
            meta=dict(
                dataset_meta=dataset_meta,
                experiment_name=f'{stem}_20250101_120000')), out)
    return sd


@pytest.fixture(scope='module')
def ws(tmp_path_factory):
    """Demo images (3 val images of 96 px), configs and checkpoints."""
    ws = tmp_path_factory.mktemp('image_demo')
    generate_demo_shapes(
        str(ws / 'data'), num_train=1, num_val=3, img_size=96, quiet=True)
    (ws / 'seg.py').write_text(SEG_CFG)
    (ws / 'cls.py').write_text(CLS_CFG.format(depths=(1, 1, 1, 1)))
    (ws / 'cls_deeper.py').write_text(CLS_CFG.format(depths=(1, 1, 2, 1)))
    save_checkpoint(DEMO_CFG, str(ws / 'det.pth'), CLASSES, PALETTE)
    save_checkpoint(
        str(ws / 'seg.py'), str(ws / 'seg.pth'), ('background', ) + CLASSES,
        [(0, 0, 0)] + list(PALETTE))
    sd = save_checkpoint(str(ws / 'cls.py'), str(ws / 'cls.pth'), CLASSES)
    # the same classifier as an official VMamba release file: 'model' with
    # the official names (classifier.norm/head, no backbone. prefix)
    official = OrderedDict()
    for k, v in sd.items():
        if k.startswith('backbone.outnorm3.'):
            official['classifier.norm.' + k.split('.')[-1]] = v
        elif k.startswith('backbone.'):
            official[k[len('backbone.'):]] = v
        elif k.startswith('head.fc.'):
            official['classifier.head.' + k.split('.')[-1]] = v
    torch.save(dict(model=official, epoch=300), str(ws / 'official.pth'))
    return ws


def demo_on_cpu(ws, inputs, config, weights, out_dir):
    """run_image_demo on the CPU, config, weights and output in ``ws``."""
    return run_image_demo(
        str(inputs),
        str(ws / config),
        weights=str(ws / weights),
        device='cpu',
        out_dir=str(ws / out_dir))


def val_images(ws):
    folder = ws / 'data' / 'val'
    return str(folder), sorted(folder.iterdir())


def run_tool(args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = run_script([sys.executable, TOOL] + args, cwd, env)
    return proc.returncode, proc.stdout


def test_detection_cli_draws_and_saves_predictions(ws):
    folder, images = val_images(ws)
    rc, out = run_tool([
        folder, DEMO_CFG, '--weights', 'det.pth', '--device', 'cpu',
        '--out-dir', 'det_out', '--score-thr', '0'
    ], ws)
    assert rc == 0, out[-3000:]
    assert '3 image(s)' in out
    for img in images:
        drawn = cv2.imread(str(ws / 'det_out' / 'vis' / img.name))
        assert drawn is not None, f'no drawing of {img.name}'
        assert drawn.shape == cv2.imread(str(img)).shape
        # boxes and masks are drawn over the picture
        assert not np.array_equal(drawn, cv2.imread(str(img)))
        pred = json.loads(
            (ws / 'det_out' / 'preds' / (img.stem + '.json')).read_text())
        n = len(pred['labels'])
        assert n > 0 and len(pred['scores']) == n
        assert len(pred['bboxes']) == n and len(pred['masks']) == n
        assert all(len(b) == 4 for b in pred['bboxes'])
        assert all(0 <= label < len(CLASSES) for label in pred['labels'])
        assert pred['masks'][0]['size'] == [96, 96]
        # the class names come from the checkpoint's dataset_meta
        assert f'{img.name}: {n} object' in out
    assert any(f'{c} 0.' in out for c in CLASSES), out[-2000:]
    assert sorted(os.listdir(ws / 'det_out')) == ['preds', 'vis']
    # a quiet terminal: no third-party deprecation noise, no object
    # addresses; the checkpoint line names the file
    assert 'pkg_resources' not in out
    assert not re.search(r'://\d{6,}', out), out[-3000:]
    assert 'mmvmamba-checked://det.pth' in out
    # no temporary folder is left beside the output
    assert not [p for p in os.listdir(ws) if p.startswith('.image_demo')]


def test_segmentation_draws_label_maps(ws):
    folder, images = val_images(ws)
    result = demo_on_cpu(ws, folder, 'seg.py', 'seg.pth', 'seg_out')
    assert result['scope'] == 'mmseg'
    assert len(result['predictions']) == len(images)
    for img, pred in zip(images, result['predictions']):
        shape = cv2.imread(str(img)).shape
        assert np.asarray(pred).shape == shape[:2]
        assert set(np.unique(pred)) <= {0, 1, 2, 3}
        drawn = cv2.imread(str(ws / 'seg_out' / 'vis' / img.name))
        assert drawn is not None and drawn.shape == shape
        label_map = cv2.imread(
            str(ws / 'seg_out' / 'preds' / (img.stem + '.png')),
            cv2.IMREAD_UNCHANGED)
        assert np.array_equal(label_map, np.asarray(pred))
    assert result['inferencer'].model.dataset_meta['classes'][1] == 'circle'
    # only the drawings and the label maps (named after the images)
    assert sorted(os.listdir(ws / 'seg_out')) == ['preds', 'vis']
    assert sorted(os.listdir(ws / 'seg_out' / 'preds')) == [
        img.stem + '.png' for img in images
    ]


def test_class_names_from_config_when_checkpoint_has_none(ws):
    """Without dataset_meta in the checkpoint the config's data set names
    the classes (ADE20K here), not the libraries' Cityscapes fallback."""
    _, images = val_images(ws)
    ckpt = torch.load(str(ws / 'seg.pth'), weights_only=True)
    torch.save(dict(state_dict=ckpt['state_dict']), str(ws / 'bare.pth'))
    result = demo_on_cpu(ws, str(images[0]), 'seg.py', 'bare.pth', 'bare_out')
    classes = result['inferencer'].model.dataset_meta['classes']
    assert len(classes) == 150 and classes[:2] == ('wall', 'building')


def test_classification_with_official_file(ws):
    folder, images = val_images(ws)
    result = demo_on_cpu(ws, str(images[0]), 'cls.py', 'official.pth', 'cls_out')
    (pred, ) = result['predictions']
    assert pred['pred_label'] in range(3)
    assert len(pred['pred_scores']) == 3
    assert abs(sum(pred['pred_scores']) - 1) < 1e-4
    drawn = cv2.imread(str(ws / 'cls_out' / 'vis' / f'{images[0].stem}.png'))
    assert drawn is not None
    saved = json.loads(
        (ws / 'cls_out' / 'preds' / (images[0].stem + '.json')).read_text())
    assert saved['pred_label'] == pred['pred_label']
    # the official file and the mmpretrain checkpoint give the same answer
    again = demo_on_cpu(ws, str(images[0]), 'cls.py', 'cls.pth', 'cls_out2')
    assert again['predictions'][0]['pred_scores'] == pytest.approx(
        pred['pred_scores'], abs=1e-5)
    assert again['predictions'][0]['pred_class'] == \
        CLASSES[pred['pred_label']]


# Each error case: inputs, config, weights (relative to the workspace;
# '{val}' is the folder of demo images, '{image}' its first image; weights
# None: not given) and what the message must name.
ERROR_CASES = {
    'unreadable_image':
    ('mixed', 'cls.py', 'cls.pth',
     ('broken.jpg', 'cannot read image', 'remove it')),
    'empty_folder': ('empty', 'cls.py', 'cls.pth',
                     ('empty', 'holds no images', '.jpg')),
    # detector weights for a segmentation config
    'checkpoint_of_another_task':
    ('{val}', 'seg.py', 'det.pth',
     ('det.pth', 'a detector (mmdet)', 'a semantic segmentor (mmseg)',
      'maskrcnn_vmamba_t_coco.py', 'Fix:')),
    # ImageNet weights for a detector: they start a training run instead
    'imagenet_weights_for_a_detector':
    ('{val}', DEMO_CFG, 'official.pth',
     ('official.pth', 'image-classification (ImageNet) weights',
      'model.backbone.init_cfg.checkpoint=')),
    'checkpoint_of_another_variant':
    ('{val}', 'cls_deeper.py', 'cls.pth',
     ('cls.pth', 'depths=(1, 1, 1, 1)', 'depths=(1, 1, 2, 1)', 'Fix:')),
    # the demo detector (3 classes, 128 channels) with the COCO recipe: the
    # message names the config it was trained with
    'checkpoint_with_other_heads':
    ('{val}', osp.join(ROOT, 'configs', 'maskrcnn_vmamba_t_coco.py'),
     'det.pth',
     ('det.pth', 'does not fit', 'neck.lateral_convs.0.conv.weight '
      '(128, 96, 1, 1) vs (256, 96, 1, 1)', 'maskrcnn_vmamba_t_demo-shapes.py')),
    'not_a_checkpoint': ('{val}', 'cls.py', '{image}',
                         ('{image}', 'cannot read', 'PyTorch checkpoint')),
    'missing_weights': ('{val}', 'cls.py', None,
                        ('no weights for', '--weights')),
}


@pytest.mark.parametrize('case', list(ERROR_CASES))
def test_error_names_the_problem_and_writes_nothing(ws, case):
    inputs, config, weights, needles = ERROR_CASES[case]
    folder, images = val_images(ws)
    (ws / 'mixed').mkdir(exist_ok=True)
    (ws / 'mixed' / 'good.jpg').write_bytes(images[0].read_bytes())
    (ws / 'mixed' / 'broken.jpg').write_bytes(b'not an image at all')
    (ws / 'empty').mkdir(exist_ok=True)
    (ws / 'empty' / 'notes.txt').write_text('no pictures here')

    def at(path):
        if path is None:
            return None
        path = path.format(val=folder, image=str(images[0]))
        return str(ws / path)  # an absolute path stays as it is

    out_dir = ws / f'{case}_out'
    with pytest.raises(PreflightError) as e:
        run_image_demo(
            inputs=at(inputs),
            config=at(config),
            weights=at(weights),
            out_dir=str(out_dir),
            device='cpu')
    for needle in needles:
        needle = needle.format(image=str(images[0]))
        assert needle in str(e.value), str(e.value)
    assert not out_dir.exists(), 'a failed run wrote its out_dir'
    assert not [p for p in os.listdir(ws) if p.startswith('.image_demo')]


def test_cli_error_is_one_clear_line(ws):
    (ws / 'no_images').mkdir()
    rc, out = run_tool(
        ['no_images', 'cls.py', '--weights', 'cls.pth', '--out-dir', 'cli_out'],
        ws)
    assert rc == 2, out[-3000:]
    assert "[mmvmamba] error: folder 'no_images' holds no images" in out
    assert 'Traceback' not in out
    assert not (ws / 'cli_out').exists()


@pytest.mark.parametrize('ckpt_cfg,cfg,needles', [
    ('vmamba_s_in1k.py', 'vmamba_t_in1k.py',
     ("arch='small'", "arch='tiny'", 'vmamba_s_in1k.py')),
    ('maskrcnn_vmamba_b_coco.py', 'maskrcnn_vmamba_t_coco.py',
     ("arch='base'", 'dims=128', 'maskrcnn_vmamba_b_coco.py')),
])
def test_official_variant_names_the_matching_config(ckpt_cfg, cfg, needles):
    """S/B weights for a T recipe: the error names the recipe they fit.

    The "checkpoint" is the other recipe's state dict on the meta device
    (shapes only), so no 100M-parameter model is built.
    """
    from mmvmamba.apis.inference import _model_state_shapes, check_weights_fit
    configs = osp.join(ROOT, 'configs')
    sd = _model_state_shapes(Config.fromfile(osp.join(configs, ckpt_cfg)))
    with pytest.raises(PreflightError) as e:
        check_weights_fit(
            Config.fromfile(osp.join(configs, cfg)),
            dict(state_dict=sd, meta={}), 'other.pth',
            osp.join(configs, cfg))
    msg = str(e.value)
    for needle in needles + ('other.pth', 'Fix:', 'releases/download'):
        assert needle in msg, msg
    # and the right config accepts them
    check_weights_fit(
        Config.fromfile(osp.join(configs, ckpt_cfg)),
        dict(state_dict=sd, meta={}), 'other.pth',
        osp.join(configs, ckpt_cfg))


class _Evil:
    """Unpickling this would call print('PWNED-...')."""

    def __reduce__(self):
        return (print, ('PWNED-by-the-checkpoint', ))


def test_weights_are_loaded_without_running_pickled_code(ws, capfd):
    _, images = val_images(ws)
    ckpt = torch.load(str(ws / 'cls.pth'), weights_only=True)
    ckpt['meta']['evil'] = _Evil()
    torch.save(ckpt, str(ws / 'evil.pth'))
    capfd.readouterr()
    try:
        result = demo_on_cpu(ws, str(images[0]), 'cls.py', 'evil.pth', 'evil_out')
    except PreflightError as e:  # the safe loader refuses the file
        assert 'evil.pth' in str(e)
        assert not (ws / 'evil_out').exists()
    else:  # or loads the object as an inert placeholder
        assert result['predictions'][0]['pred_class'] in CLASSES
    assert 'PWNED' not in capfd.readouterr().out


def test_failure_during_inference_leaves_nothing(ws, monkeypatch):
    """An error after some files were drawn: no out_dir, no temp folder;
    an existing out_dir keeps its files."""
    from mmvmamba.apis import inference
    _, images = val_images(ws)

    def half_run(inferencer, scope, imgs, out, score_thr):
        os.makedirs(osp.join(out, 'vis'))
        open(osp.join(out, 'vis', 'first.png'), 'w').close()
        raise RuntimeError('out of memory on the second image')

    monkeypatch.setattr(inference, '_run', half_run)
    (ws / 'kept_out').mkdir()
    (ws / 'kept_out' / 'mine.txt').write_text('keep me')
    for out_dir in ('half_out', 'kept_out'):
        with pytest.raises(RuntimeError, match='second image'):
            run_image_demo(
                str(images[0]),
                str(ws / 'cls.py'),
                weights=str(ws / 'cls.pth'),
                device='cpu',
                out_dir=str(ws / out_dir))
    assert not (ws / 'half_out').exists()
    assert os.listdir(ws / 'kept_out') == ['mine.txt']
    assert not [p for p in os.listdir(ws) if p.startswith('.image_demo')]
