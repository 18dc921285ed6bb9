"""tools/train.py and tools/test.py end to end on tiny demo data (CPU)."""
import glob
import json
import os
import os.path as osp
import sys

import pytest

from .._tools import run_script

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_CFG = osp.join(ROOT, 'configs', 'demo',
                    'maskrcnn_vmamba_t_demo-shapes.py')

# The demo recipe, shrunk: a 4-stage VMamba of width 16, 64 px images.
TINY_CFG = f"""
_base_ = [{DEMO_CFG!r}]
img_size = 64
demo_data = dict(num_train=4, num_val=2, img_size=64)
model = dict(
    backbone=dict(arch=dict(_delete_=True, dims=16, depths=(1, 1, 1, 1))),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=32),
    rpn_head=dict(in_channels=32, feat_channels=32),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=32),
        bbox_head=dict(in_channels=32, fc_out_channels=64),
        mask_roi_extractor=dict(out_channels=32),
        mask_head=dict(in_channels=32, conv_out_channels=32)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=1, val_interval=1)
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(interval=1),
    visualization=dict(interval=1))
"""


def run(args, cwd, env=None, timeout=600):
    full_env = dict(os.environ, **(env or {}))
    full_env.setdefault('OMP_NUM_THREADS', '1')
    proc = run_script(args, cwd, full_env, timeout)
    return proc.returncode, proc.stdout


def tool(name):
    return [sys.executable, osp.join(ROOT, 'tools', name)]


def train_with_pretrained(ws, work_dir, checkpoint):
    """tools/train.py on tiny.py with the backbone's init_cfg set to
    ``Pretrained`` from ``checkpoint``."""
    return run(
        tool('train.py') + [
            'tiny.py', '--work-dir', work_dir, '--cfg-options',
            'model.backbone.init_cfg._delete_=True',
            'model.backbone.init_cfg.type=Pretrained',
            f'model.backbone.init_cfg.checkpoint={checkpoint}'
        ],
        cwd=ws)


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    """A folder (the cwd of the runs) with the tiny config."""
    ws = tmp_path_factory.mktemp('tools')
    (ws / 'tiny.py').write_text(TINY_CFG)
    return ws


@pytest.fixture(scope='module')
def trained(workspace):
    """Train 1 epoch; the demo data is generated under ./data on the way."""
    rc, out = run(tool('train.py') + ['tiny.py', '--work-dir', 'wd'],
                  cwd=workspace)
    assert rc == 0, out[-3000:]
    return workspace, out


def test_train_generates_data_and_saves(trained):
    ws, out = trained
    meta = json.loads((ws / 'data' / 'vmamba_demo' / 'meta.json').read_text())
    assert (meta['num_train'], meta['img_size']) == (4, 64)
    assert (ws / 'wd' / 'epoch_1.pth').is_file()
    assert 'coco/bbox_mAP' in out and 'coco/segm_mAP' in out
    # the demo config draws validation predictions
    assert glob.glob(str(ws / 'wd' / '*' / 'vis_data' / 'vis_image' / '*'))


def test_resume_continues_from_checkpoint(trained):
    ws, _ = trained
    rc, out = run(
        tool('train.py') + [
            'tiny.py', '--work-dir', 'wd', '--resume', '--cfg-options',
            'train_cfg.max_epochs=2'
        ],
        cwd=ws)
    assert rc == 0, out[-3000:]
    assert 'resumed epoch: 1' in out
    assert (ws / 'wd' / 'epoch_2.pth').is_file()


def test_test_evaluates_checkpoint_and_draws(trained):
    ws, _ = trained
    rc, out = run(
        tool('test.py') + [
            'tiny.py', 'wd/epoch_1.pth', '--work-dir', 'wd_test',
            '--show-dir', 'pictures'
        ],
        cwd=ws)
    assert rc == 0, out[-3000:]
    assert 'coco/bbox_mAP' in out and 'coco/segm_mAP' in out
    assert len(glob.glob(str(ws / 'wd_test' / '*' / 'pictures' / '*'))) == 2


def _assert_clean_failure(rc, out, ws, work_dir, *needles):
    assert rc == 2, out[-3000:]
    for needle in needles:
        assert needle in out, out[-3000:]
    assert 'Traceback' not in out
    assert not (ws / work_dir).exists(), 'a failed start left a work_dir'


def _fails_cleanly(ws, script, args, work_dir, *needles):
    """``tools/<script> args --work-dir work_dir`` in ``ws`` stops cleanly
    naming every one of ``needles``."""
    rc, out = run(tool(script) + args + ['--work-dir', work_dir], cwd=ws)
    _assert_clean_failure(rc, out, ws, work_dir, *needles)


def test_coco_without_data_says_where_and_how(workspace):
    rc, out = run(
        tool('train.py') + [
            osp.join(ROOT, 'configs', 'maskrcnn_vmamba_t_coco.py'),
            '--work-dir', 'wd_coco'
        ],
        cwd=workspace)
    _assert_clean_failure(rc, out, workspace, 'wd_coco', 'data/coco/',
                          'cocodataset.org', 'configs/demo/')


def test_ade20k_without_data_says_where_and_how(workspace):
    rc, out = run(
        tool('train.py') + [
            osp.join(ROOT, 'configs',
                     'upernet_vmamba_t_ade20k-512x512-160k.py'),
            '--work-dir', 'wd_ade'
        ],
        cwd=workspace)
    _assert_clean_failure(rc, out, workspace, 'wd_ade',
                          'data/ade/ADEChallengeData2016',
                          'ADEChallengeData2016.zip')


def test_missing_pretrained_file_is_named(trained):
    ws, _ = trained
    rc, out = train_with_pretrained(ws, 'wd_ckpt', 'missing/vmamba_t.pth')
    _assert_clean_failure(rc, out, ws, 'wd_ckpt', 'missing/vmamba_t.pth',
                          'model.backbone.init_cfg.checkpoint')


def test_unreachable_url_is_named(trained, tmp_path):
    ws, _ = trained
    # a closed local port: fails fast and never touches the network
    url = 'http://127.0.0.1:9/vssm1_tiny_0230s_ckpt_epoch_264.pth'
    rc, out = run(
        tool('train.py') + [
            'tiny.py', '--work-dir', 'wd_url', '--cfg-options',
            'model.backbone.init_cfg._delete_=True',
            'model.backbone.init_cfg.type=Pretrained',
            f'model.backbone.init_cfg.checkpoint={url}'
        ],
        cwd=ws,
        env=dict(TORCH_HOME=str(tmp_path)))
    _assert_clean_failure(rc, out, ws, 'wd_url',
                          'vssm1_tiny_0230s_ckpt_epoch_264.pth', url)
    assert os.listdir(tmp_path / 'hub' / 'checkpoints') == []


def test_missing_test_checkpoint_is_named(trained):
    ws, _ = trained
    _fails_cleanly(ws, 'test.py', ['tiny.py', 'nope/epoch_9.pth'], 'x',
                   'nope/epoch_9.pth')


def test_amp_on_cpu_is_refused(trained):
    import torch
    if torch.cuda.is_available():
        pytest.skip('--amp is valid on a GPU')
    ws, _ = trained
    _fails_cleanly(ws, 'train.py', ['tiny.py', '--amp'], 'wd_amp',
                   '--amp needs a CUDA GPU')


def _other_checkpoints(ws):
    """From the trained demo detector: one whose backbone is deeper
    (depths (1, 1, 2, 1)), one with NaN weights, and one that would run a
    command when unpickled."""
    import shutil

    import torch

    from mmvmamba.checkpoint import safe_load
    from mmvmamba.models import VMamba
    ckpt = safe_load(str(ws / 'wd' / 'epoch_1.pth'))
    sd = {
        k: v
        for k, v in ckpt['state_dict'].items() if not k.startswith('backbone.')
    }
    with torch.device('meta'):
        deeper = VMamba(dims=16, depths=(1, 1, 2, 1)).state_dict()
    deeper = {
        k: torch.zeros(v.shape, dtype=v.dtype)
        for k, v in deeper.items()
    }
    sd.update(('backbone.' + k, v) for k, v in deeper.items())
    torch.save(dict(state_dict=sd, meta={}), ws / 'deeper.pth')
    torch.save(dict(state_dict=deeper), ws / 'deeper_backbone.pth')
    nan = dict(ckpt['state_dict'])
    nan['rpn_head.rpn_conv.weight'] = nan['rpn_head.rpn_conv.weight'] * float(
        'nan')
    torch.save(dict(state_dict=nan, meta={}), ws / 'nan.pth')

    class Evil:

        def __reduce__(self):
            return (os.system, (f'touch {ws / "pwned"}', ))

    torch.save(dict(state_dict={}, meta=Evil()), ws / 'evil.pth')
    # a run whose last checkpoint was cut short
    cut = ws / 'wd_cut'
    cut.mkdir(exist_ok=True)
    shutil.copy(ws / 'wd' / 'epoch_1.pth', cut / 'epoch_1.pth')
    data = (ws / 'wd' / 'epoch_1.pth').read_bytes()
    (cut / 'epoch_2.pth').write_bytes(data[:len(data) // 3])
    (cut / 'last_checkpoint').write_text(str(cut / 'epoch_2.pth'))


def test_weights_that_do_not_fit_are_refused_before_anything_runs(trained):
    """tools/test.py and train.py's load_from: one checked load; the error
    names the keys and what the checkpoint implies; no work_dir."""
    ws, _ = trained
    _other_checkpoints(ws)
    rc, out = run(
        tool('test.py') + ['tiny.py', 'deeper.pth', '--work-dir', 'wd_deep'],
        cwd=ws)
    _assert_clean_failure(rc, out, ws, 'wd_deep', 'deeper.pth',
                          'depths=(1, 1, 2, 1)', 'unexpected keys',
                          'backbone.layers.2.blocks.1.')
    assert 'bbox_mAP' not in out
    rc, out = run(
        tool('train.py') + [
            'tiny.py', '--work-dir', 'wd_nan', '--cfg-options',
            'load_from=nan.pth'
        ],
        cwd=ws)
    _assert_clean_failure(rc, out, ws, 'wd_nan', 'nan.pth', 'NaN/Inf',
                          'rpn_head.rpn_conv.weight', '--allow-nonfinite')
    rc, out = train_with_pretrained(ws, 'wd_init', 'deeper_backbone.pth')
    _assert_clean_failure(rc, out, ws, 'wd_init', 'deeper_backbone.pth',
                          'model.backbone.init_cfg.checkpoint',
                          'depths=(1, 1, 2, 1) (model: (1, 1, 1, 1))')


def test_resume_of_a_refused_or_damaged_file_names_the_way_out(trained):
    ws, _ = trained
    _other_checkpoints(ws)
    rc, out = run(
        tool('train.py') +
        ['tiny.py', '--work-dir', 'wd_evil', '--resume', 'evil.pth'],
        cwd=ws)
    _assert_clean_failure(rc, out, ws, 'wd_evil', 'evil.pth', 'posix.system')
    assert not (ws / 'pwned').exists()
    before = sorted(os.listdir(ws / 'wd_cut'))
    rc, out = run(
        tool('train.py') + ['tiny.py', '--work-dir', 'wd_cut', '--resume'],
        cwd=ws)
    assert rc == 2 and 'Traceback' not in out, out[-3000:]
    assert 'epoch_2.pth' in out and 'damaged' in out, out[-3000:]
    assert f'--resume {ws / "wd_cut" / "epoch_1.pth"}' in out, out[-3000:]
    assert sorted(os.listdir(ws / 'wd_cut')) == before  # no log, no config
