"""Export a VMamba backbone with ``torch.export`` (a ``.pt2`` program) or to
ONNX.

Examples::

    python tools/export.py tiny --size 224 224 --out vmamba_t.pt2
    python tools/export.py tiny --weights vmamba_t.pth --onnx vmamba_t.onnx

The program takes a (B, 3, H, W) batch and returns the feature maps of
``out_indices`` (default: the four stages). Limits: the image size is fixed
when exporting (``--size``; the scan's chunking specialises on H x W), the
batch stays dynamic. On CUDA the Triton ops are traced through their fake
implementations; on the CPU the program holds the PyTorch reference scan
(slower than the eager model's C++ scan). ONNX needs ``pip install onnx
onnxscript``; its graph holds the scan as plain ONNX operators.
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional, Sequence

import torch
from mmengine.config import DictAction
from torch.export import Dim, ExportedProgram

from mmvmamba.checkpoint import load_pretrained
from mmvmamba.cli.entry import hide_third_party_warnings
from mmvmamba.models import VMamba


def example_input(size: Sequence[int], device: str = 'cpu') -> torch.Tensor:
    # batch 2: torch.export keeps a dimension dynamic only if its example
    # is not 0 or 1
    return torch.randn(2, 3, *size, device=device)


def _dynamic_batch() -> dict:
    return {'x': {0: Dim('batch', min=1, max=4096)}}


def export_program(model: VMamba, size: Sequence[int]) -> ExportedProgram:
    """``torch.export`` of ``model`` (eval mode) for ``size`` = (H, W)."""
    model.eval()
    device = next(model.parameters()).device
    return torch.export.export(
        model, (example_input(size, device), ),
        dynamic_shapes=_dynamic_batch())


def export_onnx(model: VMamba, size: Sequence[int], path: str) -> None:
    """ONNX of ``model`` (eval mode) for ``size`` = (H, W), checked with
    ``onnx.checker``."""
    for package in ('onnx', 'onnxscript'):
        try:
            __import__(package)
        except ImportError:
            raise SystemExit(f'[mmvmamba] error: ONNX export needs the '
                             f'{package!r} package: pip install onnx '
                             'onnxscript') from None
    import onnx
    model.eval()
    device = next(model.parameters()).device
    program = torch.onnx.export(
        model, (example_input(size, device), ),
        dynamic_shapes=_dynamic_batch(),
        dynamo=True,
        verbose=False)
    program.save(path)
    onnx.checker.check_model(path, full_check=True)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Export a VMamba backbone (torch.export or ONNX)')
    parser.add_argument(
        'arch', help='preset: tiny, small, base, ... (see README, Presets)')
    parser.add_argument(
        '--weights',
        help='checkpoint (path or URL) read with the safe loader, as '
        "init_cfg=dict(type='Pretrained') does; default: random weights")
    parser.add_argument(
        '--size',
        nargs=2,
        type=int,
        default=(224, 224),
        metavar=('H', 'W'),
        help='image size the program takes (default: 224 224)')
    parser.add_argument('--out', help='torch.export program (.pt2)')
    parser.add_argument('--onnx', help='ONNX file (.onnx)')
    parser.add_argument(
        '--device', default='cpu', help='cpu or cuda (default: cpu)')
    parser.add_argument(
        '--backbone-args',
        nargs='+',
        action=DictAction,
        default={},
        help='other VMamba arguments, key=value (e.g. out_indices=[3])')
    args = parser.parse_args(argv)
    if not (args.out or args.onnx):
        parser.error('give --out FILE.pt2 and/or --onnx FILE.onnx')
    return args


def main(argv: Optional[List[str]] = None) -> VMamba:
    hide_third_party_warnings()
    args = parse_args(argv)
    model = VMamba(arch=args.arch, **args.backbone_args)
    if args.weights:
        load_pretrained(model, args.weights)
    model = model.to(args.device).eval()
    if args.out:
        torch.export.save(export_program(model, args.size), args.out)
        print(f'[mmvmamba] {args.out}: torch.export program, input '
              f'(B, 3, {args.size[0]}, {args.size[1]}); load it with '
              'torch.export.load(path).module()')
    if args.onnx:
        export_onnx(model, args.size, args.onnx)
        print(f'[mmvmamba] {osp.abspath(args.onnx)}: ONNX, input (B, 3, '
              f'{args.size[0]}, {args.size[1]}), checked with onnx.checker')
    return model


if __name__ == '__main__':
    main(sys.argv[1:])
