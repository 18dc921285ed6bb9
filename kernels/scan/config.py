"""Launch configuration of the chunked scan kernels (:mod:`.kernels`): the
channel block, chunk length and warps of each launch, and the programs a
launch should give the card before its time is split. Measured choices, with
their sweeps (``tools/benchmark/sweep_scan.py``); apart from the kernels and
their launchers.
"""
import functools
import os
from typing import Tuple

import torch

from ..common.util import next_power_of_2

__all__ = ['TUNE', 'launch_config', 'block_config', 'programs_for',
           'target_programs']

#: Tuning hook (tools/benchmark/sweep_scan.py): {N: (BD_fwd, BD_bwd, T,
#: warps_fwd, warps_bwd)} replaces the defaults below.
TUNE: dict = {}


def launch_config(N: int,
                  DC: int = 0,
                  L: int = 0,
                  batch: int = 1) -> Tuple[int, int, int, int]:
    """(BD forward, BD backward, warps forward, warps backward).

    Depends on the channels ``DC``, the length ``L`` and the batch of a
    launch through a few classes (each a compiled variant; nothing is
    specialised on the sizes themselves).
    """
    if N in TUNE:
        bdf, bdb, _, wf, wb = TUNE[N]
        return bdf, bdb, wf, wb
    BD = block_config(N, 0, L)[0]
    if os.environ.get('TRITON_INTERPRET') == '1':
        return BD, BD, 4, 4
    if N != 1:
        return BD, 16, 4, 4
    # d_state 1, from the H200 sweep of tools/benchmark/sweep_scan.py (bf16,
    # T = 32; ms forward / backward against the former 32/4 + 32/4):
    if batch * DC >= 4096:
        # many rows (classification batches): the backward is register
        # bound (~250 registers), so small tiles on 2 warps keep more
        # programs resident: VMamba-T stage 1 6.17 -> 5.32 ms, stage 2
        # 3.17 -> 2.68, stage 3 1.93 -> 1.58, VMamba-B stage 1 16.2 -> 13.8.
        # Stage 4 (L = 49) takes wider forward tiles: 0.37 -> 0.29 ms.
        return (64, 16, 8, 2) if L <= 64 else (32, 16, 4, 2)
    if L <= 16384:
        # few rows, time split (batch 1 at 224², stage 1): 1.21 -> 0.73 ms
        # forward, 1.47 -> 0.84 ms backward
        return 64, 64, 4, 4
    # few rows, long sequences (Mask R-CNN, batch 2 at 200x336): 1.33 ->
    # 1.22 ms forward; the backward keeps 32/4 (2.82 ms)
    return 32, 32, 8, 4


def block_config(N: int, R: int, L: int = 0) -> Tuple[int, int, int, int]:
    """(BD channels, T steps per chunk, NP padded states, RP padded rank).

    Depends on N, R and the sequence length L only (the chunk length sets
    the layout of the stored chunk states, so the forward, the backward and
    the ops' fake implementations must agree on it); a few length classes,
    so new image sizes do not recompile.
    """
    NP = next_power_of_2(N)
    RP = max(16, next_power_of_2(max(R, 1)))
    if N in TUNE:
        return TUNE[N][0], TUNE[N][2], NP, RP
    if os.environ.get('TRITON_INTERPRET') == '1':
        # The interpreter runs a scan's combine once per tile element: keep
        # tiles at the smallest size tl.dot allows.
        return 16, 16, NP, RP
    if NP == 1:
        return 32, 32, NP, RP
    if NP <= 4:
        return 16, 32, NP, RP
    return 16, 16, NP, RP


@functools.lru_cache(maxsize=None)
def target_programs(device: torch.device) -> int:
    """Programs wanted per launch before time is split (two waves of SMs)."""
    if device.type != 'cuda':
        return 1
    return programs_for(
        torch.cuda.get_device_properties(device).multi_processor_count)


def programs_for(sms: int) -> int:
    """Programs wanted per launch on a card with ``sms`` SMs."""
    return 2 * sms
