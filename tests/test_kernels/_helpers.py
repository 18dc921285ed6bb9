"""Shared helpers of the kernel tests."""
import importlib
import os
from pathlib import Path
from typing import Optional, Sequence

import pytest
import torch

DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'

FIXTURE_DIR = Path(
    os.environ.get(
        'MMVMAMBA_FIXTURES',
        Path(__file__).resolve().parents[2].parent / 'shared' / 'fixtures'))


def load_fixture(name: str) -> dict:
    path = FIXTURE_DIR / f'{name}.pt'
    if not path.is_file():
        pytest.skip(f'fixture {path} not found; set MMVMAMBA_FIXTURES to the '
                    'shared/fixtures folder')
    return torch.load(path, weights_only=True)


def rel_err(a: Optional[torch.Tensor], b: Optional[torch.Tensor]) -> float:
    """max |a - b| / max |b|; a missing gradient counts as zeros."""
    if a is None and b is None:
        return 0.
    if a is None:
        a = torch.zeros_like(b)
    if b is None:
        b = torch.zeros_like(a)
    a, b = a.double(), b.double()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def grads(out: torch.Tensor, inputs: Sequence[torch.Tensor],
          gout: torch.Tensor):
    return torch.autograd.grad(out, inputs, gout, allow_unused=True)


def force_splits(monkeypatch, on: bool) -> None:
    """Make the scan launchers split time (as for batch 2 × L≈67k)."""
    ss = importlib.import_module('mmvmamba.kernels.selective_scan_triton')
    if on:
        monkeypatch.setattr(ss, '_target_programs', lambda dev: 1 << 20)
