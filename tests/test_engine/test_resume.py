"""Resume under torch >= 2.6 (weights_only=True by default) works via mmvmamba."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

import mmvmamba  # noqa: F401  (installs the allow-list)


class _Data(Dataset):

    def __len__(self):
        return 16

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return dict(x=torch.randn(4, generator=g), y=torch.randn(1, generator=g))


class _Model(BaseModel):

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4, 1)

    def forward(self, x, y, mode='loss'):
        return dict(loss=((self.fc(x) - y)**2).mean())


def _runner(work_dir, resume=False, load_from=None, max_iters=8):
    return Runner(
        model=_Model(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=_Data(),
            sampler=dict(type='InfiniteSampler', shuffle=False),
            batch_size=4,
            num_workers=0,
            collate_fn=dict(type='default_collate')),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.05)),
        param_scheduler=dict(
            type='MultiStepLR', milestones=[3, 6], by_epoch=False),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=4, by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        resume=resume,
        load_from=load_from,
        randomness=dict(seed=0),
        default_scope='mmengine')


def test_resume_continues_from_saved_state(tmp_path):
    assert torch.__version__ >= '2.6'
    full = _runner(tmp_path / 'full')
    full.train()
    ckpt = tmp_path / 'full' / 'iter_4.pth'
    assert ckpt.exists()
    # the default torch.load (weights_only=True) reads MMEngine's own file
    state = torch.load(ckpt)
    assert state['meta']['iter'] == 4

    resumed = _runner(tmp_path / 'resumed', resume=True, load_from=str(ckpt))
    resumed.load_or_resume()
    assert resumed.iter == 4
    sd = state['state_dict']
    for k, v in resumed.model.state_dict().items():
        torch.testing.assert_close(v, sd[k], rtol=0, atol=0)
    opt_state = resumed.optim_wrapper.optimizer.state_dict()['state']
    torch.testing.assert_close(opt_state[0]['exp_avg'],
                               state['optimizer']['state'][0]['exp_avg'])
    # the lr schedule continues too (milestone 3 passed: lr = 0.05 * 0.1)
    assert resumed.optim_wrapper.get_lr()['lr'][0] == pytest.approx(0.005)
    resumed.train()
    assert resumed.iter == 8
    # continuing from iter 4 lands exactly where the uninterrupted run did
    for k, v in resumed.model.state_dict().items():
        torch.testing.assert_close(v, full.model.state_dict()[k])


def test_malicious_pickle_is_not_executed(tmp_path):
    marker = tmp_path / 'pwned'
    code = f"""
import os, torch, pickle
import mmvmamba
class Evil:
    def __reduce__(self):
        return (os.system, ('touch {marker}',))
torch.save({{'state_dict': {{}}, 'meta': Evil()}}, '{tmp_path}/evil.pth')
try:
    torch.load('{tmp_path}/evil.pth')
except pickle.UnpicklingError:
    print('refused')
"""
    out = subprocess.run([sys.executable, '-c', code],
                         capture_output=True,
                         text=True,
                         timeout=120)
    assert 'refused' in out.stdout, out.stderr
    assert not marker.exists()


def test_getattr_is_guarded():
    from mmengine.logging import HistoryBuffer

    from mmvmamba.engine.safe_load import _guarded_getattr
    assert _guarded_getattr(HistoryBuffer, 'mean') is HistoryBuffer.mean
    import pickle
    with pytest.raises(pickle.UnpicklingError, match='refusing'):
        _guarded_getattr(os, 'system')
    with pytest.raises(pickle.UnpicklingError, match='refusing'):
        _guarded_getattr(HistoryBuffer, '__init__')
