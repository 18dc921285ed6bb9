"""Host-side integer helpers of the launchers.

``triton.cdiv`` and ``triton.next_power_of_2`` are constexpr functions in
recent Triton: called from Python, each call unwraps its arguments (dev CPU,
triton 3.8, under cProfile: about 15 µs a call, twenty calls per SS2D core
forward + backward). These are the plain integer versions.
"""


def cdiv(a: int, b: int) -> int:
    """⌈a / b⌉ for integers."""
    return -(-a // b)


def next_power_of_2(n: int) -> int:
    """The smallest power of two ≥ n (1 for n ≤ 1)."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()
