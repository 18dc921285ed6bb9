"""Registers, spills and shared memory of the SS2D scan kernels, without a GPU.

Compiles the d_state-1 kernels (forward summary, chain, forward, backward
summary, backward) for an NVIDIA architecture (default sm_90, H100/H200) with
the configuration that ``ss2d.config.tile_config`` picks at each benchmark
shape, and the chunked scan kernels where an eager training call at that
shape runs them instead (``chunked_fwd``, ``chunked_bwd``); reads the
resource usage of each cubin with the ``cuobjdump`` that ships with Triton,
and its static SASS instruction count (with its transcendentals, global
loads and shuffles, and per chunk for the pair kernels). Runs on a CPU-only
machine: a static view of register pressure (and of the occupancy that the
register count allows) and of the work per element, not a timing.

    python tools/benchmark/kernel_resources.py [--arch 90] \\
        [--shapes T-stage1 MaskRCNN-s1] [--json out.json]
"""
import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
from typing import Dict, List

if os.environ.get('TRITON_INTERPRET') == '1':
    sys.exit('kernel_resources.py compiles kernels: unset TRITON_INTERPRET')

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from mmvmamba.analysis.bench import SHAPES, write_json  # noqa: E402
from mmvmamba.kernels.scan import config as scan_config  # noqa: E402
from mmvmamba.kernels.scan import kernels as scan_kernels  # noqa: E402
from mmvmamba.kernels.scan import launch as scan_launch  # noqa: E402
from mmvmamba.kernels.ss2d import chunked  # noqa: E402
from mmvmamba.kernels.ss2d import config as ss2d  # noqa: E402
from mmvmamba.kernels.ss2d import kernels as sk  # noqa: E402

#: 16-bit inputs (AMP); parameters, gy and the gradients are float32
POINTER_TYPES = dict(
    x_ptr='*bf16', xdbl_ptr='*bf16', z_ptr='*bf16', dx_ptr='*bf16',
    dz_ptr='*bf16')
REGISTERS_PER_SM = 65536
MAX_WARPS_PER_SM = 64
#: resident blocks (programs) per SM, whatever their registers: one-warp
#: programs fill at most half of an SM's warps
MAX_BLOCKS_PER_SM = 32


def cuobjdump() -> str:
    path = os.path.join(
        os.path.dirname(triton.__file__), 'backends', 'nvidia', 'bin',
        'cuobjdump')
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f'{path} not found: this Triton ships without the NVIDIA tools')
    return path


def compile_kernel(kernel,
                   constexprs: Dict,
                   warps: int,
                   arch: int,
                   pointers: Dict = None,
                   maxnreg: int = 0):
    """``kernel`` compiled for sm_<arch> (Triton's CompiledKernel: its
    ``asm`` holds the TTGIR, PTX and cubin). Pointers are 16-byte aligned as
    the JIT sees them, :data:`POINTER_TYPES` overridden by ``pointers``,
    other arguments int32; ``maxnreg``: a register cap (0: none)."""
    types = dict(POINTER_TYPES, **(pointers or {}))
    names = kernel.arg_names
    signature, attrs = {}, {}
    for i, name in enumerate(names):
        if name in constexprs:
            signature[name] = 'constexpr'
        elif name.endswith('_ptr'):
            signature[name] = types.get(name, '*fp32')
            attrs[(i, )] = [['tt.divisibility', 16]]  # as the JIT sees them
        else:
            signature[name] = 'i32'
    src = ASTSource(
        kernel,
        signature,
        constexprs={(names.index(k), ): v
                    for k, v in constexprs.items()},
        attrs=attrs)
    return triton.compile(
        src,
        target=GPUTarget('cuda', arch, 32),
        options=dict(num_warps=warps, **(dict(maxnreg=maxnreg) if maxnreg
                                         else {})))


def resources(kernel,
              constexprs: Dict,
              warps: int,
              arch: int,
              pointers: Dict = None,
              maxnreg: int = 0) -> Dict:
    """Compile ``kernel`` for sm_<arch>; {'regs', 'stack', 'shared'} bytes
    and the SASS counts of :func:`opcodes`."""
    compiled = compile_kernel(kernel, constexprs, warps, arch, pointers,
                              maxnreg)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'kernel.cubin')
        with open(path, 'wb') as f:
            f.write(compiled.asm['cubin'])
        out = subprocess.run([cuobjdump(), '--dump-resource-usage', path],
                             capture_output=True,
                             text=True,
                             check=True).stdout
        sass = subprocess.run([cuobjdump(), '-sass', path],
                              capture_output=True,
                              text=True,
                              check=True).stdout
    found = re.search(r'REG:(\d+) STACK:(\d+) SHARED:(\d+)', out)
    if found is None:
        raise RuntimeError(f'no resource usage in cuobjdump output:\n{out}')
    regs, stack, shared = map(int, found.groups())
    return dict(regs=regs, stack=stack, shared=shared, **opcodes(sass))


#: opcodes counted apart: transcendentals, global loads and stores, shuffles
_COUNTED = ('MUFU', 'LDG', 'STG', 'SHFL')


def opcodes(sass: str) -> Dict:
    """Static instruction counts of a cuobjdump -sass listing: ``instrs``
    (every instruction, NOPs and the trailing self-branch excluded), the
    :data:`_COUNTED` opcodes, lower-cased, and ``loop``, the instructions
    of the largest loop (a backward branch's range; 0 without one: the
    per-chunk work of the kernels that walk several chunks). The kernels
    here are bound by instruction issue (Nsight Compute, docs/benchmarks.md):
    fewer instructions per element is the static proxy for time."""
    rows = re.findall(
        r'^\s+/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P[T0-9]+\s+)?'
        r'([A-Z][A-Z0-9_]*)[^;]*?(?:0x([0-9a-f]+))?\s*;', sass, re.M)
    ops = [op for _, op, _ in rows]
    counts = dict(instrs=sum(op != 'NOP' for op in ops) - 1)
    counts.update((op.lower(), ops.count(op)) for op in _COUNTED)
    loop = 0
    for addr, op, target in rows:
        if op == 'BRA' and target and int(target, 16) < int(addr, 16):
            lo, hi = int(target, 16), int(addr, 16)
            loop = max(loop, sum(lo <= int(a, 16) <= hi and o != 'NOP'
                                 for a, o, _ in rows))
    counts['loop'] = loop
    return counts


def per_chunk(res: Dict, chunks: int) -> int:
    """Instructions a thread runs per chunk of T rows: the loop once per
    chunk and the rest shared by the ``chunks`` a program walks (the
    persistent backward: many, so its loop alone)."""
    if not res['loop']:
        return res['instrs']
    return res['loop'] + (res['instrs'] - res['loop']) // chunks


def resident_warps(regs: int, warps: int) -> int:
    """Warps per SM that the register file allows (allocation: 256 registers
    per warp granule), at most :data:`MAX_BLOCKS_PER_SM` programs."""
    per_warp = math.ceil(regs * 32 / 256) * 256
    blocks = min(MAX_BLOCKS_PER_SM, REGISTERS_PER_SM // (per_warp * warps))
    return min(MAX_WARPS_PER_SM, blocks * warps)


#: SMs of the cards the chain's launch is chosen for (H100 SXM, H200)
SMS = 132


def shape_configs(batch: int, DC: int, H: int, W: int) -> List:
    """(label, kernel, constexprs, warps, pointer types) of the launches at
    one shape, with the launcher's own configuration
    (``ss2d.config.tile_config`` and ``chain_blocks`` for a card of
    :data:`SMS` SMs)."""
    R = math.ceil(DC / 16)
    cfg = ss2d.tile_config(DC, R, H, W)
    tile = dict(BD=cfg['BD'], T=cfg['T'])
    btile = dict(BD=cfg['BDB'], T=cfg['T'], LANES=ss2d.lane_sums(cfg))
    BDc, SB = ss2d.chain_blocks(batch * 4, DC, -(-H * W // cfg['T']), SMS)
    chain = dict(BD=BDc, SB=SB)
    # the summary kernel reads x (bf16) forwards, gy (float32) backwards
    return [('fwd_summary', sk.summary_kernel, dict(tile, ADJ=False),
             cfg['warps'], dict(v_ptr='*bf16')),
            ('chain', sk.chain_kernel, chain, 4, {}),
            ('fwd', sk.fwd_kernel, dict(tile, ACC=True), cfg['warps'], {}),
            ('bwd_summary', sk.summary_kernel, dict(tile, ADJ=True),
             cfg['warps'], {}),
            ('bwd', sk.bwd_kernel, dict(btile, ACC=True), cfg['warpsB'], {})
            ] + chunked_configs(batch, DC, H, W, R)


#: the chunked kernels' pointers in an SS2D training call under AMP: x (u,
#: the Δ source) and x_dbl in bf16, everything written or read back float32
CHUNKED_POINTERS = dict(
    u_ptr='*bf16', d_ptr='*bf16', x_ptr='*bf16', dz_ptr='*fp32')


def chunked_configs(batch: int, DC: int, H: int, W: int, R: int) -> List:
    """The chunked scan kernels' launches where an eager SS2D training call
    at this shape takes them (``ss2d.config.use_pairs`` false: batch above
    2 below 784 pixels; none elsewhere), with their launch configuration
    (``scan.config``) and the flags of the SS2D path (four directions, the
    dt projection inside, D, bias, softplus, float32 atomics, no time split
    at batch 128)."""
    if ss2d.use_pairs(1, batch, H * W):
        return []
    L = H * W
    # the SS2D path's own layout and flags, from shapes alone (meta tensors)
    meta = dict(device='meta', dtype=torch.bfloat16)
    x = torch.empty(batch, DC, H, W, **meta).to(
        memory_format=torch.channels_last)
    x_dbl = torch.empty(batch, L, 4 * (R + 2), **meta)
    w = torch.empty(4, DC, R, device='meta')
    lay = chunked._layout(x, x_dbl, w, 1)
    _, T, NP, RP = scan_config.block_config(1, R, L)
    bdf, bdb, wf, wb = scan_config.launch_config(1, DC, L, batch)

    def flags(BD, warps, **extra):
        f = scan_launch._flags(lay, BD, T, NP, RP, w, w, True, x, warps,
                               CARRY_ONLY=False, **extra)
        return f, f.pop('num_warps')

    fwd, wf = flags(bdf, wf, ATOMIC_Y=True, STORE_HS=True, HAS_H0=False)
    bwd, wb = flags(bdb, wb, ATOMIC_U=True, HAS_R0=False, DZ_OUT=False)
    return [('chunked_fwd', scan_kernels.scan_fwd_kernel, fwd, wf,
             CHUNKED_POINTERS),
            ('chunked_bwd', scan_kernels.scan_bwd_kernel, bwd, wb,
             CHUNKED_POINTERS)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--arch', type=int, default=90, help='compute capability, e.g. 90')
    names = [s[0] for s in SHAPES]
    parser.add_argument(
        '--shapes',
        nargs='+',
        default=names,
        help=f'benchmark shapes (default: all of {", ".join(names)})')
    parser.add_argument('--json', help='write the table here')
    parser.add_argument(
        '--regs-b',
        type=int,
        default=None,
        help='register cap of the pair backward kernel (maxnreg, as '
        'sweep_scan.py --regs-b; 0: none; default: the launcher\'s, '
        'ss2d.config.tile_config)')
    args = parser.parse_args(argv)
    unknown = sorted(set(args.shapes) - set(names))
    if unknown:
        parser.error(f'unknown shape(s) {", ".join(unknown)}; '
                     f'known: {", ".join(names)}')
    print(f'sm_{args.arch}, triton {triton.__version__}, bf16 inputs')
    rows = []
    for name, batch, DC, H, W in SHAPES:
        if name not in args.shapes:
            continue
        cfg = ss2d.tile_config(DC, 1, H, W)  # the launcher's caps
        for label, kernel, cx, warps, ptrs in shape_configs(batch, DC, H, W):
            if label == 'bwd':
                cap = cfg.get('regsB', 0) if args.regs_b is None else \
                    args.regs_b
            else:
                cap = 0
            res = resources(kernel, cx, warps, args.arch, ptrs, cap)
            tile = f'T={cx["T"]}' if 'T' in cx else '-'
            # one chunk per program, but the persistent backward: many
            res['per_chunk'] = (per_chunk(res, 1 << 30 if label == 'bwd' else 1)
                                if 'T' in cx and not label.startswith(
                                    'chunked') else None)
            res.update(
                shape=name,
                kernel=label,
                BD=cx['BD'],
                tile=tile,
                warps=warps,
                resident_warps=resident_warps(res['regs'], warps))
            rows.append(res)
            print(f'{name:14s} {label:12s} BD={cx["BD"]:3d} tile {tile:5s} '
                  f'warps={warps}  regs {res["regs"]:3d}  spill/stack '
                  f'{res["stack"]:4d} B  shared {res["shared"]:5d} B  '
                  f'resident warps/SM {res["resident_warps"]:2d}  '
                  f'SASS {res["instrs"]:5d} (MUFU {res["mufu"]}, LDG '
                  f'{res["ldg"]}, SHFL {res["shfl"]}), per chunk '
                  f'{res["per_chunk"] or "-"}',
                  flush=True)
    write_json(args.json,
               dict(arch=args.arch, triton=triton.__version__, rows=rows))


if __name__ == '__main__':
    main()
