"""Resume under torch >= 2.6 (weights_only=True by default) works via mmvmamba:
MMEngine's checkpoint loader is routed to mmvmamba.checkpoint.safe_load."""
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

import mmvmamba  # noqa: F401  (routes MMEngine's loader to safe_load)
from mmvmamba.checkpoint import safe_load


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
    # plain torch.load (weights_only=True) refuses MMEngine's own file ...
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
        torch.load(ckpt)
    # ... safe_load reads it, with real HistoryBuffers holding the arrays
    state = safe_load(str(ckpt))
    assert state['meta']['iter'] == 4
    loss = state['message_hub']['log_scalars']['train/loss']
    assert type(loss) is HistoryBuffer and loss.statistics('mean') > 0
    assert loss._log_history.dtype == np.float64
    assert len(loss._log_history) == 4

    resumed = _runner(tmp_path / 'resumed', resume=True, load_from=str(ckpt))
    calls = []
    load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get('weights_only'))
        return load(*args, **kwargs)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(torch, 'load', spy)
        resumed.load_or_resume()
    assert calls == [True]  # one load, weights-only, through safe_load
    assert resumed.iter == 4
    hub = resumed.message_hub.log_scalars['train/loss']
    np.testing.assert_array_equal(hub._log_history, loss._log_history)
    sd = state['state_dict']
    for k, v in resumed.model.state_dict().items():  # on the GPU there
        torch.testing.assert_close(v.cpu(), sd[k], rtol=0, atol=0)
    opt_state = resumed.optim_wrapper.optimizer.state_dict()['state']
    torch.testing.assert_close(opt_state[0]['exp_avg'].cpu(),
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


def test_mmengine_loader_is_routed_and_torch_allow_list_untouched(tmp_path):
    from mmengine.runner.checkpoint import CheckpointLoader

    from mmvmamba.checkpoint.schemes import load_from_mmvmamba_safe_load
    for path in ('work_dirs/x/iter_4.pth', 'https://example.org/a.pth'):
        loader = CheckpointLoader._get_checkpoint_loader(path)
        assert loader is load_from_mmvmamba_safe_load
    # importing mmvmamba and loading through it do not widen torch's
    # process-wide allow-list (plain torch.load keeps refusing foreign types)
    path = tmp_path / 'ckpt.pth'
    torch.save(dict(state_dict={'w': torch.ones(2)}), path)
    before = torch.serialization.get_safe_globals()
    assert safe_load(str(path))['state_dict']['w'].sum() == 2
    after = torch.serialization.get_safe_globals()
    assert set(map(repr, after)) == set(map(repr, before))
    ours = [g for g in after if 'mmvmamba' in repr(g) or 'numpy' in repr(g)
            or 'mmengine' in repr(g) or 'getattr' in repr(g)]
    assert ours == []
