"""Launch configuration of the LayerNorm kernels (:mod:`.kernels`)."""
from typing import Tuple

from ..common.util import next_power_of_2

__all__ = ['blocks', 'BWD_SUB']


def blocks(C: int) -> Tuple[int, int, int]:
    """(BLOCK_M rows, BLOCK_C, warps): about 4k elements per program."""
    BC = next_power_of_2(C)
    BM = max(1, min(64, 4096 // BC))
    return BM, BC, 4 if BC * BM <= 4096 else 8


#: row blocks per backward program: its partial sums are one (2, C) row.
#: H200, forward + backward GPU ms at VMamba-T stages 1-4, batch 128
#: (bench_layernorm.py --sub 1 2 4): 1: 0.283 0.199 0.078 0.035;
#: 2: 0.244 0.152 0.072 0.045; 4: 0.237 0.141 0.082 0.042. Weighted by the
#: norms per stage in a VMamba-T step (6, 6, 24, 6), 2 is the least.
BWD_SUB = 2
