"""Shared pytest set-up for the mmvmamba test suite."""
import os

import pytest
import torch

# Keep CPU runs reproducible and bounded on small CI machines.
torch.manual_seed(0)
if os.environ.get('CI'):
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_configure(config):
    config.addinivalue_line('markers',
                            'gpu: needs a CUDA device (skipped on CPU)')
    config.addinivalue_line('markers', 'slow: takes more than ~30 s on CPU')


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='needs a CUDA GPU; runs on the H100 only')
    for item in items:
        if 'gpu' in item.keywords:
            item.add_marker(skip)
