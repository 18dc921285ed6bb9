"""Convert an official VMamba checkpoint into a clean state-dict file.

The source is read with :func:`mmvmamba.checkpoint.safe_load`, the project's one
loader (PyTorch's weights-only unpickler; the yacs config of official files
becomes an inert placeholder and is dropped; a file that needs any other Python
object is refused with a message naming it). Output formats:

* ``official``: the official classification names (``classifier.*``); legacy
  v0 names renamed.
* ``backbone``: :class:`mmvmamba.models.VMamba` names (``outnorm3`` from the
  classifier norm, no head) for ``init_cfg=dict(type='Pretrained', ...)``.
* ``mmpretrain``: an mmpretrain ``ImageClassifier`` (VMamba backbone with
  ``out_indices=(3,)``, ``GlobalAveragePooling``, ``LinearClsHead``) for
  ``load_from``; evaluates to the official accuracy.

The file holds ``{'state_dict': ..., 'meta': ...}`` with tensors and strings
only, so ``torch.load(weights_only=True)`` and MMEngine read it.

Example::

    python tools/convert_checkpoint.py vssm1_tiny_0230s_ckpt_epoch_264.pth \
        vmamba_tiny_in1k_mmpretrain.pth --format mmpretrain --ema
"""
import argparse
import os.path as osp
import sys
from collections import OrderedDict
from typing import List, Optional

import torch

from mmvmamba.checkpoint import (UnsafeCheckpointError, convert_legacy_keys,
                                 extract_state_dict, infer_arch,
                                 official_to_backbone, official_to_mmpretrain,
                                 safe_load, strip_prefix)

FORMATS = ('official', 'backbone', 'mmpretrain')


def convert(src: str, fmt: str = 'mmpretrain', use_ema: bool = False) -> dict:
    """Read ``src`` safely and return ``{'state_dict', 'meta'}`` in ``fmt``."""
    if fmt not in FORMATS:
        raise ValueError(f'unknown format {fmt!r}; expected one of {FORMATS}')
    sd = extract_state_dict(safe_load(src), use_ema=use_ema)
    if all(k.startswith('module.') for k in sd):
        sd = strip_prefix(sd, 'module.')
    if any(k.startswith('backbone.') for k in sd):
        sd = strip_prefix(sd, 'backbone.')  # an OpenMMLab file: backbone only
    sd = convert_legacy_keys(sd)
    implied = infer_arch(official_to_backbone(sd))
    if fmt == 'backbone':
        sd = official_to_backbone(sd)
    elif fmt == 'mmpretrain':
        sd = official_to_mmpretrain(sd)
    meta = dict(
        source=osp.basename(src),
        format=fmt,
        weights='model_ema' if use_ema else 'model',
        implied_arch=repr(implied))
    return dict(state_dict=OrderedDict(sd), meta=meta)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='official checkpoint (path or URL)')
    parser.add_argument('dst', help='output .pth file')
    parser.add_argument(
        '--format',
        choices=FORMATS,
        default='mmpretrain',
        help='output key names (default: mmpretrain)')
    parser.add_argument(
        '--ema',
        action='store_true',
        help="use the EMA weights ('model_ema') of the official file")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    try:
        out = convert(args.src, args.format, args.ema)
    except UnsafeCheckpointError as e:
        print(f'[mmvmamba] error: {e}', file=sys.stderr)
        sys.exit(2)
    torch.save(out, args.dst)
    n = sum(v.numel() for v in out['state_dict'].values())
    print(f'wrote {args.dst}: {len(out["state_dict"])} tensors, {n:,} '
          f'values, format {args.format}; checkpoint implies '
          f'{out["meta"]["implied_arch"]}')


if __name__ == '__main__':
    main()
