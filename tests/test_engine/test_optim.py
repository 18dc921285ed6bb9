"""mmvmamba.OptimWrapperConstructor: MMEngine's default constructor with
plain-dict parameter groups, so that torch.compile (MMEngine's compile=True)
traces the optimizer's step."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PARAMWISE = dict(norm_decay_mult=0., custom_keys={'norm': dict(decay_mult=0.)})


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 3))


def _wrapper(model, constructor=None):
    cfg = dict(
        optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.05),
        paramwise_cfg=PARAMWISE)
    if constructor:
        cfg['constructor'] = constructor
    # as from a config file: ConfigDicts all the way down
    return build_optim_wrapper(model,
                               Config(dict(optim_wrapper=cfg)).optim_wrapper)


def test_groups_are_plain_dicts_with_the_default_settings():
    model = _model()
    ours = _wrapper(model, 'mmvmamba.OptimWrapperConstructor')
    default = _wrapper(model)
    groups, ref = ours.optimizer.param_groups, default.optimizer.param_groups
    assert any(type(g) is not dict for g in ref)  # ConfigDicts
    assert all(type(g) is dict for g in groups)
    assert len(groups) == len(ref)
    for g, r in zip(groups, ref):
        assert g.keys() == r.keys()
        assert all(p is q for p, q in zip(g['params'], r['params']))
        assert {k: v for k, v in g.items() if k != 'params'} == \
            {k: v for k, v in r.items() if k != 'params'}
    # the norm's weight and bias get no decay, as the recipes ask
    assert sorted(g['weight_decay']
                  for g in groups) == [0., 0., .05, .05, .05, .05]


def test_compiled_step_traces_the_optimizer_and_matches_eager():
    """MMEngine's compile=True compiles train_step, optimizer step
    included: with plain groups Dynamo traces it, and three compiled steps
    leave the weights of three eager ones."""
    x, y = torch.randn(4, 6), torch.randn(4, 3)
    models = [_model(), _model()]
    wrappers = [
        _wrapper(m, 'mmvmamba.OptimWrapperConstructor') for m in models
    ]

    def step(model, wrapper):
        loss = torch.nn.functional.mse_loss(model(x), y)
        wrapper.update_params(loss)
        return loss

    import torch._dynamo as dynamo
    dynamo.reset()
    compiled = torch.compile(step, backend='eager')
    for _ in range(3):
        compiled(models[0], wrappers[0])
        step(models[1], wrappers[1])
    for p, q in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(p, q)


@pytest.mark.parametrize(
    'path',
    sorted(glob.glob(osp.join(ROOT, 'configs', '*.py'))),
    ids=osp.basename)
def test_recipes_use_the_constructor(path):
    cfg = Config.fromfile(path)
    assert cfg.optim_wrapper.constructor == 'mmvmamba.OptimWrapperConstructor'
