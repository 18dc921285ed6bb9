"""Launching the project's Triton kernels without Triton's per-call Python.

``kernel[grid](*args)`` runs Triton's ``JITFunction.run`` on every call: the
argument binding and specialisation, a cache key built from them (with a
``str`` of the options), the compiled-kernel lookup, a check of the globals
the kernel read, then the compiled kernel's own launcher. On the H200 host
(triton 3.6, ``tools/benchmark/host_cost.py --parts``, 2026-12-05) a launch
of the LayerNorm forward kernel took 26.1 µs that way and 7.5 µs through the
compiled kernel's launcher alone; a VMamba-T training step makes about 200
such launches.

:class:`Launcher` keeps the compiled kernels of one ``@triton.jit``
function by the specialisation Triton's own (native) binder computes for
the call, the key Triton itself compiles for, and calls the compiled
kernel's launcher directly on a hit; a miss goes through ``kernel[grid]``
(which compiles and launches) and keeps the result. Under
``TRITON_INTERPRET=1``, and if this Triton's internals do not have the
shape used here (a warning, once), every call is a plain ``kernel[grid]``.
Toggling Triton's debug knobs at run time does not reach kernels already
kept.
"""
import os
import warnings
from typing import Any, Dict, Sequence

import triton

try:  # the launch hooks JITFunction.run passes (Triton 3.4 and later)
    from triton import knobs as _knobs
except ImportError:  # pragma: no cover - older Triton: kernel[grid]
    _knobs = None

__all__ = ['Launcher']


class Launcher:
    """``Launcher(jit_fn)[grid](*args, **kwargs)``: ``jit_fn[grid](*args,
    **kwargs)`` at the cost of the compiled kernel's launcher; returns the
    compiled kernel as ``jit_fn[grid]`` does."""

    def __init__(self, fn) -> None:
        self.fn = fn
        self.kernels: Dict[tuple, Any] = {}
        # the interpreter's functions (TRITON_INTERPRET=1) and Triton
        # versions without per-device binders: kernel[grid] every time
        self.plain = (os.environ.get('TRITON_INTERPRET') == '1'
                      or not hasattr(fn, 'device_caches') or _knobs is None)

    def __getitem__(self, grid: Sequence[int]):
        return lambda *args, **kwargs: self.launch(grid, args, kwargs)

    def launch(self, grid: Sequence[int], args: tuple, kwargs: dict):
        if self.plain:
            return self.fn[grid](*args, **kwargs)
        try:
            drv = _driver()
            device = drv.get_current_device()
            binder = self.fn.device_caches[device][4]
        except (AttributeError, IndexError, KeyError, TypeError) as e:
            return self._fallback(grid, args, kwargs, e)
        res = binder(*args, **kwargs)  # a bad call raises as kernel[grid]
        try:
            bound, spec, options = res
            key = (device, tuple(spec), tuple(options.items()))
            kernel = self.kernels.get(key)  # hashes the key
        except (AttributeError, TypeError, ValueError) as e:
            return self._fallback(grid, args, kwargs, e)
        if kernel is None:  # compile (or find Triton's) and launch
            kernel = self.kernels[key] = self.fn[grid](*args, **kwargs)
            return kernel
        stream = drv.get_current_stream(device)
        vals = bound.values()
        n = len(grid)
        try:
            kernel.run(grid[0], grid[1] if n > 1 else 1,
                       grid[2] if n > 2 else 1, stream, kernel.function,
                       kernel.packed_metadata,
                       kernel.launch_metadata(grid, stream, *vals),
                       _knobs.runtime.launch_enter_hook,
                       _knobs.runtime.launch_exit_hook, *vals)
        except TypeError as e:  # another launcher convention: not launched
            return self._fallback(grid, args, kwargs, e)
        return kernel

    def _fallback(self, grid, args, kwargs, err: Exception):
        warnings.warn(f'mmvmamba: Triton {_version()} lacks the launch '
                      f'internals mmvmamba.kernels uses ({err!r}); '
                      'launching through kernel[grid] (slower on the host)')
        self.plain = True
        return self.fn[grid](*args, **kwargs)


def _driver():
    """Triton's active driver (its current device and stream)."""
    return triton.runtime.driver.active


def _version() -> str:
    return triton.__version__
