"""Golden fixtures of the official VMamba code (``shared/fixtures``).

They live outside the repository (``../shared/fixtures`` beside the checkout);
``MMVMAMBA_FIXTURES`` overrides the location. Tests needing them are skipped
with a clear reason when the folder is absent.
"""
import os
from pathlib import Path

import pytest
import torch

FIXTURE_DIR = Path(
    os.environ.get(
        'MMVMAMBA_FIXTURES',
        Path(__file__).resolve().parents[1].parent / 'shared' / 'fixtures'))


def load_fixture(name: str) -> dict:
    path = FIXTURE_DIR / f'{name}.pt'
    if not path.is_file():
        pytest.skip(f'fixture {path} not found; set MMVMAMBA_FIXTURES to the '
                    'shared/fixtures folder')
    return torch.load(path, weights_only=True)
