"""Host-side helpers of the launchers: integer helpers and :func:`unfilled`.

``triton.cdiv`` and ``triton.next_power_of_2`` are constexpr functions in
recent Triton: called from Python, each call unwraps its arguments (dev CPU,
triton 3.8, under cProfile: about 15 µs a call, twenty calls per SS2D core
forward + backward). These are the plain integer versions.
"""
import functools

import torch
import torch.utils.deterministic as _det


def cdiv(a: int, b: int) -> int:
    """⌈a / b⌉ for integers."""
    return -(-a // b)


def next_power_of_2(n: int) -> int:
    """The smallest power of two ≥ n (1 for n ≤ 1)."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def unfilled(fn):
    """``fn`` with torch's fill of new tensors off while it runs.

    Under ``torch.use_deterministic_algorithms(True)`` (mmengine's
    ``randomness=dict(deterministic=True)``) torch fills every tensor made by
    ``torch.empty*`` with NaN, one memory pass per buffer. The kernels write
    every element of the buffers their implementations allocate before
    anything reads them (the tests run each implementation with the fill on
    as well and compare), so there the fill is only traffic: at VMamba-T
    stage 1, batch 128, 16 float32 and 7 bf16 fills per SS2D core forward +
    backward, 0.42 of its 4.74 ms of kernel time (H200, ``ncu_scan.py
    --torch-profile``). The unwrapped function stays ``fn.__wrapped__``.
    """

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if not (torch.are_deterministic_algorithms_enabled()
                and _det.fill_uninitialized_memory):
            return fn(*args, **kwargs)
        _det.fill_uninitialized_memory = False
        try:
            return fn(*args, **kwargs)
        finally:
            _det.fill_uninitialized_memory = True

    return call
