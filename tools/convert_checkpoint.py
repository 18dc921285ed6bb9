"""Convert a VMamba checkpoint into a clean state-dict file.

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
only, so ``torch.load(weights_only=True)`` and MMEngine read it. It is written
to a temporary file beside the destination and moved there when complete; a
destination that is the source (by any path) is refused.

Example::

    python tools/convert_checkpoint.py vssm1_tiny_0230s_ckpt_epoch_264.pth \
        vmamba_tiny_in1k_mmpretrain.pth --format mmpretrain --ema
"""
import argparse
import os.path as osp
import sys
from collections import OrderedDict
from typing import List, Optional

from mmvmamba.checkpoint import (LAYOUTS, CheckpointError, check_weights,
                                 infer_arch, safe_load, save_atomic,
                                 split_weights, to_layout)

FORMATS = LAYOUTS


def convert(src: str,
            fmt: str = 'mmpretrain',
            use_ema: bool = False,
            allow_nonfinite: bool = False) -> dict:
    """``{'state_dict': ..., 'meta': ...}`` of ``src`` in layout ``fmt``.

    Any supported file is read (official, legacy v0, OpenMMLab with a
    ``backbone.`` prefix, mmpretrain); it must hold a VMamba backbone with
    finite values (NaN/Inf refused unless ``allow_nonfinite``).
    """
    if fmt not in FORMATS:
        raise ValueError(f'unknown format {fmt!r}; expected one of {FORMATS}')
    ckpt = safe_load(src)
    backbone, _ = split_weights(ckpt, use_ema)
    implied = infer_arch(backbone)
    if not implied:
        raise CheckpointError(
            f'{src!r} holds no VMamba weights (no layers.*.blocks.* keys, '
            'with or without a backbone. prefix); pass an official VMamba '
            'file or a checkpoint of a model with a VMamba backbone')
    sd = to_layout(ckpt, fmt, use_ema)
    check_weights(sd, repr(src), allow_nonfinite)
    meta = dict(
        source=osp.basename(src),
        format=fmt,
        weights='model_ema' if use_ema else 'model',
        implied_arch=repr(implied))
    return dict(state_dict=OrderedDict(sd), meta=meta)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='official checkpoint (path or URL)')
    parser.add_argument(
        'dst', help='output .pth file (written in full, then moved there)')
    parser.add_argument(
        '--format',
        choices=FORMATS,
        default='mmpretrain',
        help='output key names (default: mmpretrain)')
    parser.add_argument(
        '--ema',
        action='store_true',
        help="use the EMA weights ('model_ema') of the official file")
    parser.add_argument(
        '--allow-nonfinite',
        action='store_true',
        help='convert weights holding NaN/Inf (refused by default)')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    try:
        out = convert(args.src, args.format, args.ema, args.allow_nonfinite)
        save_atomic(out, args.dst, src=args.src)
    except (CheckpointError, ValueError, OSError) as e:
        print(f'[mmvmamba] error: {e}', file=sys.stderr)
        sys.exit(2)
    n = sum(v.numel() for v in out['state_dict'].values())
    print(f'wrote {args.dst}: {len(out["state_dict"])} tensors, {n:,} '
          f'values, format {args.format}; checkpoint implies '
          f'{out["meta"]["implied_arch"]}')


if __name__ == '__main__':
    main()
