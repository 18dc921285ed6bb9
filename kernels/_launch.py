"""Triton launches without Triton's per-call argument binding.

``kernel[grid](*args, **constexprs)`` binds and specialises every argument,
builds a cache key and looks the compiled kernel up on every call: on the
H200 machine's host about 100 µs per launch (``tools/benchmark/
host_cost.py``), a dozen of them per SS2D core forward + backward. After
the first call, :func:`launch` finds the compiled kernel in its own cache,
keyed by the current device, the values of the constexpr arguments and a
specialisation key of the others at least as fine as Triton's (each
tensor's dtype and 16-byte alignment; each integer's value 1, divisibility
by 16 and 32-bit range; every other argument's type), and launches it
directly.
Under ``TRITON_INTERPRET=1`` it is the plain launch.
"""
import os
from typing import Any, Dict, Tuple

import torch

_INTERPRET = os.environ.get('TRITON_INTERPRET') == '1'
#: launch options of ``kernel[grid](...)`` that are not kernel arguments
_OPTIONS = frozenset(('num_warps', 'num_stages', 'num_ctas', 'maxnreg'))
_CACHE: Dict[Tuple, Tuple[Any, Tuple[str, ...]]] = {}
_CONSTEXPRS: Dict[Any, Tuple[int, ...]] = {}


def _spec(a) -> Any:
    if isinstance(a, torch.Tensor):
        return a.dtype, a.data_ptr() % 16 == 0
    if type(a) is int:
        return (a == 1, a % 16 == 0, -0x80000000 <= a <= 0x7FFFFFFF)
    return type(a), a if isinstance(a, (bool, str)) or a is None else None


def launch(kernel, grid: Tuple[int, ...], *args, **kwargs):
    """``kernel[grid](*args, **kwargs)``, from the second call with the same
    specialisation on without Triton's binding; returns the compiled
    kernel (``None`` under the interpreter)."""
    if _INTERPRET:
        return kernel[grid](*args, **kwargs)
    cpos = _CONSTEXPRS.get(kernel)
    if cpos is None:
        cpos = _CONSTEXPRS[kernel] = tuple(
            i for i, p in enumerate(kernel.params) if p.is_constexpr)
    # constexprs given by position are keyed by their value
    key = (kernel, torch.cuda.current_device(), len(args),
           tuple(kwargs.items()),
           tuple(args[i] for i in cpos if i < len(args)),
           tuple(_spec(a) for a in args))
    hit = _CACHE.get(key)
    if hit is None:
        compiled = kernel[grid](*args, **kwargs)
        # the constexpr arguments given by name, in the kernel's order
        tail = tuple(kernel.arg_names[len(args):])
        named = set(kwargs) - _OPTIONS
        if compiled is not None and set(tail) == named:
            _CACHE[key] = (compiled, tail)
        return compiled
    compiled, tail = hit
    full = args + tuple(kwargs[n] for n in tail) if tail else args
    g = tuple(grid) + (1, ) * (3 - len(grid))
    compiled[g](*full)
    return compiled
