"""Checkpoint loading: official files, legacy names, OpenMMLab files, safety."""
import builtins
import importlib.util
import os
import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mmvmamba.checkpoint import (CheckpointMismatchError, PickledObject,
                                 UnsafeCheckpointError, convert_legacy_keys,
                                 infer_arch, official_to_backbone,
                                 official_to_mmpretrain, safe_load)
from mmvmamba.models import VMamba

REPO = Path(__file__).resolve().parents[2]


class CfgNode(dict):
    """Like yacs' CfgNode (a dict with bookkeeping attributes), pickled as
    ``yacs.config.CfgNode``; the module is removed from sys.modules before
    loading, so nothing could import it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__dict__.update({
            '__immutable__': False,
            '__deprecated_keys__': set(),
            '__renamed_keys__': {},
            '__new_allowed__': False
        })


class Evil:
    """Pickles to ``os.system('touch <path>')``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f'touch {self.path}', ))


class EvilExec:
    """Pickles to ``exec(...)`` writing a file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (builtins.exec, (f'open({self.path!r}, "w").write("x")', ))


def save_official(path, objects: dict, monkeypatch) -> None:
    """Write a checkpoint the way the official training script does, with a
    yacs-like config object of a module only present while saving."""
    fake = types.ModuleType('yacs.config')
    CfgNode.__module__ = 'yacs.config'
    fake.CfgNode = CfgNode
    monkeypatch.setitem(sys.modules, 'yacs', types.ModuleType('yacs'))
    monkeypatch.setitem(sys.modules, 'yacs.config', fake)
    cfg = CfgNode(MODEL=CfgNode(NAME='vssm', TYPE='vssm'), SEED=0)
    torch.save(dict(config=cfg, **objects), path)
    monkeypatch.delitem(sys.modules, 'yacs.config')
    monkeypatch.delitem(sys.modules, 'yacs')


def official_objects(state_dict) -> dict:
    ema = OrderedDict((k, v + 1.0) for k, v in state_dict.items())
    return dict(
        model=state_dict,
        model_ema=ema,
        optimizer=dict(state={}, param_groups=[dict(lr=1e-3)]),
        lr_scheduler=dict(),
        max_accuracy=82.5,
        scaler=dict(scale=65536.0),
        epoch=262)


def logits_of(model, fx):
    """Official head on our outnorm3 output."""
    with torch.no_grad():
        feat = model.eval()(fx['input'])[-1].mean((2, 3))
    return F.linear(feat, fx['state_dict']['classifier.head.weight'],
                    fx['state_dict']['classifier.head.bias'])


def test_official_checkpoint_loads_via_init_cfg(tmp_path, golden, monkeypatch):
    fx = golden.load('vmamba_v05noz_ln2d_small')
    path = tmp_path / 'vssm_ckpt_epoch_262.pth'
    save_official(path, official_objects(fx['state_dict']), monkeypatch)
    # the file really carries a foreign object: weights_only refuses it
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)

    ckpt = safe_load(str(path))
    cfg = ckpt['config']
    assert isinstance(cfg, PickledObject) and type(cfg) is not CfgNode
    assert (cfg.pickled_module, cfg.pickled_name) == ('yacs.config',
                                                      'CfgNode')
    assert cfg['SEED'] == 0 and ckpt['epoch'] == 262
    assert isinstance(cfg['MODEL'], PickledObject)
    assert cfg['MODEL']['NAME'] == 'vssm'
    assert cfg.state['__immutable__'] is False  # attributes kept as data
    # re-saved, the placeholder is a plain OrderedDict: weights_only reads it
    torch.save(ckpt, tmp_path / 'resaved.pth')
    resaved = torch.load(tmp_path / 'resaved.pth', weights_only=True)
    assert resaved['config'] == {'MODEL': {'NAME': 'vssm', 'TYPE': 'vssm'},
                                 'SEED': 0}

    model = VMamba(
        **golden.kwargs(fx, out_indices=(3, )),
        init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    assert golden.rel(logits_of(model, fx), fx['logits']) <= 1e-5

    ema = VMamba(
        **golden.kwargs(fx),
        init_cfg=dict(type='Pretrained', checkpoint=str(path), use_ema=True))
    ema.init_weights()
    torch.testing.assert_close(ema.patch_embed[0].bias,
                               fx['state_dict']['patch_embed.0.bias'] + 1)
    # outnorm3 comes from classifier.norm; outnorm0-2 keep their fresh init
    torch.testing.assert_close(ema.outnorm3.weight,
                               fx['state_dict']['classifier.norm.weight'] + 1)
    assert torch.all(ema.outnorm0.weight == 1)


def test_malicious_pickle_is_refused_naming_the_globals(tmp_path, golden):
    fx = golden.load('vmamba_v0_vanilla_small')
    touched, written = tmp_path / 'touched', tmp_path / 'written'
    path = tmp_path / 'evil.pth'
    torch.save(
        dict(
            model=fx['state_dict'],
            config=Evil(touched),
            extra=[EvilExec(written)]), path)

    model = VMamba(
        **golden.kwargs(fx, out_indices=(3, )),
        init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(UnsafeCheckpointError) as err:
        model.init_weights()
    msg = str(err.value)
    assert 'evil.pth' in msg and 'posix.system' in msg and 'exec' in msg
    assert 'GLOBAL' in msg and 'weights_only=False' in msg  # the way out
    with pytest.raises(pickle.UnpicklingError, match='posix.system'):
        safe_load(str(path))  # UnsafeCheckpointError is an UnpicklingError
    assert not touched.exists() and not written.exists()
    # the payload is live: an unrestricted load does run it
    torch.load(path, weights_only=False)
    assert touched.exists() and written.exists()


def test_wrong_config_fails_loudly_with_a_hint(tmp_path, golden):
    fx = golden.load('vmamba_v05noz_ln2d_small')
    path = tmp_path / 'ckpt.pth'
    torch.save(dict(model=fx['state_dict']), path)
    model = VMamba(
        **golden.kwargs(fx, depths=(1, 1, 1, 1)),
        init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointMismatchError) as err:
        model.init_weights()
    msg = str(err.value)
    assert 'unexpected keys: layers.2.blocks.1.' in msg
    assert 'depths=(1, 1, 2, 1) (model: (1, 1, 1, 1))' in msg

    fx4 = golden.load('vmamba_v05noz_ln_dstate4_small')
    torch.save(dict(model=fx4['state_dict']), path)
    model = VMamba(
        **golden.kwargs(fx4, ssm_d_state=1),
        init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(
            CheckpointMismatchError,
            match=r'(?s)mis-shaped.*'
            r'A_logs \(64, 4\) vs \(64, 1\).*ssm_d_state=4'):
        model.init_weights()

    model = VMamba(
        dims=16,
        depths=(1, 1, 1, 1),
        init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'no.pth')))
    with pytest.raises(FileNotFoundError, match='no.pth'):
        model.init_weights()


def test_preset_hint_and_infer_arch():
    with torch.device('meta'):
        sd = VMamba(arch='vanilla_tiny').state_dict()
        model = VMamba(arch='tiny')
    implied = infer_arch(sd)
    assert implied['depths'] == (2, 2, 9, 2) and implied['dims'] == 96
    assert implied['forward_type'] == 'v0' and implied['ssm_d_state'] == 16
    assert implied['downsample_version'] == 'v1'
    from mmvmamba.checkpoint import load_state_dict_checked
    with pytest.raises(
            CheckpointMismatchError, match="matches arch='vanilla_tiny'"):
        load_state_dict_checked(model, sd)


def to_legacy(state_dict):
    """Official names → the Jan-2024 names of the first v0 releases."""
    rules = [('patch_embed.0.', 'patch_embed.proj.'),
             ('patch_embed.2.', 'patch_embed.norm.'),
             ('.op.', '.self_attention.'), ('classifier.norm.', 'norm.'),
             ('classifier.head.', 'head.')]
    out = OrderedDict()
    for k, v in state_dict.items():
        k = k.replace('.norm.', '.ln_1.') if '.blocks.' in k else k
        for old, new in rules:
            k = k.replace(old, new)
        out[k] = v
    return out


def test_legacy_v0_names(tmp_path, golden):
    fx = golden.load('vmamba_v0_vanilla_small')
    legacy = to_legacy(fx['state_dict'])
    assert 'layers.0.blocks.0.ln_1.weight' in legacy and 'head.bias' in legacy
    assert list(convert_legacy_keys(legacy)) == list(fx['state_dict'])
    assert list(convert_legacy_keys(fx['state_dict'])) == list(
        fx['state_dict'])
    path = tmp_path / 'vssmtiny_dp01_ckpt_epoch_292.pth'
    torch.save(dict(model=legacy, epoch=292), path)
    model = VMamba(
        **golden.kwargs(fx, out_indices=(3, )),
        init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    assert golden.rel(logits_of(model, fx), fx['logits']) <= 1e-5


def test_openmmlab_checkpoint_with_backbone_prefix(tmp_path, golden):
    fx = golden.load('vmamba_v05noz_ln_dstate4_small')
    backbone = official_to_backbone(fx['state_dict'])
    backbone.update(fx['backbone_outnorm_state_dict'])
    sd = OrderedDict(('backbone.' + k, v) for k, v in backbone.items())
    sd['neck.lateral_convs.0.conv.weight'] = torch.zeros(4, 16, 1, 1)
    path = tmp_path / 'mask_rcnn.pth'
    torch.save(dict(state_dict=sd, meta=dict(epoch=12)), path)
    model = VMamba(
        **golden.kwargs(fx),
        init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    with torch.no_grad():
        outs = model.eval()(fx['input'])
    for out, ref in zip(outs, fx['backbone_outs']):
        assert golden.rel(out, ref) <= 1e-5


def test_converter_tool_to_mmpretrain(tmp_path, golden, monkeypatch):
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    fx = golden.load('vmamba_v05noz_ln2d_small')
    src, dst = tmp_path / 'official.pth', tmp_path / 'converted.pth'
    save_official(src, official_objects(fx['state_dict']), monkeypatch)
    spec = importlib.util.spec_from_file_location(
        'convert_checkpoint', REPO / 'tools' / 'convert_checkpoint.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main([str(src), str(dst), '--format', 'mmpretrain'])

    converted = torch.load(dst, weights_only=True)  # plain tensors/strings
    expected = official_to_mmpretrain(fx['state_dict'])
    assert list(converted['state_dict']) == list(expected)
    assert 'backbone.outnorm3.weight' in expected and 'head.fc.bias' in expected
    cfg = dict(
        type='ImageClassifier',
        backbone=dict(
            type='mmvmamba.VMamba', **golden.kwargs(fx, out_indices=(3, ))),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=10, in_channels=128))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        classifier = MODELS.build(cfg).eval()
    classifier.load_state_dict(converted['state_dict'], strict=True)
    with torch.no_grad():
        logits = classifier(fx['input'], mode='tensor')
    assert golden.rel(logits, fx['logits']) <= 1e-5


@pytest.mark.parametrize('content', [b'', b'\xff\xd8\xff\xe0JFIF', b'{"a": 1}'])
def test_safe_load_names_files_that_are_not_checkpoints(tmp_path, content):
    from mmvmamba.checkpoint import CheckpointFormatError
    path = tmp_path / 'picture.pth'
    path.write_bytes(content)
    with pytest.raises(CheckpointFormatError,
                       match=r"picture\.pth' is not a PyTorch checkpoint"):
        safe_load(str(path))
