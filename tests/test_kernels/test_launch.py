"""The Triton launcher that skips Triton's per-call Python
(``kernels/common/launch.py``), against a stand-in of the Triton internals it
uses: kept kernels are launched through their own launcher with the grid
and arguments ``JITFunction.run`` would pass; a new specialisation compiles;
missing internals fall back to ``kernel[grid]`` with one warning. The real
launches run in the GPU suite (every Triton op goes through it)."""
import pytest
from triton import knobs

from mmvmamba.kernels.common import launch as _launch
from mmvmamba.kernels.common.launch import Launcher


class _Kernel:
    function, packed_metadata = 'function', 'packed'

    def __init__(self, log):
        self.log = log

    def launch_metadata(self, grid, stream, *vals):
        return ('meta', tuple(grid), stream)

    def run(self, *a):
        self.log.append(('run', a))


class _Jit:
    """Triton's JITFunction as the launcher sees it: a per-device binder
    returning (bound arguments, specialisation, options), and
    ``fn[grid](...)`` that compiles (here: logs) and launches."""

    def __init__(self, binder_slot=True):
        self.log, self.kernels = [], {}
        if binder_slot:
            self.device_caches = {0: (None, None, None, None, self.bind)}
        else:
            self.device_caches = {0: ()}

    @staticmethod
    def bind(ptr, n, BD=1, **options):
        spec = [('*fp32', ptr % 16 == 0), ('i32', n % 16 == 0),
                ('constexpr', BD)]
        return dict(ptr=ptr, n=n, BD=BD), spec, options

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.log.append(('compile', tuple(grid), args, kwargs))
            return self.kernels.setdefault('k', _Kernel(self.log))
        return launch


class _Driver:

    def get_current_device(self):
        return 0

    def get_current_stream(self, device):
        return 77


@pytest.fixture
def driver(monkeypatch):
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    monkeypatch.setattr(_launch, '_driver', _Driver)


def test_kept_kernels_launch_through_their_own_launcher(driver):
    fn = _Jit()
    launch = Launcher(fn)
    k = launch[(4, )](32, 48, BD=8, num_warps=2)
    assert fn.log == [('compile', (4, ), (32, 48), dict(BD=8, num_warps=2))]
    # the same specialisation (alignment, divisibility, constexprs,
    # options) with other values: the kept kernel, grid padded to 3-D
    assert launch[(5, 3)](64, 16, BD=8, num_warps=2) is k
    hooks = (knobs.runtime.launch_enter_hook, knobs.runtime.launch_exit_hook)
    assert fn.log[1] == ('run', (5, 3, 1, 77, 'function', 'packed',
                                 ('meta', (5, 3), 77), *hooks, 64, 16, 8))
    # another specialisation compiles: n not divisible by 16, other BD,
    # other options
    launch[(1, )](64, 17, BD=8, num_warps=2)
    launch[(1, )](64, 16, BD=16, num_warps=2)
    launch[(1, )](64, 16, BD=8, num_warps=4)
    assert [e[0] for e in fn.log] == ['compile', 'run'] + ['compile'] * 3
    launch[(2, 2, 2)](16, 32, BD=16, num_warps=2)
    assert fn.log[-1] == ('run', (2, 2, 2, 77, 'function', 'packed',
                                  ('meta', (2, 2, 2), 77), *hooks, 16, 32,
                                  16))


def test_other_triton_internals_fall_back_to_kernel_grid(driver):
    fn = _Jit(binder_slot=False)
    launch = Launcher(fn)
    with pytest.warns(UserWarning, match='launching through kernel'):
        launch[(1, )](32, 48)
    launch[(1, )](32, 48)  # no second warning, no direct launch
    assert [e[0] for e in fn.log] == ['compile', 'compile']


def test_an_unhashable_specialisation_falls_back(driver):
    fn = _Jit()
    fn.device_caches = {0: (None, None, None, None,
                            lambda *a, **k: ({}, [['list']], {}))}
    with pytest.warns(UserWarning, match='launching through kernel'):
        Launcher(fn)[(1, )](32, 48)
    assert [e[0] for e in fn.log] == ['compile']


def test_interpreter_and_plain_functions_use_kernel_grid(driver, monkeypatch):
    fn = _Jit()
    del fn.device_caches  # e.g. TRITON_INTERPRET's InterpretedFunction
    launch = Launcher(fn)
    launch[(1, )](32, 48)
    launch[(1, )](32, 48)
    assert [e[0] for e in fn.log] == ['compile', 'compile']
    monkeypatch.setenv('TRITON_INTERPRET', '1')
    fn = _Jit()
    launch = Launcher(fn)
    launch[(1, )](32, 48)
    launch[(1, )](32, 48)
    assert [e[0] for e in fn.log] == ['compile', 'compile']
