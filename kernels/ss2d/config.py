"""Launch configuration of the SS2D core: which kernels run a call (the pair
kernels of :mod:`.kernels` or the chunked scan of :mod:`..scan`), the pair
kernels' tile sizes and persistent programs, and the padded row layout of
x_dbl that keeps the dt-projection GEMMs aligned. Measured choices
(``tools/benchmark/sweep_scan.py``, ``bench_kernels.py``; docs/benchmarks.md),
apart from the kernels and their launchers.
"""
import functools
import os

import torch

from ..common.util import cdiv, next_power_of_2

__all__ = [
    'K', 'PAIR_MAX_BATCH', 'PAIR_MIN_PIXELS', 'TUNE', 'use_pairs',
    'tile_config', 'lane_sums', 'padded_rows',
    'backward_programs', 'chain_blocks', 'sm_count'
]

#: the four scan directions
K = 4

#: d_state 1 runs the channel-per-thread pair kernels up to this batch, at
#: every batch from ``PAIR_MIN_PIXELS`` pixels per image, whenever
#: deterministic algorithms are asked for and inside a CUDA-graph capture;
#: the chunked kernels otherwise. H200, bench_kernels.py, forward + backward
#: ms, pair / chunked, same run (2026-12-04): batch 128 stages 1-4 (56²,
#: 28², 14², 7²) 5.08 / 7.14, 2.88 / 3.56, 3.15 / 2.09, 2.75 / 1.92; batch 1
#: stage 1 2.97 / 3.14; Mask R-CNN (batch 2) stages 1-4 2.98 / 4.15, 3.11 /
#: 3.03, 2.69 / 2.65, 2.75 / 3.03. Those small rows are the host's time: on
#: the GPU alone (tools/benchmark/host_cost.py, same run, 2026-12-04) the
#: pair kernels take 1.33 / 2.07 ms at stage 3 and 0.76 / 1.90 at stage 4,
#: and a captured graph replays without the host.
PAIR_MAX_BATCH = 2
PAIR_MIN_PIXELS = 784


def use_pairs(N: int,
              batch: int,
              pixels: int,
              capturing: bool = False) -> bool:
    """Whether the SS2D core runs the pair kernels (d_state 1 only);
    ``capturing``: the call is being captured into a CUDA graph."""
    return N == 1 and (capturing
                       or torch.are_deterministic_algorithms_enabled()
                       or batch <= PAIR_MAX_BATCH or pixels >= PAIR_MIN_PIXELS)


def interpreted() -> bool:
    return os.environ.get('TRITON_INTERPRET') == '1'


#: Tuning hook (tools/benchmark/sweep_scan.py): entries replace the
#: defaults of :func:`tile_config`, ``regsB`` (the backward's register cap,
#: Triton's ``maxnreg``; 0: none) among them; ``chainBD`` and ``chainSB``
#: those of :func:`chain_blocks`.
TUNE: dict = {}


def tile_config(Di: int, R: int, H: int, W: int) -> dict:
    """Compile-time sizes of the d_state-1 kernels: chunk length ``T``;
    channel block ``BD`` and ``warps`` of the summary and forward kernels,
    ``BDB`` and ``warpsB`` of the backward kernel (``BD // (32·warps)``
    channels per thread), ``per_sm``, the backward's persistent programs
    per SM. Depends on the sizes only through a few classes, so new image
    sizes do not recompile."""
    if interpreted():
        return dict(dict(T=8, BD=16, warps=1, BDB=16, warpsB=1, per_sm=1),
                    **TUNE)
    # the best of the H200 sweeps (docs/benchmarks.md): one warp of 32
    # channels per program (fewer registers than 64 channels in one or two
    # warps), chunks of 4 (the backward's registers: 128 against 250 at 8).
    # The backward capped at 128 registers (16 one-warp programs fit an SM,
    # no spill) with 14 persistent programs per SM: the H100 sweep of the
    # twelfth session (uncapped it needs 143, 14 fit, and 16 programs per
    # SM left a second wave: fwd+bwd 4.59 against 4.07 ms at T-stage1)
    cfg = dict(dict(T=4, BD=32, warps=1, BDB=32, warpsB=1, per_sm=14,
                    regsB=128), **TUNE)
    return cfg


#: the chain kernel's launch (:func:`chain_blocks`): its channel block
#: starts at CHAIN_BD and halves down to CHAIN_MIN_BD while fewer than
#: CHAIN_PROGRAMS_PER_SM programs per SM would run; its block of chunks per
#: step starts at 32 and doubles while a program would walk more than
#: CHAIN_MAX_STEPS steps, up to CHAIN_TILE chunk-channel entries per step
CHAIN_BD, CHAIN_MIN_BD, CHAIN_PROGRAMS_PER_SM = 64, 16, 4
CHAIN_MAX_STEPS, CHAIN_TILE = 64, 2048


def chain_blocks(rows: int, Di: int, chunks: int, sms: int) -> tuple:
    """(BD, SB) of the chain kernel: ``rows`` (image, direction) chains of
    ``chunks`` chunk summaries over ``Di`` channels, ``sms`` SMs.

    Each program walks its chain sequentially, SB chunks per step (one load
    of P and S, a scan along the chunks): the walk's length is the launch's
    critical path. At batch 128 (VMamba-T stage 1: 512 chains, 784 chunks)
    the default 64 channels and 32 chunks give 1536 programs of 25 steps.
    At batch 2 and long sequences (Mask R-CNN stage 1: 8 chains of 16800
    chunks, 96 channels) they gave 16 programs of 525 steps each, few
    loads in flight on a card of 132 SMs: there the channel block shrinks
    to 16 (48 programs) and the step grows to 128 chunks (132 steps; a
    step of 256 × 16 needs 255 registers and spills, static sm_90). Tuned
    by ``TUNE['chainBD']`` and ``['chainSB']``."""
    bd = min(CHAIN_BD, next_power_of_2(Di))
    while bd > CHAIN_MIN_BD and rows * cdiv(Di, bd) < (
            CHAIN_PROGRAMS_PER_SM * sms):
        bd //= 2
    sb = 32
    while sb * bd < CHAIN_TILE and cdiv(chunks, sb) > CHAIN_MAX_STEPS:
        sb *= 2
    return TUNE.get('chainBD', bd), TUNE.get('chainSB', sb)


def lane_sums(cfg: dict) -> bool:
    """Whether the backward kernel sums its per-pixel dB and dC by one lane
    exchange (``LANES``): one channel per lane of one warp, T = 4."""
    return cfg['BDB'] == 32 and cfg['warpsB'] == 1 and cfg['T'] == 4


def padded_rows(R: int) -> int:
    """Rows per direction of the d_state-1 x_dbl: zero rows, the dt rank
    R, then B and C, R + 2 rounded up to a multiple of 8. The dt-projection
    GEMMs then run on 16-byte aligned operands: with R + 2 = 14 the batched
    GEMMs fall back to cuBLAS's 2-element-aligned kernels (H200, VMamba-T
    stage 1 at R + 2 = 8 but K = R = 6: the z GEMM 455 us)."""
    return cdiv(R + 2, 8) * 8


def backward_programs(tiles: int, blocks: int, per_sm: int,
                      device: torch.device) -> int:
    """Programs per channel block of the persistent backward: ``per_sm``
    per SM in all, never more than there are tiles."""
    if device.type != 'cuda':
        return min(tiles, 4)
    return max(1, min(tiles, per_sm * sm_count(device) // blocks))


def sm_count(device: torch.device) -> int:
    """The card's SM count, 1 off CUDA."""
    return _sms(device) if device.type == 'cuda' else 1


@functools.lru_cache(maxsize=None)
def _sms(device: torch.device) -> int:
    """The card's SM count (asked once per device, not per call)."""
    return torch.cuda.get_device_properties(device).multi_processor_count
