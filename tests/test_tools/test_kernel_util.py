"""kernels/common/util.py: the launchers' integer helpers agree with Triton's."""
import pytest

from mmvmamba.kernels.common.util import cdiv, next_power_of_2

triton = pytest.importorskip('triton')


def test_cdiv_and_next_power_of_2_match_triton():
    for a in range(0, 300):
        assert next_power_of_2(max(a, 1)) == triton.next_power_of_2(max(a, 1))
        for b in (1, 3, 4, 16, 64):
            assert cdiv(a, b) == triton.cdiv(a, b) == -(-a // b)
    assert next_power_of_2(1) == 1 and next_power_of_2(65) == 128
