"""Fixtures of the model tests (official-code outputs: tests/_fixtures.py)."""
from types import SimpleNamespace

import pytest
import torch

from .._fixtures import load_fixture

MODEL_FIXTURES = ('vmamba_v05noz_ln2d_small', 'vmamba_v05noz_ln_dstate4_small',
                  'vmamba_v0_vanilla_small')


def backbone_kwargs(fixture: dict, **overrides) -> dict:
    """VMamba arguments of a fixture's official config."""
    cfg = dict(fixture['config'])
    cfg.pop('num_classes')
    cfg.update(backend='torch')
    cfg.update(overrides)
    return cfg


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.fixture
def golden() -> SimpleNamespace:
    """Helpers: ``golden.load(name)``, ``golden.kwargs(fx)``, ``golden.rel``."""
    return SimpleNamespace(
        load=load_fixture, kwargs=backbone_kwargs, rel=relative_error)
