"""Golden fixtures of the official model (``shared/fixtures``) for tests.

They live outside the repository (``../shared/fixtures`` beside the checkout);
``MMVMAMBA_FIXTURES`` overrides the location. Tests needing them are skipped
with a clear reason when the folder is absent.
"""
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

FIXTURE_DIR = Path(
    os.environ.get(
        'MMVMAMBA_FIXTURES',
        Path(__file__).resolve().parents[2].parent / 'shared' / 'fixtures'))

MODEL_FIXTURES = ('vmamba_v05noz_ln2d_small', 'vmamba_v05noz_ln_dstate4_small',
                  'vmamba_v0_vanilla_small')


def load_fixture(name: str) -> dict:
    path = FIXTURE_DIR / f'{name}.pt'
    if not path.is_file():
        pytest.skip(f'fixture {path} not found; set MMVMAMBA_FIXTURES to the '
                    'shared/fixtures folder')
    return torch.load(path, weights_only=True)


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
