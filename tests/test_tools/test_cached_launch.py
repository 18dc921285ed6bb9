"""kernels/_launch.launch: which launches reuse a compiled kernel, checked on
the CPU with a stand-in for a Triton JIT function (the GPU suite runs real
kernels through it)."""
from types import SimpleNamespace

import pytest
import torch

from mmvmamba.kernels import _launch


class _Compiled:

    def __init__(self, args, kwargs):
        self.args, self.kwargs, self.direct = args, kwargs, []

    def __getitem__(self, grid):
        return lambda *full: self.direct.append((grid, full))


class _Kernel:
    """Arguments (src, dst, n, BLOCK: constexpr, FLAG: constexpr)."""

    arg_names = ['src', 'dst', 'n', 'BLOCK', 'FLAG']

    def __init__(self):
        self.params = [
            SimpleNamespace(is_constexpr=name.isupper())
            for name in self.arg_names
        ]
        self.compiled = []

    def __getitem__(self, grid):

        def run(*args, **kwargs):
            self.compiled.append(_Compiled(args, kwargs))
            return self.compiled[-1]

        return run


@pytest.fixture
def compiled_mode(monkeypatch):
    monkeypatch.setattr(_launch, '_INTERPRET', False)
    monkeypatch.setattr(torch.cuda, 'current_device', lambda: 0)
    monkeypatch.setattr(_launch, '_CACHE', {})


def test_same_specialisation_launches_directly(compiled_mode):
    k = _Kernel()
    src, dst = torch.zeros(64), torch.zeros(64)
    first = _launch.launch(k, (4, ), src, dst, 64, BLOCK=16, FLAG=True,
                           num_warps=2)
    again = _launch.launch(k, (2, 3), src, dst, 32, BLOCK=16, FLAG=True,
                           num_warps=2)
    assert len(k.compiled) == 1 and again is first
    # the named constexprs in the kernel's order, the grid made 3-D
    assert first.direct == [((2, 3, 1), (src, dst, 32, 16, True))]


@pytest.mark.parametrize(
    'args,kwargs',
    [
        ((1, ), dict(BLOCK=16, FLAG=True)),  # an integer equal to 1
        ((33, ), dict(BLOCK=16, FLAG=True)),  # not divisible by 16
        ((2**31, ), dict(BLOCK=16, FLAG=True)),  # a 64-bit integer
        ((64, ), dict(BLOCK=32, FLAG=True)),  # another constexpr value
        ((64, ), dict(BLOCK=16, FLAG=False)),
        ((64, 32, True), {}),  # constexprs by position, another value
    ])
def test_other_specialisations_compile(compiled_mode, args, kwargs):
    k = _Kernel()
    src, dst = torch.zeros(64), torch.zeros(64)
    _launch.launch(k, (4, ), src, dst, 64, 16, True)
    _launch.launch(k, (4, ), src, dst, *args, **kwargs)
    assert len(k.compiled) == 2


def test_alignment_and_dtype_are_keyed(compiled_mode):
    k = _Kernel()
    src, dst = torch.zeros(64), torch.zeros(64)
    _launch.launch(k, (4, ), src, dst, 64, BLOCK=16, FLAG=True)
    _launch.launch(k, (4, ), src[1:], dst, 64, BLOCK=16, FLAG=True)
    _launch.launch(k, (4, ), src.half(), dst, 64, BLOCK=16, FLAG=True)
    _launch.launch(k, (4, ), src[4:], dst, 64, BLOCK=16, FLAG=True)
    # aligned fp32, misaligned fp32, fp16; src[4:] is 16-byte aligned
    assert len(k.compiled) == 3
