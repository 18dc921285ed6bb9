"""Registers, spills and shared memory of the fused SS2D scan kernels, without
a GPU.

Compiles the forward and backward scan kernels for an NVIDIA architecture
(default sm_90, H100/H200) with the launch configuration that
``launch_config``/``block_config`` pick at each benchmark shape (the shapes of
``sweep_scan.py``), and reads the resource usage of the cubin with the
``cuobjdump`` that ships with Triton. The backward is compiled in both
variants of ``MMVMAMBA_DT_GRAD`` (dt-rank gradients in the kernel or as GEMMs
outside it). Runs on a CPU-only machine: a static view of register pressure
(and of the occupancy that the register count allows), not a timing.

    python tools/benchmark/kernel_resources.py [--arch 90] [--sms 132] \\
        [--shapes T-stage1 MaskRCNN-s1] [--bwd 16x4 16x8] [--json out.json]

``--bwd BDxWARPS`` adds backward launch configurations to the chosen one
(candidates for ``sweep_scan.py`` on a GPU).
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from typing import Dict, List, Sequence, Tuple
from unittest import mock

if os.environ.get('TRITON_INTERPRET') == '1':
    sys.exit('kernel_resources.py compiles kernels: unset TRITON_INTERPRET')

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from mmvmamba.kernels import _scan_kernels as sk  # noqa: E402
from mmvmamba.kernels import selective_scan_triton as ss  # noqa: E402
from mmvmamba.kernels import ss2d  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sweep_scan import SHAPES  # noqa: E402

#: 16-bit inputs (AMP); the scan output, gy and all gradients are float32
POINTER_TYPES = dict(u_ptr='*bf16', x_ptr='*bf16', d_ptr='*bf16')
REGISTERS_PER_SM = 65536
MAX_WARPS_PER_SM = 64


def cuobjdump() -> str:
    path = os.path.join(
        os.path.dirname(triton.__file__), 'backends', 'nvidia', 'bin',
        'cuobjdump')
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f'{path} not found: this Triton ships without the NVIDIA tools')
    return path


def resources(kernel, constexprs: Dict, warps: int, arch: int) -> Dict:
    """Compile ``kernel`` for sm_<arch>; {'regs', 'stack', 'shared'} bytes."""
    names = kernel.arg_names
    signature, attrs = {}, {}
    for i, name in enumerate(names):
        if name in constexprs:
            signature[name] = 'constexpr'
        elif name.endswith('_ptr'):
            signature[name] = POINTER_TYPES.get(name, '*fp32')
            attrs[(i, )] = [['tt.divisibility', 16]]  # as the JIT sees them
        else:
            signature[name] = 'i32'
    src = ASTSource(
        kernel,
        signature,
        constexprs={(names.index(k), ): v
                    for k, v in constexprs.items()},
        attrs=attrs)
    compiled = triton.compile(
        src,
        target=GPUTarget('cuda', arch, 32),
        options=dict(num_warps=warps))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'kernel.cubin')
        with open(path, 'wb') as f:
            f.write(compiled.asm['cubin'])
        out = subprocess.run([cuobjdump(), '--dump-resource-usage', path],
                             capture_output=True,
                             text=True,
                             check=True).stdout
    found = re.search(r'REG:(\d+) STACK:(\d+) SHARED:(\d+)', out)
    if found is None:
        raise RuntimeError(f'no resource usage in cuobjdump output:\n{out}')
    regs, stack, shared = map(int, found.groups())
    return dict(regs=regs, stack=stack, shared=shared)


def resident_warps(regs: int, warps: int) -> int:
    """Warps per SM that the register file allows (allocation: 256 registers
    per warp granule)."""
    per_warp = math.ceil(regs * 32 / 256) * 256
    blocks = REGISTERS_PER_SM // (per_warp * warps)
    return min(MAX_WARPS_PER_SM, blocks * warps)


def shape_configs(batch: int,
                  DC: int,
                  H: int,
                  W: int,
                  sms: int,
                  extra_bwd: Sequence[Tuple[int, int]] = ()) -> List:
    """(label, kernel, constexprs, warps) of the main-pass launches: the
    chosen configuration, then the ``extra_bwd`` (BD, warps) backward ones.

    The constexprs are the launcher's own (``ss2d._layout``, ``ss._flags``,
    ``ss._plan``), built from meta tensors of the shape: bf16 x and x_dbl as
    under autocast, no data and no GPU.
    """
    N, R, L = 1, math.ceil(DC / 16), H * W
    x = torch.empty(
        batch, DC, H, W, dtype=torch.bfloat16,
        device='meta').to(memory_format=torch.channels_last)
    x_dbl = torch.empty(
        batch, L, 4 * (R + 2 * N), dtype=torch.bfloat16, device='meta')
    vec = torch.empty(4 * DC, device='meta')  # Ds, dt bias
    lay = ss2d._layout(x, x_dbl, torch.empty(4, DC, R, device='meta'), N)
    _, T, NP, RP = ss.block_config(N, R, L)
    bdf, bdb, wf, wb = ss.launch_config(N, DC, L, batch)

    def flags(BD: int, warps: int, split_flag: str, **extra) -> Dict:
        # time splits as on a GPU with `sms` SMs
        with mock.patch.object(ss, '_target_programs',
                               lambda device: ss.programs_for(sms)):
            splits = ss._plan(lay, batch, BD, T, x)[3]
        cx = ss._flags(
            lay, BD, T, NP, RP, vec, vec, True, x, warps, CARRY_ONLY=False,
            **{split_flag: splits > 1}, **extra)
        del cx['num_warps']
        return cx

    out = [('fwd', sk.scan_fwd_kernel,
            flags(bdf, wf, 'HAS_H0', ATOMIC_Y=True, STORE_HS=True), wf)]
    for bd, warps in [(bdb, wb), *extra_bwd]:
        for mode in ('kernel', 'gemm'):
            out.append((f'bwd/{mode}', sk.scan_bwd_kernel,
                        flags(
                            bd, warps, 'HAS_R0', ATOMIC_U=True,
                            DZ_OUT=mode == 'gemm'), warps))
    return out


def block_and_warps(text: str) -> Tuple[int, int]:
    """'16x8' -> (16, 8)."""
    try:
        bd, warps = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'{text!r}: expected BDxWARPS, e.g. 16x8') from None
    if bd < 16 or bd & (bd - 1) or warps not in (1, 2, 4, 8, 16):
        raise argparse.ArgumentTypeError(
            f'{text!r}: BD must be a power of two >= 16 and WARPS one of '
            '1, 2, 4, 8, 16')
    return bd, warps


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--arch', type=int, default=90, help='compute capability, e.g. 90')
    parser.add_argument(
        '--sms',
        type=int,
        default=132,
        help='SM count of the card (time splits; H100/H200 SXM: 132)')
    names = [s[0] for s in SHAPES]
    parser.add_argument(
        '--shapes',
        nargs='+',
        default=names,
        help=f'benchmark shapes (default: all of {", ".join(names)})')
    parser.add_argument(
        '--bwd',
        nargs='*',
        type=block_and_warps,
        default=[],
        help='more backward configurations, BDxWARPS (e.g. 16x8)')
    parser.add_argument('--json', help='write the table here')
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
        for label, kernel, cx, warps in shape_configs(
                batch, DC, H, W, args.sms, args.bwd):
            res = resources(kernel, cx, warps, args.arch)
            res.update(
                shape=name,
                kernel=label,
                BD=cx['BD'],
                T=cx['T'],
                warps=warps,
                resident_warps=resident_warps(res['regs'], warps))
            rows.append(res)
            print(f'{name:14s} {label:11s} BD={cx["BD"]:3d} T={cx["T"]:2d} '
                  f'warps={warps}  regs {res["regs"]:3d}  spill/stack '
                  f'{res["stack"]:4d} B  shared {res["shared"]:5d} B  '
                  f'resident warps/SM {res["resident_warps"]:2d}',
                  flush=True)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(
                dict(arch=args.arch, triton=triton.__version__, rows=rows),
                f,
                indent=1)


if __name__ == '__main__':
    main()
