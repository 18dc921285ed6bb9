"""Shared helpers of the kernel tests."""
import importlib
from typing import Optional, Sequence

import torch

from .._fixtures import load_fixture  # noqa: F401  (re-exported)

DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'


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
    launch = importlib.import_module('mmvmamba.kernels.scan.launch')
    if on:
        monkeypatch.setattr(launch, 'target_programs', lambda dev: 1 << 20)
